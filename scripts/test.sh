#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install dependencies, build, ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" --timeout 900
