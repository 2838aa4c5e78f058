#!/usr/bin/env bash
# Kill drill (issue 15, item 3): `thor train --resume` killed with SIGKILL at random instants
# KILLS times (during updates, checkpoint writes and validations), restarted each time; then
# it finishes, and its parameters must be bit-identical to an uninterrupted run's at the same
# update (CPU, 1 thread, 1 worker); THOR E=2 transformer_tiny by default. After every kill the newest checkpoint must be readable
# (`thor info --model` checks format, checksum and contents). Reports drills run, drills
# recovered, and updates lost per drill (those logged before the kill but not in the
# checkpoint resumed from; at most one --save-interval-updates, 5).
#   bash bench/kill_drill.sh [KILLS] [OUT_DIR]      (defaults: 50, runs/kill-drill)
# DELAY_MIN / DELAY_MAX: the range of seconds before each kill (3-12). The corpus is
# generated here (no external data). SIGNAL=TERM (or INT) sends that instead: each stop must
# then finish its update, save it and exit 0 (lost: 0); a stop that exits otherwise (before
# 2026-12-07: "free(): invalid size", a handler's frame written into the heap by oneDNN's
# JIT gemm, about one stop in 50) is counted as failed.
set -euo pipefail
kills=${1:-50}
signal=${SIGNAL:-KILL}
# seconds from a start to its kill, uniform (start-up takes ~1-2 s of them)
delay_min=${DELAY_MIN:-3} delay_max=${DELAY_MAX:-12}
out=${2:-runs/kill-drill}
root=$(cd "$(dirname "$0")/.." && pwd)
thor=${THOR_BIN:-$root/build/thor}
[ -x "$thor" ] || bash "$root/scripts/build.sh" --target thor thor_spm_shim
rm -rf "$out" && mkdir -p "$out/raw"
# a toy language pair: target = source words prefixed and suffixed, adjacent pairs swapped
awk -v n=3000 -v seed=7 -v pref="$out/raw/train" 'BEGIN {
  split("red blue dog cat runs sleeps big small house tree man woman eats sees green old young car street park", w, " ")
  srand(seed)
  for (i = 0; i < n; i++) {
    len = 3 + int(rand() * 6); s = ""; t = ""
    for (k = 1; k <= len; k++) id[k] = 1 + int(rand() * 20)
    for (k = 1; k + 1 <= len; k += 2) { x = id[k]; o[k] = id[k + 1]; o[k + 1] = x }
    if (len % 2) o[len] = id[len]
    for (k = 1; k <= len; k++) { s = s (k > 1 ? " " : "") w[id[k]]; t = t (k > 1 ? " " : "") "x" w[o[k]] "o" }
    print s "." > (pref ".src"); print t "." > (pref ".tgt")
  }}'
head -n 40 "$out/raw/train.src" > "$out/raw/valid.src"
head -n 40 "$out/raw/train.tgt" > "$out/raw/valid.tgt"
"$thor" prepare -s src -t tgt --trainpref "$out/raw/train" --validpref "$out/raw/valid" --destdir "$out/data" \
  --vocab-size 100 2> "$out/prepare.log"
# THOR E=2 transformer_tiny (ARCH_FLAGS to change it, e.g. a smaller model for a quicker drill)
arch=(${ARCH_FLAGS:---arch transformer_tiny})
args=(--threads 1 train "$out/data" "${arch[@]}" --share-all-embeddings --num-experts 2 --router thor --dropout 0.3 --max-tokens 400
      --save-interval-updates 5 --validate-interval-updates 7 --eval-beam 2 --eval-max-sentences 20
      --workers 1 --log-interval 1 --no-progress)
logged_max() { { grep -o '"update":[0-9]*' "$1/train_log.jsonl" 2> /dev/null || true; } | cut -d: -f2 | sort -n | tail -1; }
ck_updates() { "$thor" info --model "$1/checkpoint_last.pt" 2> /dev/null | awk '/^updates:/ {print $2}'; }
report="$out/report.md"
recovered=0 unreadable=0 lost_total=0 lost_max=0 during_write=0 failed_stops=0
printf "| drill | killed after (s) | exit code | last logged update | resumed from | lost | a write in progress |\n|---|---|---|---|---|---|---|\n" > "$out/drills.md"
RANDOM=12345
for i in $(seq 1 "$kills"); do
  "$thor" "${args[@]}" --max-update 1000000 --resume --save-dir "$out/drill" 2>> "$out/drill.log" &
  pid=$!
  delay=$(awk -v r=$RANDOM -v lo="$delay_min" -v hi="$delay_max" 'BEGIN {printf "%.2f", lo + (hi - lo) * r / 32767}')
  sleep "$delay"
  writing=no
  ls "$out/drill"/*.tmp > /dev/null 2>&1 && writing=yes
  kill -s "$signal" "$pid" 2> /dev/null || true
  rc=0; wait "$pid" 2> /dev/null || rc=$?
  [ "$signal" != KILL ] && [ "$rc" -ne 0 ] && failed_stops=$((failed_stops + 1))
  [ "$writing" = yes ] && during_write=$((during_write + 1))
  logged=$(logged_max "$out/drill"); logged=${logged:-0}
  if [ -e "$out/drill/checkpoint_last.pt" ]; then
    if upd=$(ck_updates "$out/drill") && [ -n "$upd" ]; then
      recovered=$((recovered + 1))
      lost=$((logged > upd ? logged - upd : 0))
      lost_total=$((lost_total + lost)); [ "$lost" -gt "$lost_max" ] && lost_max=$lost
    else
      unreadable=$((unreadable + 1)); upd=unreadable; lost=?
    fi
  else
    upd=none; lost=$logged; recovered=$((recovered + 1))  # killed before the first save: nothing to lose but those updates
  fi
  printf "| %d | %s | %s | %s | %s | %s | %s |\n" "$i" "$delay" "$rc" "$logged" "$upd" "$lost" "$writing" >> "$out/drills.md"
done
final=$(( $(ck_updates "$out/drill" || echo 0) + 12 ))
"$thor" "${args[@]}" --max-update "$final" --resume --save-dir "$out/drill" 2>> "$out/drill.log"
"$thor" "${args[@]}" --max-update "$final" --save-dir "$out/straight" 2> "$out/straight.log"
d1=$("$thor" info --model "$out/drill/checkpoint_last.pt" | awk '/digest/ {print $3}')
d2=$("$thor" info --model "$out/straight/checkpoint_last.pt" | awk '/digest/ {print $3}')
same=no; [ "$d1" = "$d2" ] && same=yes
{
  echo "Kill drill: $kills SIG$signal at random instants ($delay_min-$delay_max s after each start) of THOR E=2 training (${arch[*]})"
  echo "(--save-interval-updates 5, --validate-interval-updates 7), each followed by --resume."
  echo
  echo "| drills | recovered (latest checkpoint readable) | unreadable | killed during a write | stops not exiting 0 | updates lost: mean | max | final update | resumed = uninterrupted (parameter digest) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf "| %d | %d | %d | %d | %d | %s | %d | %d | %s (%s vs %s) |\n" "$kills" "$recovered" "$unreadable" "$during_write" "$failed_stops" \
    "$(awk -v a=$lost_total -v b=$kills 'BEGIN {printf "%.1f", a / b}')" "$lost_max" "$final" "$same" "$d1" "$d2"
  echo
  cat "$out/drills.md"
} > "$report"
head -n 6 "$report"
[ "$same" = yes ] && [ "$unreadable" -eq 0 ] && [ "$failed_stops" -eq 0 ]
