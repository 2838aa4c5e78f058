#!/usr/bin/env bash
# Builds the benchmark harness and runs it: training throughput (dense / THOR E=2 /
# Switch E=4 at transformer_tiny and transformer_iwslt_de_en, Multi30k de-en, --max-tokens
# 4096), decoding speed (beam 1/5, batch 1/64 on test_2016_flickr), FLOP rate against the
# measured matmul peak, peak RSS. Writes OUT/bench.md and OUT/bench.json.
#   bash bench/run.sh [DATA_DIR] [OUT_DIR] [thor_bench options...]
# Run it on an otherwise idle machine; it takes about 15 minutes plus, the first time,
# training the two decoding models (--decode-train-updates, default 1000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=${1:-$root/../shared/data/multi30k}
out=${2:-$root/bench/results}
shift $(( $# > 2 ? 2 : $# ))
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTHOR_BUILD_BENCH=ON > /dev/null
cmake --build "$root/build" --target thor_bench thor thor_spm_shim
"$root/build/thor_bench" --data "$data" --out "$out" "$@"
