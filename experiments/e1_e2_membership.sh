#!/usr/bin/env bash
# E1 (latent recovery vs training-set size; Webster et al. 2019, GAN-Leaks 2020) and
# E2 (identity membership; Webster et al. 2021) in one command.
# For each training-set size S, a GAN is trained by rewind on S images, then `rewind membership`
# scores up to TARGETS member images (training images) against as many non-member images:
#   synthetic faces: S/4 identities x 4 images (non-members: other identities), attacks recovery,
#                    identity-nn (E2, with the demo embedder) and recon-identity;
#   Fashion-MNIST:   S training images (non-members: other images), attack recovery.
# E2 at FAR 1e-3 (synthetic faces): `rewind audit` over the member and non-member identities, its
# verdict threshold set on 1000 reference identities nobody trained on; the table gives the fraction
# of member and of non-member identities whose closest generated sample passes it.
# Writes experiments/results/e1-e2-membership.md (+ per-run folders under out/e1e2/).
# usage: experiments/e1_e2_membership.sh [--sizes "64 256 1024 4096"] [--gan-steps 3000]
#        [--targets 128] [--steps 200] [--restarts 2] [--datasets "synth fmnist"]
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
SIZES="64 256 1024 4096"; GAN_STEPS=3000; TARGETS=128; STEPS=200; RESTARTS=2; DATASETS="synth fmnist"
EMB=data-tools/demo/embedder.pt
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) SIZES="$2"; shift 2;; --gan-steps) GAN_STEPS="$2"; shift 2;; --targets) TARGETS="$2"; shift 2;;
    --steps) STEPS="$2"; shift 2;; --restarts) RESTARTS="$2"; shift 2;; --datasets) DATASETS="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
W=out/e1e2
mkdir -p "$W"
for ds in $DATASETS; do
  for S in $SIZES; do
    R="$W/$ds-$S"
    mkdir -p "$R"
    if [ "$ds" = synth ]; then
      IDS=$((S / 4))
      [ -f "$R/faces/manifest.csv" ] || $REWIND data synth-faces --out "$R/faces" --identities $((IDS + TARGETS)) \
          --per-identity 4 --size 32 -q >/dev/null
      awk -F, -v n="$IDS" 'NR==1 || substr($2,3)+0 < n' "$R/faces/manifest.csv" > "$R/faces/train.csv"
      # members: image 0 of up to TARGETS member identities; non-members: image 0 of TARGETS others
      awk -F, -v n="$IDS" -v t="$TARGETS" 'NR==1 || (substr($2,3)+0 < n && substr($2,3)+0 < t && $1 ~ /\/0\.png$/)' \
          "$R/faces/manifest.csv" > "$R/faces/members.csv"
      awk -F, -v n="$IDS" 'NR==1 || (substr($2,3)+0 >= n && $1 ~ /\/0\.png$/)' "$R/faces/manifest.csv" > "$R/faces/nonmembers.csv"
      SET="$R/faces"
      ARCH=(--arch dcgan32 --width 16 --channels 3)
      ATT=(--embedder "$EMB" --attacks recovery,identity-nn,recon-identity --samples 1000)
    else
      [ -f "$W/fmnist/manifest.csv" ] || $REWIND data fashion-mnist --out "$W/fmnist" --limit 8192 -q >/dev/null
      M="$W/fmnist/manifest.csv"
      SET="$W/fmnist/sets-$S"
      mkdir -p "$SET"
      # same folder depth as the manifest, so its relative paths still resolve
      awk -v s="$S" 'NR==1 || NR <= s + 1' "$M" | sed 's|^\([^p]\)|../\1|' > "$SET/train.csv"
      awk -v t="$TARGETS" 'NR==1 || NR <= t + 1' "$M" | sed 's|^\([^p]\)|../\1|' > "$SET/members.csv"
      awk -v s="$S" -v t="$TARGETS" 'NR==1 || (NR > s + 1 && NR <= s + t + 1)' "$M" | sed 's|^\([^p]\)|../\1|' > "$SET/nonmembers.csv"
      ARCH=(--arch dcgan28 --width 16 --channels 1)
      ATT=(--attacks recovery)
    fi
    [ -f "$R/g.pt" ] || $REWIND train gan --data "$SET/train.csv" --out "$R/g.pt" "${ARCH[@]}" --steps "$GAN_STEPS" --resume -q
    [ -f "$R/mia/report.json" ] || $REWIND membership --generator "$R/g.pt" --members "$SET/members.csv" \
        --nonmembers "$SET/nonmembers.csv" "${ATT[@]}" --steps "$STEPS" --restarts "$RESTARTS" --out "$R/mia" -q
    if [ "$ds" = synth ]; then  # E2 at FAR 1e-3: verdicts against 1000 reference (never trained on) identities
      [ -f "$W/reference/manifest.csv" ] || $REWIND data synth-faces --out "$W/reference" --identities 1000 \
          --per-identity 1 --first-identity 300000 --size 32 --no-contact-sheet -q >/dev/null
      { cat "$SET/members.csv"; tail -n +2 "$SET/nonmembers.csv"; } > "$SET/audit.csv"
      [ -f "$R/audit/report.json" ] || $REWIND audit --generator "$R/g.pt" --dataset "$SET/audit.csv" --embedder "$EMB" \
          --reference "$W/reference/manifest.csv" --far 1e-3 --samples 1000 --steps 1 --restarts 1 --out "$R/audit" -q
    fi
  done
