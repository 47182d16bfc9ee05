#!/usr/bin/env bash
# README command 1: install dependencies, build, and run rewind's main job on the embedded default
# (no user data needed): `rewind audit` with no arguments audits 128 synthetic identities against
# the shipped demo GAN (trained on 64 of them) and writes out/demo/audit/report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
OUT="${REWIND_DEMO_OUT:-out/demo}"
./build/rewind audit --out "$OUT/audit"
echo
echo "demo done: open $OUT/audit/report.html (summary, then the identities the GAN reproduces)"
echo "both directions on the same people: ./build/rewind compare --out $OUT/compare"
