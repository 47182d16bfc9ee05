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
)
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
