#!/usr/bin/env bash
# GAN rewinding, members vs non-members (Webster et al. 2019): a GAN trained by rewind on 64
# synthetic identities x 8 images; its own training images (members) and images of 64 new
# identities (non-members) are inverted with the same settings; the median recovery errors and
# their gap (MRE-gap) are written to experiments/results/invert-gap.md.
# usage: experiments/invert_gap.sh [--per-identity 2] [--size 64|32] [--width 16] [--generator G.pt]
#                                  [--steps 300] [--restarts 4] [--train-steps 3000]
# --per-identity: training images per member identity (2 -> 128 training images, the size at which
# Webster et al. found member and non-member errors disjoint; 8 -> 512).
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=./build/rewind
GEN=""; STEPS=300; RESTARTS=4; TRAIN_STEPS=3000; PER=2; SIZE=64; WIDTH=16
while [ $# -gt 0 ]; do
  case "$1" in
    --generator) GEN="$2"; shift 2;; --steps) STEPS="$2"; shift 2;; --restarts) RESTARTS="$2"; shift 2;;
    --train-steps) TRAIN_STEPS="$2"; shift 2;; --per-identity) PER="$2"; shift 2;; --size) SIZE="$2"; shift 2;;
    --width) WIDTH="$2"; shift 2;; *) echo "unknown option $1" >&2; exit 2;;
  esac
done
W=out/invert-gap-$PER-$SIZE
mkdir -p "$W"
$REWIND data synth-faces --out "$W/faces" --identities 128 --per-identity 8 --size "$SIZE" -q >/dev/null
# members: identities 0..63 (their first $PER images train the GAN); non-members: identities 64..127
awk -F, -v per="$PER" 'NR==1 || (substr($2,3)+0 < 64 && substr($1, length($1)-4, 1)+0 < per)' "$W/faces/manifest.csv" > "$W/faces/train.csv"
awk -F, 'NR==1 || (substr($2,3)+0 < 64 && $1 ~ /\/0\.png$/)' "$W/faces/manifest.csv" > "$W/faces/members.csv"
awk -F, 'NR==1 || (substr($2,3)+0 >= 64 && $1 ~ /\/0\.png$/)' "$W/faces/manifest.csv" > "$W/faces/nonmembers.csv"
if [ -z "$GEN" ]; then
  GEN="$W/g.pt"
  $REWIND train gan --data "$W/faces/train.csv" --out "$GEN" --arch "dcgan$SIZE" --width "$WIDTH" --steps "$TRAIN_STEPS" --resume
fi
$REWIND invert --generator "$GEN" --targets "$W/faces/members.csv" --out "$W/members" --steps "$STEPS" --restarts "$RESTARTS"
$REWIND invert --generator "$GEN" --targets "$W/faces/nonmembers.csv" --out "$W/nonmembers" --steps "$STEPS" --restarts "$RESTARTS"
python3 - "$W" "$GEN" "$STEPS" "$RESTARTS" "$PER" "$SIZE" <<'PY' | tee "experiments/results/invert-gap-$PER-$SIZE.md"
import csv, json, statistics, sys
w, gen, steps, restarts, per, size = sys.argv[1:]
def mses(d):
    return [float(r["mse"]) for r in csv.DictReader(open(f"{w}/{d}/targets.csv"))]
m, n = mses("members"), mses("nonmembers")
mm, mn = statistics.median(m), statistics.median(n)
# fraction of (member, non-member) pairs ordered correctly = ROC AUC of -error as a membership score
auc = sum((a < b) + 0.5 * (a == b) for a in m for b in n) / (len(m) * len(n))
run = json.load(open(f"{w}/members/run.json"))
print("# GAN rewinding: members vs non-members\n")
print(f"Generator `{gen}` trained by `rewind train gan` on 64 synthetic identities x {per} images ({size}x{size}, {64 * int(per)} training images).")
print(f"Each target is image 0 of an identity; `rewind invert` with {restarts} restarts x {steps} Adam steps, MSE loss.\n")
print("| set | targets | median MSE | min | max |")
print("|---|---|---|---|---|")
print(f"| members | {len(m)} | {mm:.5f} | {min(m):.5f} | {max(m):.5f} |")
print(f"| non-members | {len(n)} | {mn:.5f} | {min(n):.5f} | {max(n):.5f} |")
print(f"\nMRE-gap (median non-member / member error - 1): **{mn / mm - 1:.2f}**; median gap {mn - mm:.5f}; "
      f"AUC of -error as membership score: **{auc:.3f}**.\n")
print(f"Build: {run['build']['version']} ({run['build']['commit']}), {run['threads']} threads; "
      f"member inversion took {run['timings_s']['invert']:.1f} s.")
PY
