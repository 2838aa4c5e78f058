#!/usr/bin/env bash
# Bytes each rank sends per update, as the run's communicator counts them (ring all-reduce:
# 2 (W-1)/W of the payload; all-to-all: the rows sent to other ranks): transformer_tiny on
# Multi30k de-en, 2 ranks, --max-tokens 4096, for dense data parallel, Switch E=4 expert
# parallel and THOR E=4 sharded. Writes OUT/bytes.md.
#   bash bench/dist_bytes.sh [DATA_DIR] [OUT_DIR] [UPDATES]
set -euo pipefail
default_out=dist-bytes
source "$(dirname "$0")/dist_setup.sh"
updates=${3:-15}
common=(train "$out/data" --arch transformer_tiny --share-all-embeddings --max-tokens 4096 --max-update "$updates"
        --log-interval 5 --validate-interval-updates 100000 --no-eval-bleu --eval-max-sentences 1 --precision bf16
        --no-progress --workers 1 --nproc-per-node 2)
declare -A flags=([dense-dp]="" [switch4-ep]="--num-experts 4 --router switch --expert-parallel"
                  [thor4-ep]="--num-experts 4 --router thor --expert-parallel" [thor4-dp]="--num-experts 4 --router thor")
echo "| run (2 ranks) | all-reduce MB / update / rank | all-to-all MB / update / rank |" > "$out/bytes.md"
echo "|---|---|---|" >> "$out/bytes.md"
for run in dense-dp thor4-dp switch4-ep thor4-ep; do
  rm -rf "$out/$run"
  # shellcheck disable=SC2086
  "$thor" "${common[@]}" ${flags[$run]} --save-dir "$out/$run" 2> "$out/$run.log"
  python3 - "$out/$run/train_log.jsonl" "$run" >> "$out/bytes.md" <<'PY'
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1]) if '"gnorm"' in l]
ar = sum(l.get("sent_mb_allreduce", 0) for l in ls) / len(ls)
a2a = sum(l.get("sent_mb_alltoall", 0) for l in ls) / len(ls)
print(f"| {sys.argv[2]} | {ar:.2f} | {a2a:.2f} |")
PY
done
cat "$out/bytes.md"
