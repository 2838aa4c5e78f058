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
# JOBS=N (default 1) runs up to N independent trainings / evaluations at once, each with
# nproc/N CPU threads: for a GPU (small models leave it mostly idle) or a many-core CPU.
set -euo pipefail
data=${1:?usage: thor_multi30k.sh DATA_DIR [OUT_DIR]}
out=${2:-runs/thor-multi30k}
seeds=${SEEDS:-"1 2"}
source "$(dirname "$0")/common.sh"

bleu() {  # checkpoint extra-translate-args... -> BLEU on test
  "$thor" "${threads[@]}" translate --model "$1" --beam 5 --input "$data/test_2016_flickr.en" "${@:2}" 2>/dev/null \
    | "$thor" score "$data/test_2016_flickr.de" | awk '/^BLEU = / {print $3}'
}


# dense first: with seed 1 of every system done early, an interrupted study is still useful
first_seed=${seeds%% *}
spawn train dense "$first_seed"

# alpha on valid (first seed)
for a in 1 5; do spawn train "thor2-a$a" "$first_seed" --num-experts 2 --router thor --consistency-alpha "$a"; done
barrier
best_alpha=5; best=-1
for a in 1 5; do
  v=$(valid_bleu "$out/thor2-a$a-s$first_seed")
  if awk "BEGIN{exit !($v > $best)}"; then best=$v; best_alpha=$a; fi
done
echo "[experiments] alpha chosen on valid: $best_alpha (valid BLEU $best)" >&2

systems=(dense switch4 "thor2-a$best_alpha" "thor4-a$best_alpha")
for s in $seeds; do
  spawn train dense "$s"
  spawn train switch4 "$s" --num-experts 4 --router switch
  spawn train "thor2-a$best_alpha" "$s" --num-experts 2 --router thor --consistency-alpha "$best_alpha"
  spawn train "thor4-a$best_alpha" "$s" --num-experts 4 --router thor --consistency-alpha "$best_alpha"
done
barrier

row() {  # system seed -> $out/system-sSEED.row: one results.tsv line
  local sys=$1 s=$2 dir="$out/$1-s$2" extra="" main e k sel
  main=$(bleu "$dir/checkpoint_best.pt")
  if [[ $sys == thor* ]]; then
    e=${sys:4:1}
    for k in $(seq 0 $((e - 1))); do extra+="fixed:$k=$(bleu "$dir/checkpoint_best.pt" --expert-select "fixed:$k") "; done
    for sel in token ensemble merge; do extra+="$sel=$(bleu "$dir/checkpoint_best.pt" --expert-select $sel) "; done
  fi
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$sys" "$s" "$max_update" "$(cat "$dir/done")" \
    "$(valid_bleu "$dir")" "$main" "$extra" > "$dir.row.tmp" && mv "$dir.row.tmp" "$dir.row"
}
for s in $seeds; do for sys in "${systems[@]}"; do spawn row "$sys" "$s"; done; done
barrier
printf "system\tseed\tupdates\twall_s\tvalid_bleu\ttest_bleu\textra\n" > "$out/results.tsv"
for s in $seeds; do for sys in "${systems[@]}"; do cat "$out/$sys-s$s.row" >> "$out/results.tsv"; done; done

# mean and spread per system
awk -F'\t' 'NR > 1 { n[$1]++; s[$1] += $6; ss[$1] += $6 * $6; w[$1] += $4
                     if (!($1 in lo) || $6 < lo[$1]) lo[$1] = $6; if ($6 > hi[$1]) hi[$1] = $6 }
  END { print "| system | seeds | test BLEU mean | min-max | mean wall s |"; print "|---|---|---|---|---|"
        for (k in n) printf "| %s | %d | %.2f | %.2f-%.2f | %.0f |\n", k, n[k], s[k] / n[k], lo[k], hi[k], w[k] / n[k] }' \
  "$out/results.tsv" > "$out/results.md"
cat "$out/results.md"
