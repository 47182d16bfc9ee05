#!/usr/bin/env bash
# Latent recovery speed, rewind vs a plain-PyTorch reference of the same algorithm (Adam on z,
# cosine schedule, per-item MSE, best restart kept), same generator, same targets, same steps, same
# threads, in one script. Prints a markdown table with the ratio.
#
# usage: experiments/bench/bench_invert.sh [--device cpu|cuda] [--generator G.pt] [--bench path/to/bench_invert]
#        [--python python3] [--steps 100] [--configs "1x4 8x4 64x4"]
# Default generator: a DCGAN-64 (width 32, latent 128) trained for 300 steps on synthetic faces
# by `rewind train gan` (CPU machines only; on a GPU machine pass --generator).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICE=cpu; GEN=""; BENCH=build-bench/experiments/bench/bench_invert; PY=/usr/bin/python3; STEPS=100
CONFIGS="1x4 8x4 64x4"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2;; --generator) GEN="$2"; shift 2;; --bench) BENCH="$2"; shift 2;;
    --python) PY="$2"; shift 2;; --steps) STEPS="$2"; shift 2;; --configs) CONFIGS="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
THREADS=$(nproc)
if [ ! -x "$BENCH" ]; then
  cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DREWIND_BUILD_BENCH=ON >/dev/null
  cmake --build build-bench -j "$THREADS" --target bench_invert rewind >/dev/null
fi
RW="$(dirname "$BENCH")/../../rewind"
if [ -z "$GEN" ]; then
  GEN="$TMP/g.pt"
  "$RW" data synth-faces --out "$TMP/faces" --identities 64 --per-identity 8 --size 64 -q >/dev/null
  "$RW" train gan --data "$TMP/faces/manifest.csv" --out "$GEN" --arch dcgan64 --width 32 \
    --steps 300 --sample-every 0 -q >/dev/null
fi
echo "| targets x restarts | rewind image-steps/s | PyTorch image-steps/s | ratio | rewind median MSE | PyTorch median MSE |"
echo "|---|---|---|---|---|---|"
for cfg in $CONFIGS; do
  n=${cfg%x*}; r=${cfg#*x}
  "$PY" experiments/bench/invert_reference.py --generator "$GEN" --targets "$TMP/t$n.npy" --make-targets "$n" \
    --device "$DEVICE" --seed 7
  extra=""; [ "$DEVICE" = cuda ] && extra="--graph"
  rw=$("$BENCH" --generator "$GEN" --targets "$TMP/t$n.npy" --restarts "$r" --steps "$STEPS" --device "$DEVICE" --threads "$THREADS" $extra)
  pt=$("$PY" experiments/bench/invert_reference.py --generator "$GEN" --targets "$TMP/t$n.npy" --restarts "$r" \
    --steps "$STEPS" --device "$DEVICE" --threads "$THREADS")
  echo "$rw" >> "$TMP/raw.jsonl"; echo "$pt" >> "$TMP/raw.jsonl"
  "$PY" - "$cfg" "$rw" "$pt" <<'PY'
import json, sys
cfg, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print("| %s | %.0f | %.0f | %.2fx | %.3e | %.3e |" % (cfg, a["image_steps_per_s"], b["image_steps_per_s"],
      a["image_steps_per_s"] / b["image_steps_per_s"], a["median_mse"], b["median_mse"]))
PY
done
echo
echo "device $DEVICE, $THREADS threads, $STEPS steps; $(head -1 "$TMP/raw.jsonl" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["build"])'); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name --format=csv,noheader || true
