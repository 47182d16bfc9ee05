#!/usr/bin/env bash
# README command 1: install dependencies, build, and run rewind's main job on the embedded default
# data (no user data needed). Output goes to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
OUT="${REWIND_DEMO_OUT:-out/demo}"
./build/rewind data synth-faces --out "$OUT/faces" --identities 64 --per-identity 8 --size 64
echo
echo "demo done: open $OUT/faces/contact-sheet.png (one row per synthetic identity)"
