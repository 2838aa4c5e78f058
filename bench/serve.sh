#!/usr/bin/env bash
# thor serve under load on loopback (docs/SERVING.md): sentences/s and p50 / p99 latency at
# 1 / 8 / 32 / 128 concurrent clients (one sentence per request) against `thor translate`
# on the same sentences; continuous batching (the default) and static batches
# (--static-batching, a second server measured in the same rounds); batching off; a THOR model (--expert-select sentence) against the
# dense one; RSS over REQUESTS requests (default 100,000; greedy decoding there) and after
# MALFORMED malformed requests (default 10,000; REQUESTS=0 skips this part; THROUGHPUT=0
# runs it alone). Every answer is checked against thor translate's output. The throughput
# cases run ROUNDS times (default 3, 1 client once) on a warm server, `thor translate` again
# in every round beside them; serve-summary.jsonl has each case's median round.
#   bash bench/serve.sh DENSE.pt THOR.pt INPUT OUT_DIR
# INPUT: one sentence per line (e.g. Multi30k test_2016_flickr in the models' source
# language). Run it on an otherwise idle machine.
set -euo pipefail
dense=${1:?usage: serve.sh DENSE.pt THOR.pt INPUT OUT_DIR}
thor_model=${2:?}
input=${3:?}
out=${4:?}
requests=${REQUESTS:-100000}
malformed=${MALFORMED:-10000}
rounds=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
# NO_BUILD=1: the binaries already in build/ as they are
if [ "${NO_BUILD:-0}" != 1 ]; then
  cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTHOR_BUILD_BENCH=ON > /dev/null
  cmake --build "$root/build" --target thor thor_spm_shim serve_load > /dev/null
fi
thor=$root/build/thor
load=$root/build/serve_load
mkdir -p "$out"
beam=(--beam 5)
results=$out/serve.jsonl
: > "$results"

# thor translate's output (the expected answers) and its throughput, as the CLI reports it
cli() {  # name model extra...
  local name=$1 model=$2; shift 2
  "$thor" translate --model "$model" "${beam[@]}" "$@" --input "$input" > "$out/$name.expected" 2> "$out/$name.cli.log"
  local sps
  sps=$(grep -o '[0-9.]* sentences/s' "$out/$name.cli.log" | tail -1 | cut -d' ' -f1)
  echo "{\"case\":\"cli\",\"model\":\"$name\",\"sentences_per_s\":$sps}" | tee -a "$results"
}

server_pid=
start_server() {  # model extra... (the extra options replace --beam 5 when they give one)
  local model=$1; shift
  local b=("${beam[@]}")
  [[ " $* " == *" --beam "* ]] && b=()
  "$thor" serve --model "$model" "${b[@]}" --port 0 --no-access-log --max-queue 100000 "$@" 2> "$out/server.log" &
  server_pid=$!
  port=
  for _ in $(seq 600); do
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$out/server.log" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/ready" > /dev/null && return 0
    sleep 0.2
  done
  echo "serve.sh: the server did not get ready; see $out/server.log" >&2
  exit 1
}
stop_server() { kill -TERM "$server_pid"; wait "$server_pid"; }
# a second server beside the first (the one not loaded idles): start it, and swap which is
# the current one (server_pid, port) with swap_server
start_second() {
  local first_pid=$server_pid first_port=$port
  cp "$out/server.log" "$out/server1.log"
  start_server "$@"
  second_pid=$server_pid second_port=$port server_pid=$first_pid port=$first_port
}
swap_server() {
  local p=$server_pid q=$port
  server_pid=$second_pid port=$second_port second_pid=$p second_port=$q
}
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }

run_load() {  # case model-name extra-load-args... (model "-": answers not checked)
  local name=$1 model=$2; shift 2
  local line check=()
  [ "$model" = - ] || check=(--expected "$out/$model.expected")
  local rc=0
  line=$("$load" --port "$port" --input "$input" "${check[@]}" "$@") || rc=$?
  # recorded, and the script goes on, when some answer was an error or a mismatch (the
  # first few are on stderr); it exits 1 at the end
  echo "{\"case\":\"$name\",\"model\":\"$model\",${line#\{}" | tee -a "$results"
  [ "$rc" = 0 ] || { echo "serve.sh: $name: errors or mismatches (above)" >&2; failed=1; }
}
failed=0

# THROUGHPUT=0: only the memory and malformed-traffic part
if [ "${THROUGHPUT:-1}" != 0 ]; then
cli dense "$dense"
cli thor "$thor_model" --expert-select sentence

start_server "$dense"
start_second "$dense" --static-batching
run_load "batching-c1" dense --clients 1
for r in $(seq "$rounds"); do
  [ "$r" = 1 ] || cli dense "$dense"  # the CLI again each round, beside the servers (which idle meanwhile)
  for c in 8 32 128; do run_load "batching-c$c" dense --clients "$c"; done
  # as LibreTranslate clients often send: a list of 8 texts per request
  run_load "batching-c32-x8" dense --clients 32 --per-request 8
  swap_server
  for c in 8 32 128; do run_load "static-batching-c$c" dense --clients "$c"; done
  swap_server
done
stop_server
swap_server
stop_server
start_server "$dense" --no-batching
run_load "no-batching-c32" dense --clients 32
stop_server
start_server "$thor_model" --expert-select sentence
# a THOR model's sentence-level draws come from the batch's generator: under dynamic batching
# they are other valid draws than thor translate's, so only the throughput is compared
for r in $(seq "$rounds"); do run_load "thor-sentence-c32" - --clients 32; done
stop_server
# each case's median round (by sentences/s)
python3 - "$results" > "$out/serve-summary.jsonl" <<'PY'
import collections, json, sys
cases = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    cases[(r["case"], r.get("model"))].append(r)
for rs in cases.values():
    rs.sort(key=lambda r: r.get("sentences_per_s", 0))
    print(json.dumps(dict(rs[len(rs) // 2], rounds=len(rs))))
PY
cat "$out/serve-summary.jsonl" >&2
fi
[ "$requests" -gt 0 ] || exit "$failed"

# memory over many requests (greedy, short outputs: the count is what matters), then
# malformed traffic, on one server
start_server "$dense" --beam 1 --max-len-b 10
repeat=$(( (requests + $(wc -l < "$input") - 1) / $(wc -l < "$input") ))
rss_start=$(rss_mb)
( while kill -0 "$server_pid" 2> /dev/null; do echo "$(date +%s) $(rss_mb)"; sleep 5; done ) > "$out/rss.txt" 2> /dev/null &
"$thor" translate --model "$dense" --beam 1 --max-len-b 10 --input "$input" > "$out/dense-greedy.expected" 2> /dev/null
run_load "memory-c32" dense-greedy --clients 32 --repeat "$repeat"
rss_end=$(rss_mb)
mal=$("$load" --port "$port" --malformed "$malformed" --clients 32 --target de)
rss_after_malformed=$(rss_mb)
alive=$(kill -0 "$server_pid" && echo true || echo false)
echo "{\"case\":\"memory\",\"rss_mb_start\":$rss_start,\"rss_mb_end\":$rss_end,\"rss_mb_after_malformed\":$rss_after_malformed,\"alive\":$alive,\"malformed\":${mal}}" | tee -a "$results"
grep -c '"/translate",code="500"' <(curl -s "http://127.0.0.1:$port/metrics") > /dev/null && echo "serve.sh: a 500 answer" >&2
stop_server
echo "serve.sh: results in $results, RSS samples in $out/rss.txt" >&2
exit "$failed"
