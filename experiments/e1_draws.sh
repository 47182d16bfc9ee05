#!/usr/bin/env bash
# #16 E1: is one member draw's result typical? The same recipe as experiments/e1_full.sh, with the member set drawn
# again: draw d (2..D+1) renders S/4 fresh synthetic identities x 4 images from identity 600000 + 1000 * d (no other
# set holds them), trains a target GAN on them (same architecture, steps and seed 1 as e1_full.sh's target, so only
# the people differ), and runs `rewind membership` against the same unseen wide non-member set (wide2-80) with the
# same two reference GANs (ref1, ref2 of e1_full.sh, trained on other people) and all eight attacks, into
# out/e1full/w<WIDTH>-e<EPOCHS>/<S>/draw<d>/mia-wide2/. Draw 1 is e1_full.sh's own target (mia-wide2/).
# Prints per draw and attack the image AUC and TPR at 1% FPR, then the mean and range over all draws.
# One thread; finished steps are skipped, so it can be rerun to resume.
# usage: nice -n 10 experiments/e1_draws.sh [--size 64] [--draws 4] [--epochs 3000] [--width 32]
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
S=64; D=4; EPOCHS=3000; WIDTH=32; BATCH=64
while [ $# -gt 0 ]; do
  case "$1" in
    --size) S="$2"; shift 2;; --draws) D="$2"; shift 2;; --epochs) EPOCHS="$2"; shift 2;; --width) WIDTH="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
export REWIND_THREADS=1 OMP_NUM_THREADS=1
W=out/e1full; R=$W/w$WIDTH-e$EPOCHS/$S; n=$((S / 4)); STEPS=$((EPOCHS * S / BATCH))
for f in target ref1 ref2; do [ -f "$R/$f.pt" ] || { echo "$R/$f.pt missing: run experiments/e1_full.sh first" >&2; exit 1; }; done
[ -f "$W/wide2-80/manifest.csv" ] || { echo "$W/wide2-80 missing: run experiments/e1_full.sh first" >&2; exit 1; }
T="$W/timings.tsv"
. experiments/lib.sh  # timed NAME CMD...
for d in $(seq 2 $((D + 1))); do
  F=$W/faces-$S-draw$d; O=$R/draw$d
  mkdir -p "$O"
  [ -f "$F/manifest.csv" ] || "$REWIND" data synth-faces --out "$F" --identities "$n" --per-identity 4 --size 32 \
      --first-identity $((600000 + 1000 * d)) --no-contact-sheet --threads 1 -q >/dev/null
  if [ ! -f "$O/target.pt" ]; then
    echo "== w$WIDTH-e$EPOCHS S=$S draw $d: training target ($STEPS steps, seed 1)" >&2
    timed "train w$WIDTH-e$EPOCHS S=$S draw$d target ($STEPS steps)" "$REWIND" train gan --data "$F/manifest.csv" \
        --out "$O/target.pt" --arch dcgan32 --width "$WIDTH" --channels 3 --batch "$BATCH" --steps "$STEPS" --seed 1 \
        --checkpoint-every 1000 --sample-every 1000000 --resume --threads 1 > "$O/train-target.log" 2>&1
  fi
  if [ ! -f "$O/mia-wide2/report.json" ]; then
    echo "== w$WIDTH-e$EPOCHS S=$S draw $d: membership" >&2
    timed "membership w$WIDTH-e$EPOCHS S=$S draw$d mia-wide2" "$REWIND" membership --generator "$O/target.pt" \
        --members "$F/manifest.csv" --nonmembers "$W/wide2-80/manifest.csv" \
        --reference-generator "$R/ref1.pt" --reference-generator "$R/ref2.pt" \
        --attacks recovery,calibrated,lira,rmia,identity-nn,recon-identity,identity-calibrated,identity-lira,recon-identity-lira \
        --embedder data-tools/demo/embedder.pt --samples 1000 --seed 1 --threads 1 --out "$O/mia-wide2" \
        > "$O/mia-wide2.log" 2>&1
  fi
done
python3 - "$R" "$D" <<'PY'
import json, sys, statistics as st
r, d = sys.argv[1], int(sys.argv[2])
runs = [("1", f"{r}/mia-wide2/report.json")] + [(str(k), f"{r}/draw{k}/mia-wide2/report.json") for k in range(2, d + 2)]
rows = {}
for name, f in runs:
    try:
        m = json.load(open(f))["metrics"]["image"]
    except FileNotFoundError:
        continue
    for att, v in m.items():
        t = v.get("tpr_at_fpr", {}).get("0.01")
        rows.setdefault(att, []).append((name, v["auc"][0], t[0] if isinstance(t, list) else float("nan")))
print("| attack | " + " | ".join(f"draw {n}" for n, _ in runs) + " | mean AUC [min, max] | mean TPR@1%FPR [min, max] |")
print("|---|" + "---|" * len(runs) + "---|---|")
for att, v in sorted(rows.items(), key=lambda kv: -st.mean(x[1] for x in kv[1])):
    a = [x[1] for x in v]; t = [x[2] for x in v]
    cells = " | ".join(f"{x[1]:.3f} / {x[2]:.3f}" for x in v)
    print(f"| {att} | {cells} | {st.mean(a):.3f} [{min(a):.3f}, {max(a):.3f}] | {st.mean(t):.3f} [{min(t):.3f}, {max(t):.3f}] |")
PY
