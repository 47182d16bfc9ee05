#!/usr/bin/env bash
# Issues #3/#4: does a rewind-trained GAN on 64 synthetic identities x 8 images memorise them?
#   GAN: `rewind train gan` dcgan32 (width 16) on identities 0..63 x 8 images at 32 px, STEPS steps
#        (checkpointed; a longer run resumes a shorter one, e.g. the shipped demo GAN's 6000 steps).
#   Recovery (Webster et al. 2019): `rewind membership` on image 0 of each of the 64 training
#        identities (members) and image 0 of 64 new identities (non-members): median recovery error of
#        each and the gap, AUC, and identity-nn / recon-identity with the shipped embedder.
#   Samples vs training faces: `rewind audit` of the 128 identities with 1000 reference identities
#        (never trained on) setting the FAR-1e-3 verdict threshold; top.png shows, for the top
#        identities, the training image | the closest generated sample | the reconstruction.
# Writes experiments/results/memorisation.md and experiments/results/memorisation-*.png.
# usage: [STEPS=16000] [WIDTH=16] [SAMPLES=10000] [FROM=out/demo-gan] experiments/memorisation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
R=${REWIND:-build/rewind}
STEPS=${STEPS:-16000}; WIDTH=${WIDTH:-16}; SAMPLES=${SAMPLES:-10000}
W=${OUT:-out/memorisation}
EMB=data-tools/demo/embedder.pt
mkdir -p "$W"
t0=$(date +%s)
[ -f "$W/faces/manifest.csv" ] || "$R" data synth-faces --out "$W/faces" --identities 128 --per-identity 8 --size 32 -q
awk -F, 'NR==1 || substr($2,3)+0 < 64' "$W/faces/manifest.csv" > "$W/faces/train.csv"
awk -F, 'NR==1 || (substr($2,3)+0 < 64 && $1 ~ /\/0\.png$/)' "$W/faces/manifest.csv" > "$W/faces/members.csv"
awk -F, 'NR==1 || (substr($2,3)+0 >= 64 && $1 ~ /\/0\.png$/)' "$W/faces/manifest.csv" > "$W/faces/nonmembers.csv"
awk -F, 'NR==1 || $1 ~ /\/0\.png$/' "$W/faces/manifest.csv" > "$W/faces/audit.csv"
[ -f "$W/reference/manifest.csv" ] || "$R" data synth-faces --out "$W/reference" --identities 1000 --per-identity 1 \
    --first-identity 300000 --size 32 --no-contact-sheet -q
# start from an earlier run of the same recipe when given (FROM holds g.pt.ckpt of dcgan32 width WIDTH)
if [ -n "${FROM:-}" ] && [ ! -f "$W/g.pt.ckpt" ] && [ -f "$FROM/g.pt.ckpt" ]; then
  cp "$FROM/g.pt.ckpt" "$W/g.pt.ckpt"
fi
"$R" train gan --data "$W/faces/train.csv" --out "$W/g.pt" --arch dcgan32 --width "$WIDTH" --steps "$STEPS" \
    --sample-every 1000 --resume -q
echo "gan: $(( $(date +%s) - t0 )) s"
rm -rf "$W/mia" "$W/audit"
"$R" membership --generator "$W/g.pt" --members "$W/faces/members.csv" --nonmembers "$W/faces/nonmembers.csv" \
    --embedder "$EMB" --attacks recovery,identity-nn,recon-identity --samples "$SAMPLES" --out "$W/mia" -q
"$R" audit --generator "$W/g.pt" --dataset "$W/faces/audit.csv" --embedder "$EMB" --reference "$W/reference/manifest.csv" \
    --far 1e-3 --samples "$SAMPLES" --top 16 --out "$W/audit" -q
echo "total: $(( $(date +%s) - t0 )) s"
cp "$W/g-samples.png" experiments/results/memorisation-samples.png
cp "$W/audit/top.png" experiments/results/memorisation-top.png
python3 - "$W" "$STEPS" "$WIDTH" "$SAMPLES" <<'PY' | tee experiments/results/memorisation.md
import csv, json, sys
w, steps, width, samples = sys.argv[1:]
m = json.load(open(f"{w}/mia/report.json"))["metrics"]["image"]
print("# Memorisation: a rewind-trained GAN on 64 synthetic identities x 8 images\n")
print(f"dcgan32, width {width}, {steps} steps (batch 64) on identities 0..63 x 8 images at 32 px. Members: image 0 of "
      "each of the 64 training identities; non-members: image 0 of identities 64..127 (never trained on). Recovery: "
      f"`rewind membership` defaults (latent recovery, 2 restarts x 200 Adam steps); identity-nn over {samples} samples "
      "with the shipped embedder.\n")
print("| attack | median member | median non-member | MRE-gap | AUC [95% CI] | TPR@FPR 1e-2 | KS p |")
print("|---|---|---|---|---|---|---|")
for att, v in m.items():
    auc = v["auc"]
    mm, mn = v.get("median_error_members", float("nan")), v.get("median_error_nonmembers", float("nan"))
    gap = f"{v['mre_gap']:.3f}" if "mre_gap" in v else ""
    f4 = lambda x: "" if x != x else f"{x:.4g}"
    print(f"| {att} | {f4(mm)} | {f4(mn)} | {gap} | {auc[0]:.3f} [{auc[1]:.3f}, {auc[2]:.3f}] | "
          f"{v['tpr_at_fpr']['0.01'][0]:.3f} | {v['ks_pvalue']:.2g} |")
rows = list(csv.DictReader(open(f"{w}/audit/report.csv")))
mem = sum(1 for r in rows if int(r["identity"][2:]) < 64 and r["verdict"] == "leaks")
non = sum(1 for r in rows if int(r["identity"][2:]) >= 64 and r["verdict"] == "leaks")
s = json.load(open(f"{w}/audit/report.json"))["summary"]
print(f"\n`rewind audit` at FAR 1e-3 (threshold {s['threshold']:.4f}: {s['threshold_method']}): "
      f"**{mem} of 64 training identities** have a generated sample above the threshold, against **{non} of 64** "
      "identities never trained on.\n")
print("Samples (fixed latents): `memorisation-samples.png`. Top identities, each as training image | closest generated "
      "sample | reconstruction (two per row): `memorisation-top.png`.\n")
print("Reproduce: `experiments/memorisation.sh` (STEPS, WIDTH, SAMPLES, FROM in its header).")
PY
