#!/usr/bin/env bash
# #16: reference-calibrated attacks (calibrated, lira, rmia) against the uncalibrated recovery attack on a
# DCGAN trained by plain PyTorch and exported as TorchScript (a user's own GAN, not one of rewind's), at 64
# training images. The acceptance line: calibrated beats recovery by >= 0.1 AUC, or the note says why not.
#
# Data: Fashion-MNIST (`rewind data fashion-mnist`, Debian's dataset-fashion-mnist), the first 2000 training
# images; experiments/torchscript_dcgan.py `sets` draws four disjoint sets of 64 with the same class mix
# (7 images of each of classes 0..3, 6 of each of 4..9; seeded shuffle per class) and pads them to 32x32 grey:
#   members     the target GAN's training set        nonmembers  never trained on by any GAN
#   ref1, ref2  the two reference GANs' training sets (disjoint from members and non-members)
# Models (experiments/torchscript_dcgan.py `train`, PyTorch, CPU, one thread): the usual DCGAN at 32x32, 1
# channel, latent 100, width W (generator 4W-2W-W ConvTranspose + BatchNorm + ReLU, tanh), BCE loss, Adam 2e-4
# (0.5, 0.999), GAN_STEPS steps of batch 64 (3000 x 64 = 3000 epochs of 64 images), seeds 1 (target), 2, 3
# (references); saved with torch.jit.script (forward(z), latent_dim).
# Attacks: `rewind membership` with its default recovery (2 restarts x 200 Adam steps, lr 0.05, MSE, z), seed
# 1, 1000 bootstrap resamples, once with K=1 reference (ref1) and once with K=2 (ref1, ref2). Replicates at no
# training cost: each reference GAN in turn as the target (its own set as members, the other two GANs as
# references). Diagnostics: the target's recovery with --seed 2, and K=2 with --restarts 8.
# The analysis (torchscript_dcgan.py analyse) adds paired-bootstrap intervals of each AUC gain, the TPR at no
# false positive (rewind's own TPR@1%FPR needs >= 300 non-members) and per-image error correlations.
# Writes out/torchscript-calibrated/ (sets, models, runs, timings.tsv, train logs, table.md); the table is the
# data part of experiments/results/torchscript-calibrated.md.
# usage: nice -n 10 experiments/torchscript_calibrated.sh [--gan-steps 3000] [--width 32] [--threads 1]
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
PY=${PY:-/usr/bin/python3}  # Debian's python3-torch
GAN_STEPS=3000; WIDTH=32; THREADS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --gan-steps) GAN_STEPS="$2"; shift 2;; --width) WIDTH="$2"; shift 2;; --threads) THREADS="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
export OMP_NUM_THREADS="$THREADS"
W=${W:-out/torchscript-calibrated}
mkdir -p "$W"
T="$W/timings.tsv"
[ -f "$T" ] || printf 'step\tseconds\n' > "$T"
. experiments/lib.sh  # timed NAME CMD...: appends its wall time to $T

[ -f "$W/fmnist/manifest.csv" ] || "$REWIND" data fashion-mnist --out "$W/fmnist" --limit 2000 --threads "$THREADS" -q
S="$W/sets"
[ -f "$S/ref2.csv" ] || "$PY" experiments/torchscript_dcgan.py sets --manifest "$W/fmnist/manifest.csv" --out "$S" \
    --seed 1 --per-set 64 --sets members,nonmembers,ref1,ref2

train() {  # train NAME SET SEED
  [ -f "$W/$1.pt" ] && return 0
  echo "== training $1 on $2 (seed $3)" >&2
  timed "train $1 ($GAN_STEPS steps)" "$PY" experiments/torchscript_dcgan.py train --data "$S/$2.csv" --out "$W/$1.pt" \
      --steps "$GAN_STEPS" --batch 64 --width "$WIDTH" --latent-dim 100 --seed "$3" --threads "$THREADS" \
      > "$W/train-$1.log"
  grep -v '^{' "$W/train-$1.log" | tail -3 >&2
}
train target members 1
train ref1 ref1 2
train ref2 ref2 3

mia() {  # mia NAME GAN MEMBER_SET "REF..." [extra rewind options]: one `rewind membership` run into $W/mia-NAME
  local name="$1" gan="$2" set="$3" rs="$4"; shift 4
  local R="$W/mia-$name" refs=() attacks=recovery,calibrated,lira,rmia
  [ -f "$R/report.json" ] && return 0
  for r in $rs; do refs+=(--reference-generator "$W/$r.pt"); done
  [ -z "$rs" ] && attacks=recovery
  local seed=(--seed 1)
  [[ " $* " == *" --seed "* ]] && seed=()
  echo "== membership $name" >&2
  if ! timed "membership $name" "$REWIND" membership --generator "$W/$gan.pt" --members "$S/$set.csv" \
      --nonmembers "$S/nonmembers.csv" "${refs[@]}" --attacks "$attacks" "${seed[@]}" --threads "$THREADS" "$@" \
      --out "$R" > "$W/mia-$name.log" 2>&1; then
    tail -5 "$W/mia-$name.log" >&2
    return 1
  fi
  grep -E '^(recovery|calibrated|lira|rmia|blind)' "$W/mia-$name.log" >&2 || true
}
# the issue's setup: the GAN trained on `members`, references ref1 (K=1) and ref1 + ref2 (K=2)
mia target-k1 target members "ref1"
mia target-k2 target members "ref1 ref2"
# replicates at no training cost: each reference GAN in turn as the target, its own training set as the
# members, the same non-members, the other two GANs as its references (all four sets are disjoint)
mia ref1-k1 ref1 ref1 "target"
mia ref1-k2 ref1 ref1 "target ref2"
mia ref2-k1 ref2 ref2 "target"
mia ref2-k2 ref2 ref2 "target ref1"
# diagnostics on the main target: the recovery again with other restarts (--seed 2: how much of an image's error
# is optimiser noise), and K=2 with 8 restarts instead of the default 2
mia target-recovery-seed2 target members "" --seed 2
mia target-k2-restarts8 target members "ref1 ref2" --restarts 8

# the white-box discriminator attack (Hayes et al. 2019) on the target's own PyTorch discriminator, saved beside it
# as TorchScript (target.pt.disc); the same members and non-members
if [ ! -f "$W/mia-target-disc/report.json" ] && [ -f "$W/target.pt.disc" ]; then
  timed "membership target-disc" "$REWIND" membership --generator "$W/target.pt" --discriminator "$W/target.pt.disc" \
      --members "$S/members.csv" --nonmembers "$S/nonmembers.csv" --attacks recovery,discriminator --seed 1 \
      --threads "$THREADS" --out "$W/mia-target-disc" > "$W/mia-target-disc.log" 2>&1
  grep -E '^(recovery|discriminator)' "$W/mia-target-disc.log" >&2 || true
fi

"$PY" experiments/torchscript_dcgan.py analyse --runs "$W" --rotations target,ref1,ref2 \
    --labels "$S/members.csv,$S/nonmembers.csv" | tee "$W/table.md"
echo "timings: $T" >&2
cat "$T" >&2
