#!/usr/bin/env bash
# Installs every build/run dependency of thor from Debian 12 packages.
# Idempotent; needs root (or sudo). Nothing is downloaded from anywhere else.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PKGS=(
  build-essential cmake ninja-build
  libtorch-dev libgloo-dev openmpi-bin
  libopenblas0-openmp
  libsentencepiece-dev sentencepiece
  libgtest-dev libgmock-dev
  libcli11-dev nlohmann-json3-dev zlib1g-dev
  pkg-config libcpp-httplib-dev
  python3-numpy
  chromium
  clang libclang-rt-14-dev
  libsword-utils sword-text-web sword-text-sparv
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "[install] all dependencies present" >&2
