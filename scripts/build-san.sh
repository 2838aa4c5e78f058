#!/usr/bin/env bash
# Configures and builds the sanitized tree ./build-san with clang: thor_lib, thor, the test
# suite and the fuzz targets instrumented with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DTHOR_SANITIZE=ON -DTHOR_FUZZ=ON), -O1 with line tables for readable reports. Arguments:
# the targets to build (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build-san/CMakeCache.txt ]; then
  CC=clang CXX=clang++ cmake -S . -B build-san -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" -DTHOR_SANITIZE=ON -DTHOR_FUZZ=ON >&2
fi
if [ $# -gt 0 ]; then
  cmake --build build-san -j "$(nproc)" --target "$@" >&2
else
  cmake --build build-san -j "$(nproc)" >&2
fi
