#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in ./build-san and runs each for
# SECONDS (default 60): fuzz_corpus (corpus reader/validator, meta.json, binary splits),
# fuzz_checkpoint (the checkpoint loader), fuzz_translate (translate's input path).
#   bash scripts/fuzz.sh [SECONDS]
# Seeds: fuzz/seeds/<target>/ (written by hand) plus files made here from a real prepared
# toy dataset and a real checkpoint. The corpus each run grows is kept in
# build-san/fuzz-corpus/<target>/ (a later run continues from it). A crash, sanitizer report
# or broken invariant stops that target, leaves its input in build-san/fuzz-findings/ and
# makes the script exit 1. Prints one line per target: executions, corpus size, crashes.
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/.."
root=$(pwd)
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (bash scripts/install-deps.sh installs it)" >&2; exit 1; }
bash scripts/build-san.sh fuzz_corpus fuzz_checkpoint fuzz_translate thor thor_spm_shim
b=$root/build-san
work=$b/fuzz-work
rm -rf "$work" && mkdir -p "$work" "$b/fuzz-findings"
# seeds from real files: a toy dataset and a one-update checkpoint of a tiny model
python3 - "$work" <<'PY'
import random, sys
w = sys.argv[1]
random.seed(3)
words = "a dog cat runs sleeps red blue big small house tree man woman child ball".split()
for split, n in (("train", 60), ("valid", 6)):
    with open(f"{w}/{split}.en", "w") as s, open(f"{w}/{split}.de", "w") as t:
        for _ in range(n):
            ws = random.choices(words, k=random.randint(2, 7))
            s.write(" ".join(ws) + ".\n")
            t.write(" ".join("x" + x + "o" for x in reversed(ws)) + ".\n")
PY
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1
"$b/thor" --threads 1 prepare -s en -t de --trainpref "$work/train" --validpref "$work/valid" \
  --destdir "$work/data" --vocab-size 60 2> "$work/prepare.log"
"$b/thor" --threads 1 train "$work/data" --encoder-embed-dim 16 --ffn-dim 32 --attention-heads 2 \
  --encoder-layers 2 --decoder-layers 2 --num-experts 2 --router thor --max-update 1 --no-eval-bleu \
  --no-progress --save-dir "$work/ck" 2> "$work/train.log"
mkdir -p "$work/seeds/fuzz_corpus" "$work/seeds/fuzz_checkpoint"
{ printf '\001'; cat "$work/data/meta.json"; } > "$work/seeds/fuzz_corpus/real_meta"
{ printf '\002'; cat "$work/data/valid.bin"; } > "$work/seeds/fuzz_corpus/real_valid_bin"
{ printf '\000'; cat "$work/ck/checkpoint_last.pt"; } > "$work/seeds/fuzz_checkpoint/real_file"
{ printf '\001'; tail -c +33 "$work/ck/checkpoint_last.pt"; } > "$work/seeds/fuzz_checkpoint/real_payload"

status=0
for t in fuzz_corpus fuzz_checkpoint fuzz_translate; do
  corpus=$b/fuzz-corpus/$t
  mkdir -p "$corpus"
  seeds=("$root/fuzz/seeds/$t")
  [ -d "$work/seeds/$t" ] && seeds+=("$work/seeds/$t")
  log=$work/$t.log
  set +e
  "$b/fuzz/$t" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -max_len=300000 -print_final_stats=1 \
    -artifact_prefix="$b/fuzz-findings/$t-" "$corpus" "${seeds[@]}" > "$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  units=$(ls "$corpus" | wc -l)
  if [ "$rc" -eq 0 ]; then
    echo "$t: ${execs:-0} executions in ${seconds} s, corpus $units inputs, 0 crashes"
  else
    status=1
    echo "$t: FAILED after ${execs:-?} executions (exit $rc); input in $b/fuzz-findings/, log $log:"
    grep -m1 -E 'ERROR: |runtime error|invariant broken|escaped|deadly signal' "$log" || tail -5 "$log"
  fi
done
exit $status