done
python3 - "$W" "$SIZES" "$DATASETS" "$GAN_STEPS" "$TARGETS" "$STEPS" "$RESTARTS" <<'PY' | tee experiments/results/e1-e2-membership.md
import json, sys, os
w, sizes, datasets, gsteps, targets, steps, restarts = sys.argv[1:]
print("# E1 / E2: membership vs training-set size\n")
print(f"GANs trained by `rewind train gan` ({gsteps} steps, width 16); `rewind membership` on up to {targets} member and "
      f"{targets} non-member images ({restarts} restarts x {steps} Adam steps; identity-nn over 1000 samples with the demo "
      "embedder). Image-level metrics, 95% bootstrap intervals.\n")
print("| data | training images | attack | AUC [95% CI] | TPR@FPR 1e-2 | MRE-gap | KS p |")
print("|---|---|---|---|---|---|---|")
for ds in datasets.split():
    for s in sizes.split():
        f = f"{w}/{ds}-{s}/mia/report.json"
        if not os.path.exists(f):
            continue
        m = json.load(open(f))["metrics"]["image"]
        for att, v in m.items():
            auc = v["auc"]; t = v["tpr_at_fpr"]["0.01"]
            gap = f"{v['mre_gap']:.3f}" if "mre_gap" in v else ""
            print(f"| {ds} | {s} | {att} | {auc[0]:.3f} [{auc[1]:.3f}, {auc[2]:.3f}] | {t[0]:.3f} | {gap} | {v['ks_pvalue']:.2g} |")
print("\n## E2 at FAR 1e-3: identities whose closest generated sample passes the verdict threshold\n")
print("`rewind audit` verdicts (threshold: at most 1 of 1000 reference identities, never trained on, has a sample above it; "
      "the same 1000 samples as identity-nn).\n")
print("| training images | member identities leaking | non-member identities leaking | threshold |")
print("|---|---|---|---|")
import csv
for s in sizes.split():
    f = f"{w}/synth-{s}/audit/report.csv"
    if not os.path.exists(f):
        continue
    ids = int(s) // 4
    mem = [0, 0]; non = [0, 0]; thr = ""
    for r in csv.DictReader(open(f)):
        k = mem if int(r["identity"][2:]) < ids else non
        k[0] += r["verdict"] == "leaks"; k[1] += 1; thr = r["threshold"]
    print(f"| {s} | {mem[0]}/{mem[1]} ({mem[0] / max(mem[1], 1):.2f}) | {non[0]}/{non[1]} ({non[0] / max(non[1], 1):.2f}) | {thr} |")
print("\nAnchors: Webster et al. 2019 report disjoint member / non-member recovery-error distributions at 128 "
      "training images (CelebA) and overlap growing with size; GAN-Leaks (Chen et al. 2020) reports white-box AUC near 1.0 "
      "at 64-256 images falling to ~0.5-0.6 at tens of thousands. Webster et al. 2021 find member identities reproduced by "
      "samples at FAR 1e-3 well above non-members for small training sets.")
print("\nReproduce: `experiments/e1_e2_membership.sh` (options in its header).")
PY
