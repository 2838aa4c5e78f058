#!/usr/bin/env bash
# Expert memory per rank falls as 1 / W: THOR E=32 transformer_iwslt_de_en trained a few
# updates in one process and on 2 ranks with --expert-parallel; reports each rank's resident
# memory at the last log line (steady state) and its peak (VmHWM, which also holds the
# start-up: a shard initialises the whole expert bank once and keeps its slice).
#   bash bench/expert_memory.sh [DATA_DIR] [OUT_DIR] [UPDATES]
set -euo pipefail
default_out=expert-memory
source "$(dirname "$0")/dist_setup.sh"
updates=${3:-6}
common=(train "$out/data" --arch transformer_iwslt_de_en --share-all-embeddings --num-experts 32 --router thor
        --max-tokens 2048 --max-update "$updates" --log-interval 2 --validate-interval-updates 100000 --no-eval-bleu
        --eval-max-sentences 1 --precision bf16 --no-progress --workers 1)
peak() {  # pid -> sample VmHWM until it exits, print the largest in MB
  local pid=$1 best=0 v
  while kill -0 "$pid" 2> /dev/null; do
    v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2> /dev/null || echo 0)
    [ -n "$v" ] && [ "$v" -gt "$best" ] && best=$v
    sleep 0.5
  done
  echo $((best / 1024))
}
rm -rf "$out/one" "$out/two"
"$thor" --threads 1 "${common[@]}" --save-dir "$out/one" 2> "$out/one.log" &
p1=$(peak $!)
wait
"$thor" "${common[@]}" --nproc-per-node 2 --expert-parallel --save-dir "$out/two" 2> "$out/two.log" &
launcher=$!
sleep 2
pids=$(pgrep -P "$launcher" | sort -n)
peaks=()
for p in $pids; do peak "$p" > "$out/peak.$p" & done
wait
for p in $pids; do peaks+=("$(cat "$out/peak.$p")"); rm -f "$out/peak.$p"; done
steady1=$(grep '"gnorm"' "$out/one/train_log.jsonl" | tail -1 | sed 's/.*"rss_mb":\([0-9.]*\).*/\1/')
steady2=$(grep '"gnorm"' "$out/two/train_log.jsonl" | tail -1 | sed 's/.*"rss_mb":\([0-9.]*\).*/\1/')
{
  echo "| setup | steady RSS per rank (MB, rank 0) | peak RSS per rank (MB) |"
  echo "|---|---|---|"
  printf "| 1 process | %.0f | %s |\n" "$steady1" "$p1"
  printf "| 2 ranks, --expert-parallel | %.0f | %s |\n" "$steady2" "${peaks[*]}"
} | tee "$out/memory.md"
