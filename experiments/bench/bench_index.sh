#!/usr/bin/env bash
# Identity-index benchmark, every row of experiments/results/bench-index.md in one command:
#   1M x 128-d: Flat, HNSW32 (efConstruction 40; efSearch 16..128 on the same built index),
#               IVF1024,Flat and IVF1024,PQ32 (nprobe 8..64);
#   200k x 512-d: the same factories (HNSW32 over 1M x 512 would take hours to build on 2 cores);
#   embedding throughput of the shipped synthetic-face embedder and, when converted, the face descriptor.
# Data: random unit vectors; queries are planted near-duplicates (cosine ~0.9 to one base vector).
# usage: experiments/bench/bench_index.sh [--bench build/experiments/bench/bench_index] [--quick]
#        (--quick: 100k x 128 and 20k x 512, for a smoke run). About 35 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=build/experiments/bench/bench_index; N128=1000000; N512=200000
while [ $# -gt 0 ]; do
  case "$1" in
    --bench) B="$2"; shift 2;; --quick) N128=100000; N512=20000; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
[ -x "$B" ] || { echo "build it first: cmake -S . -B build -DREWIND_BUILD_BENCH=ON && cmake --build build --target bench_index" >&2; exit 2; }
F="Flat;HNSW32;IVF1024,Flat;IVF1024,PQ32"
P=(--queries 2000 --factories "$F" --ef-construction 40 --ef-search 16,32,48,64,128 --nprobe 8,16,32,64)
"$B" --n "$N128" --d 128 "${P[@]}" 2>/dev/null
echo
"$B" --n "$N512" --d 512 "${P[@]}" 2>/dev/null
echo
E=(--embedder data-tools/demo/embedder.pt)
[ -f out/face.pt ] || build/rewind convert face-api --out out/face.pt -q || true
[ -f out/face.pt ] && E+=(--embedder out/face.pt)
"$B" --n 0 "${E[@]}"
echo
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
