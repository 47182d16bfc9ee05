#!/usr/bin/env bash
# The inversion benchmark on a GPU machine (CUDA PyTorch, no OpenCV/FAISS): builds the torch-only
# core + bench_invert against PyTorch's LibTorch, then runs bench_invert.sh --device cuda.
# Needs .carry/g.pt (the generator, from a CPU machine) and, where Debian's nlohmann-json3-dev is
# missing, .carry/include/nlohmann (a copy of the header tree).
# usage (from the repo root): bash experiments/bench/gpu_bench.sh [OUT_DIR]
set -euo pipefail
OUT="${1:-${OUT:-/tmp}}"
TP=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
GEN=""; command -v ninja >/dev/null && GEN="-G Ninja"
t0=$(date +%s)
cmake -S . -B build-gpu $GEN -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TP" -DREWIND_WITH_OPENCV=OFF \
  -DREWIND_WITH_FAISS=OFF -DREWIND_BUILD_TESTS=OFF -DREWIND_BUILD_BENCH=ON > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" --target bench_invert > "$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -60; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
grep -q "CUDA-graph" "$OUT/configure.log" && echo "CUDA graph path: on" || echo "CUDA graph path: OFF"
B=build-gpu/experiments/bench/bench_invert
# eager vs graph for rewind itself, then the side-by-side table (graph on)
python3 experiments/bench/invert_reference.py --generator .carry/g.pt --targets /tmp/t8.npy --make-targets 8 --device cuda
"$B" --generator .carry/g.pt --targets /tmp/t8.npy --restarts 1 --steps 300 --device cuda | tee "$OUT/eager-8x1.json"
"$B" --generator .carry/g.pt --targets /tmp/t8.npy --restarts 1 --steps 300 --device cuda --graph | tee "$OUT/graph-8x1.json"
bash experiments/bench/bench_invert.sh --device cuda --generator .carry/g.pt --bench "$B" --python python3 \
  --steps 300 --configs "8x1 8x4 64x4 256x4" | tee "$OUT/bench-cuda.md"
