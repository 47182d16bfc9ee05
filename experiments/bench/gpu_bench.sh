#!/usr/bin/env bash
# Issue #14's GPU figures in one run on the lent GPU machine (CUDA PyTorch, no OpenCV / FAISS). Builds the
# torch-only core, bench_invert, bench_split and the unit tests against PyTorch's LibTorch, runs the CUDA
# unit tests (tests/unit/test_cuda.cpp: GPU = CPU, graph = eager, auto batch, low precision), then
#   1. latent recovery, DCGAN-64 (.carry/g64.pt), 300 Adam steps, targets = its own samples: batch 8 x 1 and
#      2048 x 1; rewind fp32 and bf16 (CUDA graph, --batch 0) beside plain PyTorch eager fp32 and tuned
#      (bf16 autocast + channels_last + CUDA graph: experiments/bench/invert_reference.py --tuned), same run;
#   2. bf16 vs fp32 agreement: the demo GAN's 128 training images + 128 never seen (.carry/mia.npy), rewind's
#      default recovery (2 restarts x 200 steps) in fp32 and bf16: Spearman of the per-target errors, the
#      recovery attack's AUC in each;
#   3. white-box split inversion, ResNet-18 at 224 px (seeded random weights: speed does not depend on them),
#      after the max-pool and after layer2, batch 8 and 256, 100 steps: rewind fp32 and bf16 (--wb-precision) vs
#      PyTorch eager and tuned
#      (experiments/bench/split_reference_resnet.py);
# and writes OUT/gpu-bench.md: the tables and the README's device line (GPU, driver, CUDA, torch, date).
# Prepare .carry/ on a CPU machine first: bash experiments/bench/gpu_prepare.sh
# usage (repo root): bash experiments/bench/gpu_bench.sh [OUT_DIR]
#   GPU_BENCH_DEVICE=cpu GPU_BENCH_QUICK=1 BUILD_DIR=build: small sizes on the CPU with an existing build (checks
#   the script, not the speed).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-${OUT:-/tmp/gpu-bench}}"
mkdir -p "$OUT"
DEV=${GPU_BENCH_DEVICE:-cuda}
QUICK=${GPU_BENCH_QUICK:-0}
PY=${PYTHON:-python3}
MD="$OUT/gpu-bench.md"
t0=$(date +%s)
if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=build-gpu
  TP=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  GEN=""; command -v ninja >/dev/null && GEN="-G Ninja"
  TESTS=ON
  cmake -S . -B "$BUILD_DIR" $GEN -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TP" -DREWIND_WITH_OPENCV=OFF \
    -DREWIND_WITH_FAISS=OFF -DREWIND_BUILD_TESTS=ON -DREWIND_BUILD_BENCH=ON > "$OUT/configure.log" 2>&1 || {
    TESTS=OFF  # no GoogleTest on this machine: benchmarks only
    cmake -S . -B "$BUILD_DIR" $GEN -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TP" -DREWIND_WITH_OPENCV=OFF \
      -DREWIND_WITH_FAISS=OFF -DREWIND_BUILD_TESTS=OFF -DREWIND_BUILD_BENCH=ON > "$OUT/configure.log" 2>&1 || {
      tail -30 "$OUT/configure.log"; exit 1; }
  }
  targets="bench_invert bench_split"; [ "$TESTS" = ON ] && targets="$targets rewind_tests"
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target $targets > "$OUT/build.log" 2>&1 || {
    grep -E "error" -A3 "$OUT/build.log" | head -60; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s (tests $TESTS)"
  grep -q "CUDA-graph" "$OUT/configure.log" && echo "CUDA path: on" || echo "CUDA path: OFF (LibTorch without CUDA?)"
fi
BI="$BUILD_DIR/experiments/bench/bench_invert"
BS="$BUILD_DIR/experiments/bench/bench_split"
UT="$BUILD_DIR/tests/rewind_tests"

{
  echo "# #14 GPU figures ($(date -u +%Y-%m-%d))"
  echo
  if command -v nvidia-smi >/dev/null; then
    echo "Device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1), $("$PY" -c 'import torch; print("CUDA", torch.version.cuda, "/ torch", torch.__version__)')"
  else
    echo "Device: $DEV ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $("$PY" -c 'import torch; print("torch", torch.__version__)')"
  fi
  echo
} > "$MD"

if [ -x "$UT" ]; then
  echo "## CUDA unit tests" >> "$MD"
  "$UT" --gtest_filter='Cuda.*:Loop.*:Invert.*' 2>&1 | tail -25 | tee "$OUT/tests.log" | grep -E "PASSED|FAILED|SKIPPED|tests ran" \
    | sed 's/^/    /' >> "$MD" || true
  echo >> "$MD"
fi

# ---- 1. latent recovery ------------------------------------------------------------------------------------
if [ "$QUICK" = 1 ]; then SIZES="8 64"; STEPS=20; else SIZES="8 2048"; STEPS=300; fi
G=.carry/g64.pt
[ -s "$G" ] || { echo "missing $G: run experiments/bench/gpu_prepare.sh on a CPU machine and carry .carry" >&2; exit 1; }
{
  echo "## Latent recovery, DCGAN-64 (width 32, latent 128), $STEPS Adam steps, 1 restart"
  echo
  echo "| batch | implementation | image-steps/s | ms / step | median MSE |"
  echo "|---|---|---|---|---|"
} >> "$MD"
for n in $SIZES; do
  T="$OUT/t$n.npy"
  "$PY" experiments/bench/invert_reference.py --generator "$G" --targets "$T" --make-targets "$n" --device "$DEV" --seed 7
  {
    "$BI" --generator "$G" --targets "$T" --restarts 1 --steps "$STEPS" --device "$DEV" --graph
    "$BI" --generator "$G" --targets "$T" --restarts 1 --steps "$STEPS" --device "$DEV" --graph --precision bf16
    "$PY" experiments/bench/invert_reference.py --generator "$G" --targets "$T" --restarts 1 --steps "$STEPS" --device "$DEV"
    "$PY" experiments/bench/invert_reference.py --generator "$G" --targets "$T" --restarts 1 --steps "$STEPS" --device "$DEV" --tuned
  } > "$OUT/invert-$n.jsonl"
  "$PY" - "$n" "$OUT/invert-$n.jsonl" >> "$MD" <<'PY'
import json, sys
n, rows = sys.argv[1], [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
for r in rows:
    name = r["impl"] + (" " + r.get("precision", "fp32")) + (" graph" if r.get("graph") else "")
    print("| %s | %s | %.0f | %.4f | %.3e |" % (n, name, r["image_steps_per_s"], r["ms_per_step"], r["median_mse"]))
tuned = [r for r in rows if r["impl"].endswith("tuned")]
best = max(rows[:2], key=lambda r: r["image_steps_per_s"])
if tuned:
    print("| %s | **rewind best / PyTorch tuned** | **%.2fx** | | |" % (n, best["image_steps_per_s"] / tuned[0]["image_steps_per_s"]))
PY
done
echo >> "$MD"

# ---- 2. bf16 vs fp32 agreement ------------------------------------------------------------------------------
if [ -s .carry/mia.npy ]; then
  ASTEPS=200; [ "$QUICK" = 1 ] && ASTEPS=20
  for p in fp32 bf16; do
    "$BI" --generator data-tools/demo/generator.pt --targets .carry/mia.npy --restarts 2 --steps "$ASTEPS" --device "$DEV" \
      --graph --precision "$p" --errors "$OUT/errors-$p.txt" > "$OUT/agree-$p.json"
  done
  "$PY" - "$OUT" .carry/mia-labels.txt "$ASTEPS" >> "$MD" <<'PY'
import sys
import numpy as np
out, labels, steps = sys.argv[1], np.loadtxt(sys.argv[2]), sys.argv[3]
a, b = np.loadtxt(out + "/errors-fp32.txt"), np.loadtxt(out + "/errors-bf16.txt")
def ranks(x):
    r = np.empty(len(x)); r[np.argsort(x, kind="mergesort")] = np.arange(len(x)); return r
def auc(err):  # members have lower recovery error: score = -error; ties count half
    s = -err; m, nm = s[labels == 1], s[labels == 0]
    return ((m[:, None] > nm[None, :]).sum() + 0.5 * (m[:, None] == nm[None, :]).sum()) / (len(m) * len(nm))
rho = np.corrcoef(ranks(a), ranks(b))[0, 1]
print("## bf16 vs fp32: the demo GAN's %d targets (%d members), 2 restarts x %s steps" % (len(a), int(labels.sum()), steps))
print()
print("| measure | fp32 | bf16 | criterion |")
print("|---|---|---|---|")
print("| Spearman of per-target errors | %.4f | | >= 0.99 |" % rho)
print("| recovery AUC | %.4f | %.4f | within 0.01 (%.4f) |" % (auc(a), auc(b), abs(auc(a) - auc(b))))
print("| median error | %.4g | %.4g | |" % (np.median(a), np.median(b)))
print()
PY
else
  echo "(bf16 agreement skipped: no .carry/mia.npy; run experiments/bench/gpu_prepare.sh)" >> "$MD"
fi

# ---- 3. white-box split inversion, ResNet-18 -----------------------------------------------------------------
R="$OUT/r18.pt"
"$PY" experiments/bench/split_reference_resnet.py --make-model "$R"
if [ "$QUICK" = 1 ]; then BATCHES="2 4"; SSTEPS=5; else BATCHES="8 256"; SSTEPS=100; fi
{
  echo "## White-box split inversion, ResNet-18 at 224 px, $SSTEPS Adam steps"
  echo
  echo "| split | batch | implementation | image-steps/s | ms / step | rewind's best / this |"
  echo "|---|---|---|---|---|---|"
} >> "$MD"
for split in maxpool layer2.1; do
  for n in $BATCHES; do
    T="$OUT/r$n.npy"
    [ -s "$T" ] || "$PY" experiments/bench/split_reference_resnet.py --make-targets "$n" --targets "$T"
    {
      "$BS" --classifier "$R" --targets "$T" --split "$split" --steps "$SSTEPS" --device "$DEV" --batch "$n"
      "$BS" --classifier "$R" --targets "$T" --split "$split" --steps "$SSTEPS" --device "$DEV" --batch "$n" --precision bf16
      "$PY" experiments/bench/split_reference_resnet.py --classifier "$R" --targets "$T" --split "$split" --steps "$SSTEPS" --device "$DEV"
      "$PY" experiments/bench/split_reference_resnet.py --classifier "$R" --targets "$T" --split "$split" --steps "$SSTEPS" --device "$DEV" --tuned
    } > "$OUT/split-$split-$n.jsonl"
    "$PY" - "$split" "$n" "$OUT/split-$split-$n.jsonl" >> "$MD" <<'PY'
import json, sys
split, n, rows = sys.argv[1], sys.argv[2], [json.loads(l) for l in open(sys.argv[3]) if l.startswith("{")]
rw = max(r["image_steps_per_s"] for r in rows if r["impl"] == "rewind")
for r in rows:
    ms = r.get("ms_per_step", 1000.0 * r["seconds"] / r["steps"])
    name = r["impl"] + (" " + r["precision"] if r["impl"] == "rewind" else "")
    print("| %s | %s | %s | %.0f | %.3f | %.2fx |" % (split, n, name, r["image_steps_per_s"], ms, rw / r["image_steps_per_s"]))
PY
  done
done
echo >> "$MD"
echo "total: $(( $(date +%s) - t0 )) s" >> "$MD"
cat "$MD"
