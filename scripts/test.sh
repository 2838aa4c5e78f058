#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install dependencies, build, ctest;
# then the sanitized build's suite and a short bounded fuzzing run (scripts/test-sanitized.sh;
# THOR_SANITIZED=0 skips that part).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" --timeout 900
cd ..
[ "${THOR_SANITIZED:-1}" = 0 ] || bash scripts/test-sanitized.sh
