#!/usr/bin/env bash
# The latent space's effect on membership (issue #17 item 5): the recovery attack's member / non-member
# AUC when the latent is recovered in z, w or w+, with and without a feature (perceptual) loss term.
# Image2StyleGAN / PTI warn that w+ (one w per layer) can reconstruct almost any image, members or not,
# which would push the recovery attack towards chance.
#
# Data: `rewind data synth-faces` identities 0..127, one 32x32 image each. Members: identities 0..63
# (image 0); non-members: identities 64..127 (image 0).
# Models:
#   stylegan  the StyleGAN-like client model (data-tools/make_client_models.py, z 32 -> w 32, num_ws 8),
#             trained by PyTorch (data-tools/train_stylegan.py) on the 64 member images; z, w, w+.
#   demo      the demo's native DCGAN (data-tools/demo/generator.pt, trained on identities 0..63 x images 0
#             and 1, 32000 steps; see data-tools/make_demo_models.sh); z only (no mapping network).
#             Its members here are image 0 of identities 0..63 (training images), non-members identities 64..127.
# Feature loss: --recovery-loss mse=1,feature=FW with --feature-net = the discriminator trained alongside the
# StyleGAN (TorchScript nn.Sequential), --feature-layer FL (a child name). Runs only if this rewind has the flags.
# FW 0.3 makes the feature term about as large as the MSE term at a generator's nearest sample to a member
# (feature distance ~0.18 at layer 3 where the MSE is ~0.05). Note: that discriminator was trained on the members.
# Writes experiments/results/latent-space-membership.md (table part) and out/latent-space/ (runs, timings.tsv).
# usage: experiments/latent_space_membership.sh [--gan-steps 3000] [--steps 200] [--restarts 2] [--lr 0.05]
#        [--feature-weight 0.3] [--feature-layer 3] [--threads 1]
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
PY=${PY:-/usr/bin/python3}  # Debian's python3-torch
GAN_STEPS=3000; STEPS=200; RESTARTS=2; LR=0.05; FW=0.3; FL=3; THREADS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --gan-steps) GAN_STEPS="$2"; shift 2;; --steps) STEPS="$2"; shift 2;; --restarts) RESTARTS="$2"; shift 2;;
    --lr) LR="$2"; shift 2;; --feature-weight) FW="$2"; shift 2;; --feature-layer) FL="$2"; shift 2;;
    --threads) THREADS="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
W=out/latent-space
mkdir -p "$W"
T="$W/timings.tsv"
[ -f "$T" ] || printf 'run\tseconds\n' > "$T"
. experiments/lib.sh  # timed NAME CMD...: appends its wall time to $T

F="$W/faces"
[ -f "$F/manifest.csv" ] || $REWIND data synth-faces --out "$F" --identities 128 --per-identity 1 --size 32 -q >/dev/null
awk -F, 'NR==1 || substr($2,3)+0 < 64' "$F/manifest.csv" > "$F/members.csv"
awk -F, 'NR==1 || substr($2,3)+0 >= 64' "$F/manifest.csv" > "$F/nonmembers.csv"

G="$W/stylegan.pt"; D="$W/disc.pt"
if [ ! -f "$G" ]; then
  timed train-stylegan "$PY" data-tools/train_stylegan.py --data "$F/members.csv" --out "$G" --disc-out "$D" \
      --steps "$GAN_STEPS" --seed 1 --threads "$THREADS" | tee "$W/train.log"
fi

FEATURE=0
HELP=$($REWIND membership --help 2>&1 || true)  # not `| grep -q`: under pipefail, grep's early exit fails the pipe
if grep -q -- '--recovery-loss' <<<"$HELP" && grep -q -- '--feature-net' <<<"$HELP"; then
  FEATURE=1
else
  echo "this rewind has no --recovery-loss / --feature-net: the feature-loss column is not run" >&2
fi

run() {  # run MODEL GENERATOR SPACE LOSS
  local model="$1" gen="$2" space="$3" loss="$4"
  local R="$W/mia-$model-${space/+/plus}-$loss"
  [ -f "$R/report.json" ] && return 0
  local extra=()
  [ "$loss" = feat ] && extra=(--recovery-loss "mse=1,feature=$FW" --feature-net "$D" --feature-layer "$FL")
  echo "== $model $space $loss" >&2
  timed "$model-$space-$loss" $REWIND membership --generator "$gen" --members "$F/members.csv" \
      --nonmembers "$F/nonmembers.csv" --attacks recovery --latent "$space" --steps "$STEPS" --restarts "$RESTARTS" \
      --lr "$LR" --threads "$THREADS" "${extra[@]}" --out "$R" -q
}
LOSSES=mse; [ "$FEATURE" = 1 ] && LOSSES="mse feat"
for loss in $LOSSES; do
  for space in z w w+; do run stylegan "$G" "$space" "$loss"; done
  run demo data-tools/demo/generator.pt z "$loss"
done

python3 - "$W" "$GAN_STEPS" "$STEPS" "$RESTARTS" "$LR" "$FW" "$FL" "$FEATURE" <<'PY' | tee "$W/table.md"
import json, os, sys
w, gsteps, steps, restarts, lr, fw, fl, feature = sys.argv[1:]
def get(model, space, loss):
    f = f"{w}/mia-{model}-{space.replace('+', 'plus')}-{loss}/report.json"
    if not os.path.exists(f):
        return None
    return json.load(open(f))["metrics"]["image"]["recovery"]
def auc(m):
    return "not run" if m is None else f"{m['auc'][0]:.3f} [{m['auc'][1]:.3f}, {m['auc'][2]:.3f}]"
def mse(m):
    return "" if m is None else f"{m['median_error_members']:.4f} / {m['median_error_nonmembers']:.4f}"
print(f"Recovery attack, 64 members vs 64 non-members, {restarts} restarts x {steps} Adam steps at lr {lr}; "
      f"feature loss: mse=1,feature={fw} at discriminator layer {fl}. AUC [95% bootstrap CI]; median recovery MSE "
      "member / non-member (pixels in [-1, 1]).\n")
print("| model | space | AUC, MSE loss | AUC, MSE + feature loss | median MSE mem / non (MSE loss) | "
      "median MSE mem / non (feature loss) |")
print("|---|---|---|---|---|---|")
for model, spaces in [("stylegan", ["z", "w", "w+"]), ("demo", ["z", "w", "w+"])]:
    for s in spaces:
        if model == "demo" and s != "z":
            print(f"| demo DCGAN | {s} | n/a (no mapping network) | n/a | | |")
            continue
        a, b = get(model, s, "mse"), get(model, s, "feat")
        name = "StyleGAN-like (PyTorch)" if model == "stylegan" else "demo DCGAN"
        print(f"| {name} | {s} | {auc(a)} | {auc(b)} | {mse(a)} | {mse(b)} |")
PY
echo "timings: $T" >&2
