#!/usr/bin/env bash
# #16 item 4: Adam against L-BFGS (Webster et al. 2019 recover latents with L-BFGS), with and without
# GAN-Leaks' latent prior, as the recovery attack of `rewind membership` on the demo GAN: members are
# image 0 of synth-faces identities 0..63 (training images), non-members image 0 of identities 64..127.
# Each row: AUC with its 95% bootstrap interval, median member / non-member error, wall time.
# Writes out/optimizer/ and prints a markdown table (experiments/results/optimizer-membership.md).
# usage: bash experiments/optimizer_membership.sh [path/to/rewind]
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-build/rewind}
W=${W:-out/optimizer}
F=$W/faces
mkdir -p "$W"
[ -f "$F/manifest.csv" ] || "$R" data synth-faces --out "$F" --identities 128 --per-identity 1 --size 32 -q >/dev/null
awk -F, 'NR==1 || substr($2,3)+0 < 64' "$F/manifest.csv" > "$F/members.csv"
awk -F, 'NR==1 || substr($2,3)+0 >= 64' "$F/manifest.csv" > "$F/nonmembers.csv"
echo "| optimiser | steps x restarts | loss | AUC [95% CI] | median error member / non-member | wall s |"
echo "|---|---|---|---|---|---|"
run() {  # name optimiser steps lr loss
  local out="$W/$1"
  [ -f "$out/report.json" ] || "$R" membership --generator data-tools/demo/generator.pt --members "$F/members.csv" \
      --nonmembers "$F/nonmembers.csv" --attacks recovery --restarts 2 --steps "$3" --optimizer "$2" --lr "$4" \
      --recovery-loss "$5" --bootstrap 500 --out "$out" -q >/dev/null
  /usr/bin/python3 - "$out" "$2" "$3" "$5" <<'PY'
import json, sys
from datetime import datetime
r = json.load(open(sys.argv[1] + "/report.json"))
run = json.load(open(sys.argv[1] + "/run.json"))
wall = (datetime.fromisoformat(run["finished_utc"].rstrip("Z")) - datetime.fromisoformat(run["started_utc"].rstrip("Z"))).total_seconds()
m = r["metrics"]["image"]["recovery"]
a = m["auc"]  # [value, lo, hi]
print(f"| {sys.argv[2]} | {sys.argv[3]} x 2 | {sys.argv[4]} | {a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}] | "
      f"{m['median_error_members']:.4f} / {m['median_error_nonmembers']:.4f} | {wall:.0f} |")
PY
}
run adam-200 adam 200 0.05 mse=1
run adam-200-prior adam 200 0.05 mse=1,prior=0.001
run lbfgs-20 lbfgs 20 1 mse=1
run lbfgs-50 lbfgs 50 1 mse=1
run lbfgs-50-prior lbfgs 50 1 mse=1,prior=0.001
