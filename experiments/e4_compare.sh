#!/usr/bin/env bash
# E4: both directions on the same people, at two GAN training-set sizes.
# The 128 demo identities (64 members) go through `rewind compare` twice: with the shipped demo GAN
# (members x 8 images = 512 training images, 16000 steps) and with a GAN trained on members x 4 images (256;
# trained here if missing, 3000 steps). The split classifier (demo, 64 member identities) and the
# embedder are the same in both runs, so only the GAN side changes.
# usage: experiments/e4_compare.sh [--splits relu1,pool2,relu3,fc1] [--defense none,noise=1]
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
SPLITS=relu1,pool2,relu3,fc1; DEF=none,noise=1
# the recovery and white-box budgets e4-compare.md was measured with (compare's defaults then)
BUDGET=(--steps 100 --restarts 2 --wb-steps 200)
while [ $# -gt 0 ]; do
  case "$1" in
    --splits) SPLITS="$2"; shift 2;; --defense) DEF="$2"; shift 2;; *) echo "unknown option $1" >&2; exit 2;;
  esac
done
W=out/e4
mkdir -p "$W"
$REWIND compare --out "$W/size-512" --splits "$SPLITS" --defense "$DEF" "${BUDGET[@]}" -q
D="$W/size-512/demo-data"
if [ ! -f "$W/g-256.pt" ]; then
  awk -F, 'NR==1 || (substr($2,3)+0 < 64)' "$D/dataset/manifest.csv" > "$D/dataset/members.csv"
  $REWIND train gan --data "$D/dataset/members.csv" --out "$W/g-256.pt" --arch dcgan32 --width 16 --steps 3000 -q
fi
$REWIND compare --generator "$W/g-256.pt" --classifier data-tools/demo/classifier.pt --dataset "$D/dataset" \
  --embedder data-tools/demo/embedder.pt --reference "$D/reference" --out "$W/size-256" --splits "$SPLITS" --defense "$DEF" "${BUDGET[@]}" -q
python3 - "$W" <<'PY' | tee experiments/results/e4-compare.md
import json, sys
w = sys.argv[1]
print("# E4: both directions on the same people, two GAN training-set sizes\n")
print("128 synthetic identities (64 trained the GAN and the split classifier); one photo per person through both "
      "attacks (`rewind compare`). GAN side: identity-nn at FAR 1e-3 (1000 reference strangers). Split side: white-box "
      "inversion (200 steps); exposed = rebuilt photo is the same person at the 1:1 FAR-1e-3 threshold.\n")
print("| GAN training images | direction | split | defence | people exposed | members exposed (GAN) | PSNR dB | accuracy |")
print("|---|---|---|---|---|---|---|---|")
for size in ("256", "512"):
    r = json.load(open(f"{w}/size-{size}/report.json"))
    g = r["gan"]
    print(f"| {size} | GAN outputs | | | {g['leaking']} / {g['identities']} | {g['members_leaking']} / {g['members']} | | |")
    if size == "512":
        for s in r["split"]:
            print(f"| (any) | split activations | {s['split']} | {s['defense']} | {s['exposed']} / {g['identities']} | | "
                  f"{s['psnr']:.1f} | {s['accuracy']:.3f} |")
print("\nThe split rows do not depend on the GAN (same classifier, same photos); they are shown once.")
print("\nReproduce: `experiments/e4_compare.sh`.")
PY
