#!/usr/bin/env bash
# #16 E1, session 34: recon-identity-lira (LiRA on the reconstruction's identity distance) on every width-32 member
# draw, against the same 320 unseen non-members (wide2-80) and the same two reference GANs as e1_full.sh /
# e1_draws.sh. Draw 1 is e1_full.sh's target (members faces-S/members.csv), draws 2.. are e1_draws.sh's. lira and
# recon-identity run beside it (their figures must reproduce the earlier runs: the same recovery, seeds and options).
# Writes out/e1full/w32-e3000/<S>/[drawD/]mia-wide2-rilira/ and prints, per size, each draw's image AUC / TPR at 1%
# FPR and the mean and range over all draws (the rule in experiments/results/e1-full.md: judged on the mean).
# One thread; finished runs are skipped. Needs e1_full.sh --sizes "64 128" --width 32 and e1_draws.sh run first.
# usage: nice -n 10 experiments/e1_recon_lira.sh [--sizes "64 128"]
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
SIZES="64 128"
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) SIZES="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
export REWIND_THREADS=1 OMP_NUM_THREADS=1
W=out/e1full; T="$W/timings.tsv"
. experiments/lib.sh  # timed NAME CMD...
for S in $SIZES; do
  R=$W/w32-e3000/$S
  for f in target ref1 ref2; do [ -f "$R/$f.pt" ] || { echo "$R/$f.pt missing: run experiments/e1_full.sh first" >&2; exit 1; }; done
  for d in $(cd "$R" && ls -d draw* 2>/dev/null | sed 's/draw//' | sort -n | sed 's/^/draw/'; echo .); do
    if [ "$d" = . ]; then G=$R/target.pt; M=$W/faces-$S/members.csv; O=$R/mia-wide2-rilira; name="draw1"
    else G=$R/$d/target.pt; M=$W/faces-$S-$d/manifest.csv; O=$R/$d/mia-wide2-rilira; name=$d; fi
    [ -f "$G" ] || continue
    [ -f "$O/report.json" ] && continue
    echo "== w32-e3000 S=$S $name: membership (recon-identity-lira)" >&2
    timed "membership w32-e3000 S=$S $name mia-wide2-rilira" "$REWIND" membership --generator "$G" \
        --members "$M" --nonmembers "$W/wide2-80/manifest.csv" \
        --reference-generator "$R/ref1.pt" --reference-generator "$R/ref2.pt" \
        --attacks lira,recon-identity,recon-identity-lira --embedder data-tools/demo/embedder.pt --samples 1000 \
        --seed 1 --threads 1 --out "$O" > "$O.log" 2>&1
  done
  python3 - "$R" <<'PY'
import json, sys, glob, statistics as st
r = sys.argv[1]
runs = sorted(glob.glob(f"{r}/mia-wide2-rilira/report.json") + glob.glob(f"{r}/draw*/mia-wide2-rilira/report.json"),
              key=lambda f: 0 if "/draw" not in f else int(f.split("/draw")[1].split("/")[0]))
rows = {}
for f in runs:
    for att, v in json.load(open(f))["metrics"]["image"].items():
        t = v.get("tpr_at_fpr", {}).get("0.01")
        rows.setdefault(att, []).append((v["auc"][0], t[0] if isinstance(t, list) else float("nan")))
print(f"S = {r.split('/')[-1]}, {len(runs)} draws")
print("| attack | " + " | ".join(f"draw {i + 1}" for i in range(len(runs))) + " | mean AUC [min, max] | mean TPR@1%FPR [min, max] |")
print("|---|" + "---|" * len(runs) + "---|---|")
for att, v in sorted(rows.items()):
    a = [x[0] for x in v]; t = [x[1] for x in v]
    print(f"| {att} | " + " | ".join(f"{x[0]:.3f} / {x[1]:.3f}" for x in v) +
          f" | {st.mean(a):.3f} [{min(a):.3f}, {max(a):.3f}] | {st.mean(t):.3f} [{min(t):.3f}, {max(t):.3f}] |")
PY
done
