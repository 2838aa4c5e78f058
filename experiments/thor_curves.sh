#!/usr/bin/env bash
# Why THOR trails at a short budget: valid-BLEU curves of dense, random routing (one pass, no
# consistency), THOR E=2 with alpha 1 and 5, THOR E=4 and Switch E=4 over a longer run.
#   experiments/thor_curves.sh DATA_DIR [OUT_DIR]      (MAX_UPDATE default 1800, 6 validations;
#   SYSTEMS picks a subset of 'dense random2 thor2-a1 thor2-a5 thor4-a1 switch4')
# Valid set only (the first 400 sentences, beam 4): no test-set decision is taken here.
# Output: OUT_DIR/curves.tsv (system, update, valid BLEU, valid nll, training seconds).
set -euo pipefail
data=${1:?usage: thor_curves.sh DATA_DIR [OUT_DIR]}
out=${2:-runs/thor-curves}
export MAX_UPDATE=${MAX_UPDATE:-1800} VALIDATIONS=${VALIDATIONS:-6}
source "$(dirname "$0")/common.sh"

systems=(${SYSTEMS:-dense random2 thor2-a1 thor2-a5 thor4-a1 switch4})
for sys in "${systems[@]}"; do
  case $sys in
    dense) spawn train dense 1 ;;
    random2) spawn train random2 1 --num-experts 2 --router random ;;
    thor[0-9]-a*) spawn train "$sys" 1 --num-experts "${sys:4:1}" --router thor --consistency-alpha "${sys#*-a}" ;;
    switch[0-9]) spawn train "$sys" 1 --num-experts "${sys:6:1}" --router switch ;;
    *) echo "SYSTEMS: unknown system '$sys' (dense, random2, thorE-aALPHA, switchE)" >&2; exit 1 ;;
  esac
done
barrier

printf "system\tupdate\tvalid_bleu\tvalid_nll\telapsed_s\n" > "$out/curves.tsv.tmp"
for sys in "${systems[@]}"; do
  grep '"valid_bleu"' "$out/$sys-s1/train_log.jsonl" | sed 's/.*"elapsed_s":\([0-9.]*\).*"update":\([0-9]*\),"valid_bleu":\([0-9.]*\).*"valid_nll":\([0-9.]*\).*/\2 \3 \4 \1/' \
    | awk -v s="$sys" '{printf "%s\t%d\t%.2f\t%.3f\t%.0f\n", s, $1, $2, $3, $4}' >> "$out/curves.tsv.tmp"
done
mv "$out/curves.tsv.tmp" "$out/curves.tsv"
cat "$out/curves.tsv"
