#!/usr/bin/env bash
# Training throughput of rewind's own models on this machine (images per second of optimisation,
# forward + backward + update), for each `rewind train` model at the sizes the experiments use.
# usage: experiments/bench/train_speed.sh [path/to/rewind]   (default build/rewind)
# Prints a markdown table, stamped with commit, CPU, threads and build type.
set -euo pipefail
cd "$(dirname "$0")/../.."
REWIND="${1:-build/rewind}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
THREADS="${REWIND_THREADS:-0}"

"$REWIND" data synth-faces --out "$TMP/faces64" --identities 64 --per-identity 8 --size 64 -q >/dev/null
"$REWIND" data synth-faces --out "$TMP/faces32" --identities 64 --per-identity 8 --size 32 -q >/dev/null
"$REWIND" data fashion-mnist --out "$TMP/fm" --split test --limit 4096 -q >/dev/null

ips() { python3 -c "import json,sys; print('%.0f' % json.load(open(sys.argv[1]))['results']['images_per_second'])" "$1"; }
row() {  # row NAME RUNJSON
  echo "| $1 | $(ips "$2") |"
}

build_type=$("$REWIND" --version)
echo "# rewind training throughput"
echo
echo "$build_type; $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); threads=${THREADS} (0 = all)"
echo
echo "| model (batch) | images/s |"
echo "|---|---|"
"$REWIND" train gan --data "$TMP/faces64/manifest.csv" --out "$TMP/g64w32.pt" --arch dcgan64 --width 32 --steps 15 --batch 64 --sample-every 0 --threads "$THREADS" -q >/dev/null
row "GAN dcgan64 width 32, 3x64x64 (64)" "$TMP/g64w32.run.json"
"$REWIND" train gan --data "$TMP/faces64/manifest.csv" --out "$TMP/g64w16.pt" --arch dcgan64 --width 16 --steps 20 --batch 64 --sample-every 0 --threads "$THREADS" -q >/dev/null
row "GAN dcgan64 width 16, 3x64x64 (64)" "$TMP/g64w16.run.json"
"$REWIND" train gan --data "$TMP/faces32/manifest.csv" --out "$TMP/g32.pt" --arch dcgan32 --width 32 --steps 30 --batch 64 --sample-every 0 --threads "$THREADS" -q >/dev/null
row "GAN dcgan32 width 32, 3x32x32 (64)" "$TMP/g32.run.json"
"$REWIND" train gan --data "$TMP/fm/manifest.csv" --out "$TMP/g28.pt" --arch dcgan28 --channels 1 --width 32 --steps 30 --batch 64 --sample-every 0 --threads "$THREADS" -q >/dev/null
row "GAN dcgan28 width 32, 1x28x28 (64)" "$TMP/g28.run.json"
"$REWIND" train classifier --data "$TMP/fm/manifest.csv" --out "$TMP/c.pt" --arch cnn28 --channels 1 --width 16 --epochs 1 --batch 128 --val-fraction 0 --threads "$THREADS" -q >/dev/null
row "classifier cnn28 width 16, 1x28x28 (128)" "$TMP/c.run.json"
"$REWIND" train embedder --data "$TMP/faces64/manifest.csv" --out "$TMP/e.pt" --arch cnn64 --width 16 --epochs 1 --batch 128 --threads "$THREADS" -q >/dev/null
row "embedder cnn64 width 16, 3x64x64 (128)" "$TMP/e.run.json"
