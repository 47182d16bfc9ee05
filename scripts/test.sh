#!/usr/bin/env bash
# README command 2: install dependencies, build, run the whole test suite through ctest, then the
# libFuzzer targets (clang, ASan + UBSan; tests/fuzz/run.sh, FUZZ_SECONDS each, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
(cd "${REWIND_BUILD_DIR:-build}" && ctest --output-on-failure -j "$(nproc)" --timeout 900)
bash tests/fuzz/run.sh
