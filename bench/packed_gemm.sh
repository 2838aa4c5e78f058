#!/usr/bin/env bash
# The packed float32 products (src/thor/ops/packed_gemm.h) against oneDNN's sgemm in the
# same binary (THOR_PACKED_GEMM=0 turns the packed path off): `thor translate` sentences/s at
# several batch sizes, both variants interleaved ROUNDS times (default 3), medians, and
# whether the two outputs are the same bytes; then the products alone (build/gemm_shapes,
# one thread, transformer_tiny's shapes at 1-320 rows, weights in cache and evicted).
# Prints one JSON line per batch size, then one per shape.
#   bash bench/packed_gemm.sh MODEL.pt INPUT [BATCH_SIZES...]   (default 1 12 64 200)
# Needs build/thor and build/gemm_shapes (cmake -DTHOR_BUILD_BENCH=ON).
# Run it on an otherwise idle machine; the figures are this CPU's only.
set -euo pipefail
model=${1:?usage: packed_gemm.sh MODEL.pt INPUT [BATCH_SIZES...]}
input=${2:?}
shift 2
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 12 64 200)
rounds=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
thor=$root/build/thor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for bs in "${sizes[@]}"; do
  for r in $(seq "$rounds"); do
    for packed in 0 1; do
      THOR_PACKED_GEMM=$packed "$thor" translate --model "$model" --beam 5 --batch-size "$bs" --input "$input" \
        > "$tmp/out.$packed" 2> "$tmp/log"
      grep -o '[0-9.]* sentences/s' "$tmp/log" | tail -1 | cut -d' ' -f1 >> "$tmp/sps.$bs.$packed"
    done
  done
  same=$(cmp -s "$tmp/out.0" "$tmp/out.1" && echo true || echo false)
  python3 - "$bs" "$same" "$tmp/sps.$bs.0" "$tmp/sps.$bs.1" <<'PY'
import json, statistics, sys
bs, same, a, b = sys.argv[1:5]
onednn = [float(x) for x in open(a)]
packed = [float(x) for x in open(b)]
print(json.dumps({"batch_size": int(bs), "onednn_sentences_per_s": statistics.median(onednn),
                  "packed_sentences_per_s": statistics.median(packed),
                  "ratio": statistics.median(packed) / statistics.median(onednn),
                  "rounds": len(onednn), "same_output": same == "true"}))
PY
done
# the products alone: both paths, hot then cold
for cold in "" --cold; do
  THOR_PACKED_GEMM=0 "$root/build/gemm_shapes" $cold > "$tmp/g.0"
  "$root/build/gemm_shapes" $cold > "$tmp/g.1"
  python3 - "$tmp/g.0" "$tmp/g.1" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
for x, y in zip(a, b):
    print(json.dumps({"cold": x["cold"], "K": x["K"], "N": x["N"], "M": x["M"],
                      x["path"] + "_gflops": x["gflops"], y["path"] + "_gflops": y["gflops"],
                      "ratio": round(x["ms"] / y["ms"], 2)}))
PY
done
