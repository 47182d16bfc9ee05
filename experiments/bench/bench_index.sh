#!/usr/bin/env bash
# Identity-index benchmark, every row of experiments/results/bench-index.md in one command.
# Queries are planted near-duplicates (cosine ~0.9 to one base vector, like a second photo of an
# indexed person); recall@1 is against exact search. Base vectors:
#   realistic: drawn from a Gaussian fitted to real embeddings (the shipped embedder on 320 synthetic
#              identities x 4 images), normalised: the low-dimensional structure face embeddings have;
#   uniform:   random unit vectors, no structure at all (the worst case for graph indexes).
# Rows: 1M x 128 realistic (Flat, HNSW32, IVF1024,Flat, IVF1024,PQ32; several efSearch / nprobe on
# each built index), 100k x 128 uniform, 100k x 512 uniform, and the embedders' throughput.
# usage: experiments/bench/bench_index.sh [--bench build/experiments/bench/bench_index] [--quick]
#        [--uniform-1m]   (--quick: 100k / 20k rows; --uniform-1m: the uniform row at 1M, ~30 min more)
# About 35 min on 2 cores (the 1M HNSW32 build is 11 min of it).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=build/experiments/bench/bench_index; R=build/rewind; N=1000000; NU=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --bench) B="$2"; shift 2;; --quick) N=100000; NU=20000; shift;; --uniform-1m) NU=1000000; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
[ -x "$B" ] || { echo "build it first: cmake -S . -B build -DREWIND_BUILD_BENCH=ON && cmake --build build" >&2; exit 2; }
W=out/bench-index
mkdir -p "$W"
if [ ! -f "$W/emb/embeddings.npy" ]; then
  "$R" data synth-faces --out "$W/faces" --identities 320 --per-identity 4 --size 32 --no-contact-sheet -q
  "$R" embed --embedder data-tools/demo/embedder.pt --data "$W/faces/manifest.csv" --out "$W/emb" -q
fi
F="Flat;HNSW32;IVF1024,Flat;IVF1024,PQ32"
P=(--queries 2000 --ef-construction 40 --ef-search 16,32,64,128 --nprobe 8,16,32)
"$B" --n "$N" --like "$W/emb/embeddings.npy" --factories "$F" "${P[@]}" 2>/dev/null
echo
"$B" --n "$NU" --d 128 --factories "$F" "${P[@]}" 2>/dev/null
echo
"$B" --n "$NU" --d 512 --factories "$F" "${P[@]}" 2>/dev/null
echo
E=(--embedder data-tools/demo/embedder.pt)
[ -f "$W/face.pt" ] || "$R" convert face-api --out "$W/face.pt" -q || true
[ -f "$W/face.pt" ] && E+=(--embedder "$W/face.pt")
"$B" --n 0 "${E[@]}"
echo
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
