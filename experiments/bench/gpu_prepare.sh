#!/usr/bin/env bash
# Prepares .carry/ for experiments/bench/gpu_bench.sh. Run on a CPU machine with the full build
# (bash scripts/build.sh -DREWIND_BUILD_BENCH=ON); the GPU machine has no OpenCV to render or read images.
#   .carry/g64.pt          DCGAN-64 (width 32, latent 128) trained 300 steps on synthetic faces: the
#                          generator of bench_invert.sh (and of experiments/results/bench-invert-cuda.md)
#   .carry/mia.npy         the demo GAN's 128 training images (identities 0-63 x 2), then 128 images of
#                          identities 64-127 it never saw: [256, 3, 32, 32] in [-1, 1]
#   .carry/mia-labels.txt  1 (member) or 0, one per row of mia.npy
# usage: bash experiments/bench/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RW=${REWIND:-build/rewind}
B=${BENCH:-build/experiments/bench/bench_invert}
[ -x "$RW" ] && [ -x "$B" ] || { echo "build first: bash scripts/build.sh -DREWIND_BUILD_BENCH=ON" >&2; exit 1; }
mkdir -p .carry
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ ! -s .carry/g64.pt ]; then
  "$RW" data synth-faces --out "$TMP/faces" --identities 64 --per-identity 8 --size 64 -q >/dev/null
  "$RW" train gan --data "$TMP/faces/manifest.csv" --out .carry/g64.pt --arch dcgan64 --width 32 --steps 300 \
    --sample-every 0 -q >/dev/null
  rm -f .carry/g64.pt.ckpt .carry/g64.pt.disc .carry/g64-samples.png .carry/.g64.run.json.lock  # 64 MiB carry limit
fi
"$RW" data synth-faces --out "$TMP/demo" --identities 128 --per-identity 2 --size 32 -q >/dev/null
"$B" --generator data-tools/demo/generator.pt --targets "$TMP/demo/manifest.csv" --write-targets .carry/mia.npy
python3 - "$TMP/demo/manifest.csv" > .carry/mia-labels.txt <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ids = sorted({r["identity"] for r in rows})
members = set(ids[:64])  # the demo GAN's training identities: the first 64 (data-tools/make_demo_models.sh)
for r in rows:
    print(1 if r["identity"] in members else 0)
PY
echo "members: $(grep -c 1 .carry/mia-labels.txt), non-members: $(grep -c 0 .carry/mia-labels.txt)"
ls -la .carry
