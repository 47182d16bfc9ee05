#!/usr/bin/env bash
# Recreates the shipped demo models of `rewind audit` (no arguments) in data-tools/demo/:
#   embedder.pt   CosFace identity embedder (cnn32) trained on synthetic identities 100000..101499,
#                 disjoint from every identity the demo audits;
#   generator.pt  DCGAN (dcgan32, width 16, 32000 steps) trained on identities 0..63 x 2 images (the demo's members;
#                 identities 64..127 are the non-members). Two images per person: a small training set, which
#                 GANs memorise (Webster et al.); at 8 per person and 16000 steps no identity passed the
#                 family-wise verdict threshold;
#   classifier.pt split classifier (cnn32) of the 64 member identities (8 images each), for `rewind compare`.
# All data is rendered by `rewind data synth-faces` (deterministic), so the recipe is reproducible
# up to thread scheduling. ~65 min on 2 cores. Usage: data-tools/make_demo_models.sh [build/rewind]
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${1:-./build/rewind}
W=out/make-demo
D=data-tools/demo
mkdir -p "$W"
meta() { python3 -c "import json,sys; print(json.load(open('$D/demo.json'))['$1'])"; }
SIZE=$(meta size); MEMBERS=$(meta member_identities); PER=$(meta gan_train_per_identity)
CPER=$(meta classifier_train_per_identity)
EFIRST=$(meta embedder_first_identity); EIDS=$(meta embedder_identities)
$REWIND data synth-faces --out "$W/emb-faces" --identities "$EIDS" --first-identity "$EFIRST" --per-identity 8 --size "$SIZE" -q
$REWIND train embedder --data "$W/emb-faces/manifest.csv" --out "$W/embedder.pt" --arch cnn32 --epochs 12 --heldout-fraction 0.1
$REWIND data synth-faces --out "$W/gan-faces" --identities "$MEMBERS" --per-identity "$PER" --size "$SIZE" -q
$REWIND train gan --data "$W/gan-faces/manifest.csv" --out "$W/generator.pt" --arch dcgan32 --width 16 --steps 32000 --resume
# split classifier of the same people (64 member identities, cnn32, named stages)
$REWIND data synth-faces --out "$W/cls-faces" --identities "$MEMBERS" --per-identity "$CPER" --size "$SIZE" -q
$REWIND train classifier --data "$W/cls-faces/manifest.csv" --label-column identity --arch cnn32 --channels 3 \
  --width 16 --epochs 30 --val-fraction 0.25 --out "$W/classifier.pt"
cp "$W/classifier.pt" "$D/classifier.pt"
cp "$W/embedder.pt" "$D/embedder.pt"
cp "$W/generator.pt" "$D/generator.pt"
cp "$W/generator-samples.png" "$D/generator-samples.png"
echo "demo models written to $D"
