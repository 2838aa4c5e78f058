#!/usr/bin/env bash
# THOR vs dense vs Switch on Multi30k en->de with transformer_tiny (the issue-4 study).
#   experiments/thor_multi30k.sh DATA_DIR [OUT_DIR]
# DATA_DIR holds {train,valid,test_2016_flickr}.{en,de} (e.g. ../shared/data/multi30k).
# Every run trains for the same number of updates (MAX_UPDATE, default 600: about 15 minutes
# for the dense model on a 2-core AVX-512 CPU; WARMUP default 200) and records its training
# wall-clock time (the trainer's own clock, which a resumed run carries on); THOR's alpha is chosen on valid from {1, 5} with seed 1, then all
# systems run SEEDS seeds (default "1 2"). Test BLEU: best checkpoint by valid BLEU, beam 5;
# for THOR also each single expert, ensemble, merge, token- and sentence-level selection.
# Results: OUT_DIR/results.tsv and OUT_DIR/results.md. Runs on CPU or, unchanged, on a GPU.
set -euo pipefail
data=${1:?usage: thor_multi30k.sh DATA_DIR [OUT_DIR]}
out=${2:-runs/thor-multi30k}
root=$(cd "$(dirname "$0")/.." && pwd)
thor=${THOR_BIN:-$root/build/thor}  # THOR_BIN: a frozen copy, so rebuilding cannot disturb a long study
max_update=${MAX_UPDATE:-600}
warmup=${WARMUP:-200}
seeds=${SEEDS:-"1 2"}
mkdir -p "$out"
[ -x "$thor" ] || bash "$root/scripts/build.sh" --target thor thor_spm_shim

[ -s "$out/data/meta.json" ] || "$thor" prepare -s en -t de --trainpref "$data/train" \
  --validpref "$data/valid" --testpref "$data/test_2016_flickr" --destdir "$out/data" --vocab-size ${VOCAB:-8000}

common=(--arch transformer_tiny --share-all-embeddings --dropout 0.3 --lr 1e-3 --warmup-updates "$warmup"
        --weight-decay 1e-4 --max-tokens 4096 --max-update "$max_update"
        --validate-interval-updates $(( (max_update + 3) / 4 ))
        --eval-beam 4 --eval-max-sentences 400 --no-progress --device auto)

train() {  # name seed extra-args...
  local name=$1 seed=$2; shift 2
  local dir="$out/$name-s$seed"
  if [ ! -s "$dir/done" ]; then
    echo "[experiments] $(date +%T) training $name seed $seed" >&2
    "$thor" train "$out/data" "${common[@]}" --seed "$seed" --save-dir "$dir" --resume "$@" 2>> "$dir.log" || {
      echo "training $name seed $seed failed; see $dir.log" >&2; exit 1; }
    grep '"elapsed_s"' "$dir/train_log.jsonl" | tail -1 | sed 's/.*"elapsed_s":\([0-9.]*\).*/\1/' \
      | awk '{printf "%.0f\n", $1}' > "$dir/done"
  fi
}

bleu() {  # checkpoint extra-translate-args... -> BLEU on test
  "$thor" translate --model "$1" --beam 5 --input "$data/test_2016_flickr.en" "${@:2}" 2>/dev/null \
    | "$thor" score "$data/test_2016_flickr.de" | awk '/^BLEU = / {print $3}'
}

valid_bleu() { grep '"valid_bleu"' "$1/train_log.jsonl" | sed 's/.*"best":\([0-9.]*\).*/\1/' | tail -1; }

# dense first: with seed 1 of every system done early, an interrupted study is still useful
first_seed=${seeds%% *}
train dense "$first_seed"

# alpha on valid (first seed)
best_alpha=5; best=-1
for a in 1 5; do
  train "thor2-a$a" "$first_seed" --num-experts 2 --router thor --consistency-alpha "$a"
  v=$(valid_bleu "$out/thor2-a$a-s$first_seed")
  if awk "BEGIN{exit !($v > $best)}"; then best=$v; best_alpha=$a; fi
done
echo "[experiments] alpha chosen on valid: $best_alpha (valid BLEU $best)" >&2

printf "system\tseed\tupdates\twall_s\tvalid_bleu\ttest_bleu\textra\n" > "$out/results.tsv"
for s in $seeds; do
  train dense "$s"
  train switch4 "$s" --num-experts 4 --router switch
  train "thor2-a$best_alpha" "$s" --num-experts 2 --router thor --consistency-alpha "$best_alpha"
  train "thor4-a$best_alpha" "$s" --num-experts 4 --router thor --consistency-alpha "$best_alpha"
  for sys in dense switch4 "thor2-a$best_alpha" "thor4-a$best_alpha"; do
    dir="$out/$sys-s$s"
    ck="$dir/checkpoint_best.pt"
    extra=""
    main=$(bleu "$ck")
    if [[ $sys == thor* ]]; then
      e=${sys:4:1}
      for k in $(seq 0 $((e - 1))); do extra+="fixed:$k=$(bleu "$ck" --expert-select "fixed:$k") "; done
      for sel in token ensemble merge; do extra+="$sel=$(bleu "$ck" --expert-select $sel) "; done
    fi
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$sys" "$s" "$max_update" "$(cat "$dir/done")" \
      "$(valid_bleu "$dir")" "$main" "$extra" >> "$out/results.tsv"
  done
done

# mean and spread per system
awk -F'\t' 'NR > 1 { n[$1]++; s[$1] += $6; ss[$1] += $6 * $6; w[$1] += $4
                     if (!($1 in lo) || $6 < lo[$1]) lo[$1] = $6; if ($6 > hi[$1]) hi[$1] = $6 }
  END { print "| system | seeds | test BLEU mean | min-max | mean wall s |"; print "|---|---|---|---|---|"
        for (k in n) printf "| %s | %d | %.2f | %.2f-%.2f | %.0f |\n", k, n[k], s[k] / n[k], lo[k], hi[k], w[k] / n[k] }' \
  "$out/results.tsv" > "$out/results.md"
cat "$out/results.md"
