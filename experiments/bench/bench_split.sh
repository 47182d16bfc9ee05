#!/usr/bin/env bash
# White-box feature inversion speed, rewind vs a plain-PyTorch reference of the same loop (Adam on
# the pixels, cosine schedule, relative feature error + TV + L2 + DeepInversion BatchNorm prior, best
# kept per item), same classifier, targets, steps and threads, in one script. Prints a markdown table
# with the ratio.
#
# usage: experiments/bench/bench_split.sh [--classifier C.pt] [--bench path/to/bench_split]
#        [--python python3] [--steps 300] [--targets 64] [--splits "conv1 relu2 pool2"] [--reps 5]
# Each side runs --reps times, interleaved (rewind, PyTorch, rewind, ...); the table gives medians,
# because this shared 2-core machine varies by up to 1.7x between back-to-back identical runs.
# Default classifier: cnn28 (width 16) trained for 1 epoch on 10,000 Fashion-MNIST images by
# `rewind train classifier` (needs Debian's dataset-fashion-mnist). Targets: the first test images.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLS=""; BENCH=build-bench/experiments/bench/bench_split; PY=/usr/bin/python3; STEPS=300; N=64; REPS=5
SPLITS="conv1 relu2 pool2"
while [ $# -gt 0 ]; do
  case "$1" in
    --classifier) CLS="$2"; shift 2;; --bench) BENCH="$2"; shift 2;; --python) PY="$2"; shift 2;;
    --steps) STEPS="$2"; shift 2;; --targets) N="$2"; shift 2;; --splits) SPLITS="$2"; shift 2;; --reps) REPS="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
THREADS=$(nproc)
if [ ! -x "$BENCH" ]; then
  cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DREWIND_BUILD_BENCH=ON >/dev/null
  cmake --build build-bench -j "$THREADS" --target bench_split rewind >/dev/null
fi
RW="$(dirname "$BENCH")/../../rewind"
if [ -z "$CLS" ]; then
  CLS="$TMP/c.pt"
  "$RW" data fashion-mnist --out "$TMP/fm" --split train --limit 10000 -q
  "$RW" train classifier --data "$TMP/fm/manifest.csv" --arch cnn28 --channels 1 --width 16 --epochs 1 --out "$CLS" -q >/dev/null
fi
"$PY" - "$TMP/t.npy" "$N" <<'PY'
import gzip, sys
import numpy as np
with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[: int(sys.argv[2])]
np.save(sys.argv[1], (x.astype(np.float32) / 127.5 - 1).astype(np.float32))
PY
echo "| split | rewind image-steps/s (median) | PyTorch image-steps/s (median) | ratio of medians (worst-best pairing) | rewind median PSNR | PyTorch median PSNR |"
echo "|---|---|---|---|---|---|"
for s in $SPLITS; do
  : > "$TMP/rw.jsonl"; : > "$TMP/pt.jsonl"
  for r in $(seq "$REPS"); do
    "$BENCH" --classifier "$CLS" --targets "$TMP/t.npy" --split "$s" --steps "$STEPS" --threads "$THREADS" >> "$TMP/rw.jsonl"
    "$PY" experiments/bench/split_reference.py --classifier "$CLS" --targets "$TMP/t.npy" --split "$s" \
      --steps "$STEPS" --threads "$THREADS" >> "$TMP/pt.jsonl"
  done
  cat "$TMP/rw.jsonl" "$TMP/pt.jsonl" >> "$TMP/raw.jsonl"
  "$PY" - "$s" "$TMP/rw.jsonl" "$TMP/pt.jsonl" <<'PY'
import json, statistics, sys
s = sys.argv[1]
a = [json.loads(l) for l in open(sys.argv[2])]
b = [json.loads(l) for l in open(sys.argv[3])]
ra = statistics.median(x["image_steps_per_s"] for x in a)
rb = statistics.median(x["image_steps_per_s"] for x in b)
lo = min(x["image_steps_per_s"] for x in a) / max(x["image_steps_per_s"] for x in b)
hi = max(x["image_steps_per_s"] for x in a) / min(x["image_steps_per_s"] for x in b)
print("| %s | %.0f | %.0f | **%.2fx** (%.2f-%.2f) | %.2f | %.2f |" % (s, ra, rb, ra / rb, lo, hi, a[0]["median_psnr"], b[0]["median_psnr"]))
PY
done
echo
echo "cpu, $THREADS threads, $N targets (batch $N), $STEPS steps, $REPS interleaved runs per side; $(head -1 "$TMP/raw.jsonl" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["build"])'); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
