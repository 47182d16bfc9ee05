#!/usr/bin/env bash
# E3: inversion quality vs split depth on Fashion-MNIST with a rewind-trained CNN (white-box and
# inverse network), and the utility/privacy trade-off of the activation defences.
# Compare with He et al. (ACSAC 2019), MNIST, white-box rMLE: 39.7 dB / 0.997 SSIM after conv1,
# ~15 dB / 0.60 after the second ReLU. Results: experiments/results/e3-split-depth.md.
#
# usage: [OUT=out/e3] [TRAIN=20000] [TARGETS=64] [STEPS=500] [AUX=2000] [INV_EPOCHS=8]
#        [DEFENSE_SPLITS="relu1 pool1"] experiments/e3_split_depth.sh
# Needs Debian's dataset-fashion-mnist. About 25 min on 2 cores with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${REWIND:-build/rewind}
OUT=${OUT:-out/e3}
TRAIN=${TRAIN:-20000}
TARGETS=${TARGETS:-64}
STEPS=${STEPS:-500}
AUX=${AUX:-2000}
INV_EPOCHS=${INV_EPOCHS:-8}
DEFENSE_SPLITS=${DEFENSE_SPLITS:-"relu1 pool1"}
mkdir -p "$OUT"
t0=$(date +%s)
[ -f "$OUT/fm-train/manifest.csv" ] || "$R" data fashion-mnist --out "$OUT/fm-train" --split train --limit "$TRAIN" -q
[ -f "$OUT/fm-test/manifest.csv" ] || "$R" data fashion-mnist --out "$OUT/fm-test" --split test --limit 1000 -q
# the attacker's auxiliary data: Fashion-MNIST training images (disjoint from the test-set targets)
head -n $((AUX + 1)) "$OUT/fm-train/manifest.csv" | sed "2,\$s|^|../fm-train/|" > "$OUT/aux.csv.tmp"
mkdir -p "$OUT/aux" && mv "$OUT/aux.csv.tmp" "$OUT/aux/manifest.csv"
[ -f "$OUT/cnn.pt" ] || "$R" train classifier --data "$OUT/fm-train/manifest.csv" --val "$OUT/fm-test/manifest.csv" \
  --arch cnn28 --channels 1 --width 16 --epochs 2 --out "$OUT/cnn.pt" -q
echo "classifier trained: $(( $(date +%s) - t0 )) s"

# 1. quality vs depth: white-box at every stage
t1=$(date +%s)
"$R" split-attack --classifier "$OUT/cnn.pt" --split all --targets "$OUT/fm-test/manifest.csv" --limit "$TARGETS" \
  --out "$OUT/depth-whitebox" --attack white-box --wb-steps "$STEPS" -q
echo "white-box sweep: $(( $(date +%s) - t1 )) s"
# 2. inverse network at the block boundaries (training one decoder per split is the expensive part)
t2=$(date +%s)
"$R" split-attack --classifier "$OUT/cnn.pt" --split conv1,relu1,relu2,pool1,relu3,relu4,pool2,fc1,fc2 \
  --targets "$OUT/fm-test/manifest.csv" --limit "$TARGETS" --out "$OUT/depth-inverse" --attack inverse-net \
  --aux "$OUT/aux/manifest.csv" --inv-epochs "$INV_EPOCHS" -q
echo "inverse-net sweep: $(( $(date +%s) - t2 )) s"
# 3. defences: accuracy (1000 test images) beside attack quality, at a shallow and a mid split
t3=$(date +%s)
for s in $DEFENSE_SPLITS; do
  "$R" split-attack --classifier "$OUT/cnn.pt" --split "$s" --targets "$OUT/fm-test/manifest.csv" --limit "$TARGETS" \
    --out "$OUT/defense-$s" --attack white-box,inverse-net --aux "$OUT/aux/manifest.csv" --inv-epochs "$INV_EPOCHS" \
    --wb-steps "$STEPS" --defense none,noise=0.1,noise=0.3,noise=1,quant=4,quant=2,dropout=0.5 \
    --eval "$OUT/fm-test/manifest.csv" -q
done
echo "defences: $(( $(date +%s) - t3 )) s"
echo "total: $(( $(date +%s) - t0 )) s; tables in $OUT/*/depth.csv"
