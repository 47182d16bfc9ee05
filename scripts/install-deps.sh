#!/usr/bin/env bash
# Installs rewind's build and run dependencies from Debian's packages (Debian 12 "bookworm").
# Idempotent: packages already present are skipped by apt. Needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev
  libopenblas0-openmp
  libfaiss-dev
  libopencv-dev
  opencv-data
  libboost-program-options-dev
  libgtest-dev
  nlohmann-json3-dev
  zlib1g-dev
  dataset-fashion-mnist
  python3-torch
  clang libclang-rt-14-dev
  libopenmpi-dev openmpi-bin
  libdlib-dev libdlib-data
  # dlib's CMake config names these libraries' .so links; libdlib-dev does not pull their -dev packages
  libblas-dev liblapack-dev libpng-dev libjpeg-dev libsqlite3-dev
  # headless browser for the reports' browser test (tests/browser)
  chromium
)
# node + npm only to fetch face-api's weights (npm registry) into data-tools/face-api/node_modules
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[install-deps] installing: ${missing[*]}" >&2
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "[install-deps] all Debian packages present" >&2
fi

# The real face-identity network: dlib's ResNet as shipped (MIT) in the npm package
# @vladmandic/face-api. Only the weights package is installed (tfjs, needed only to regenerate the
# reference vectors, is a devDependency).
HERE="$(cd "$(dirname "$0")/.." && pwd)"
FACE_API="$HERE/data-tools/face-api"
if [ ! -f "$FACE_API/node_modules/@vladmandic/face-api/model/face_recognition_model.bin" ]; then
  echo "[install-deps] npm ci face-api weights into $FACE_API/node_modules" >&2
  (cd "$FACE_API" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >&2)
fi

# The reports' plotting library: Vega, Vega-Lite and vega-embed (BSD-3-Clause) from npm, pinned in
# data-tools/vega/package-lock.json; the build copies their browser builds next to the executable.
VEGA="$HERE/data-tools/vega"
if [ ! -f "$VEGA/node_modules/vega-embed/build/vega-embed.min.js" ]; then
  echo "[install-deps] npm ci Vega into $VEGA/node_modules" >&2
  (cd "$VEGA" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >&2)
fi
