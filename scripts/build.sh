#!/usr/bin/env bash
# Configures and builds thor in ./build (Release). Extra arguments go to `cmake --build`,
# e.g. `scripts/build.sh --target thor`.
set -euo pipefail
cd "$(dirname "$0")/.."
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=Release ${THOR_CMAKE_ARGS:-}
fi
cmake --build build -j "$(nproc)" "$@"
