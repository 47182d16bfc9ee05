#!/usr/bin/env bash
# #16 E1: the white-box discriminator attack (Hayes et al. 2019) on every E1 target GAN that
# experiments/e1_full.sh and experiments/e1_draws.sh trained (out/e1full/w*-e*/<S>/target.pt and draw<d>/target.pt,
# each with the discriminator `train gan` wrote beside it, target.pt.disc), against the same unseen wide
# non-member set (wide2-80, 320 images) as the other attacks; plus a control per size: reference GAN ref1's
# discriminator, which never saw the target's members, scoring the same members against the same non-members
# (it must be near chance, else the attack would be measuring something other than membership).
# Writes mia-wide2-disc/ (and control-ref1-disc/) beside each GAN and prints one table. One thread; finished runs
# are skipped.
# usage: nice -n 10 experiments/e1_discriminator.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
export REWIND_THREADS=1 OMP_NUM_THREADS=1
W=out/e1full; NON=$W/wide2-80/manifest.csv
[ -f "$NON" ] || { echo "$NON missing: run experiments/e1_full.sh first" >&2; exit 1; }
run() {  # run GENERATOR DISC MEMBERS OUT
  [ -f "$4/report.json" ] || "$REWIND" membership --generator "$1" --discriminator "$2" --members "$3" --nonmembers "$NON" \
      --attacks discriminator --seed 1 --threads 1 --out "$4" > "$4.log" 2>&1
}
for R in "$W"/w*-e*/*; do
  [ -f "$R/target.pt.disc" ] || continue
  S=$(basename "$R")
  run "$R/target.pt" "$R/target.pt.disc" "$W/faces-$S/members.csv" "$R/mia-wide2-disc"
  [ -f "$R/ref1.pt.disc" ] && run "$R/ref1.pt" "$R/ref1.pt.disc" "$W/faces-$S/members.csv" "$R/control-ref1-disc"
  for D in "$R"/draw*; do
    [ -f "$D/target.pt.disc" ] || continue
    run "$D/target.pt" "$D/target.pt.disc" "$W/faces-$S-$(basename "$D")/manifest.csv" "$D/mia-wide2-disc"
  done
done
python3 - "$W" <<'PY'
import json, sys, glob
w = sys.argv[1]
print("| GAN | S | members | discriminator | image AUC [95% CI] | TPR@1%FPR [95% CI] |")
print("|---|---|---|---|---|---|")
for f in sorted(glob.glob(f"{w}/w*-e*/*/mia-wide2-disc/report.json") + glob.glob(f"{w}/w*-e*/*/draw*/mia-wide2-disc/report.json")
                + glob.glob(f"{w}/w*-e*/*/control-ref1-disc/report.json")):
    p = f.split("/")
    ctrl = "control" in f
    draw = p[-3] if p[-3].startswith("draw") else "draw1"
    run, s = (p[-4], p[-3]) if not p[-3].startswith("draw") else (p[-5], p[-4])
    v = json.load(open(f))["metrics"]["image"]["discriminator"]
    t = v["tpr_at_fpr"]["0.01"]
    ci = lambda x: f"{x[0]:.3f} [{x[1]:.3f}, {x[2]:.3f}]"
    print(f"| {run} | {s} | {'draw1 (control)' if ctrl else draw} | {'ref1 (never saw them)' if ctrl else 'target'} | {ci(v['auc'])} | {ci(t) if isinstance(t, list) else t} |")
PY
