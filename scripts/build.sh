#!/usr/bin/env bash
# Configures and builds rewind (Release) into build/. Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${REWIND_BUILD_DIR:-build}"
JOBS="${REWIND_JOBS:-$(nproc)}"
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ "$#" -gt 0 ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
