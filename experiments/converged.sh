#!/usr/bin/env bash
# Issue 14, item 4: the converged study, training part. Multi30k en->de transformer_tiny with
# the reference recipe's lr (1e-3 inverse-sqrt) and dropout (0.3), warm-up WARMUP (default the
# reference 4000), 4,096 tokens per update, run to MAX_UPDATE (default 8000) with a validation
# (loss, BLEU on 400 valid sentences, beam 4) and a kept checkpoint_N.pt every INTERVAL
# (default 250) updates. The schedule does not depend on MAX_UPDATE, so the study's budget
# is chosen afterwards from the dense curves (the update from which dense valid BLEU stops
# improving) and every system is evaluated at that same update from its own checkpoints
# (best valid checkpoint up to the budget; the average of the last checkpoints before it).
#   experiments/converged.sh DATA_DIR [OUT_DIR]
# SYSTEMS (default: dense thor2-a1 thor2-a5 switch4 random2 thor4-a1 thor4-a5), SEEDS ("1 2").
# A system may carry modifiers for item 6's hypotheses, e.g. thor2-a5-w1000-copy: -wN the
# consistency weight ramped up over N updates (--consistency-warmup), -copy every expert
# starting as a copy of the first (--expert-init copy), -ufK K batches per update
# (--update-freq; the paper's ~32k tokens: -uf8), -all experts in every layer
# (--expert-layers all), -logits the consistency on the logits (--consistency-on logits).
# -w, -copy and -logits need a binary newer than the study's frozen 797e168.
# The multilingual study (item 5): LANG_PAIRS=en-de,en-fr,en-cs SYSTEMS="dense switch4 thor4-a5".
# Every run resumes where it stopped (--resume). The runs advance round-robin in chunks of
# CHUNK updates (default 500): every system of a seed reaches update k x CHUNK before any goes
# further, so a study cut short still compares all systems at one update count; a resume is
# bit-identical to an uninterrupted run, so chunking changes no figure. Run it again to continue.
# PRECISION (default auto: bf16 where the CPU has native bf16 products, else float32).
# THOR_BIN: a frozen binary (rebuilding cannot disturb a long study). On a CUDA machine it
# runs unchanged (--device auto).
set -euo pipefail
data=${1:?usage: converged.sh DATA_DIR [OUT_DIR]}
out=${2:-runs/converged}
root=$(cd "$(dirname "$0")/.." && pwd)
thor=${THOR_BIN:-$root/build/thor}
max_update=${MAX_UPDATE:-8000}
interval=${INTERVAL:-250}
chunk=${CHUNK:-500}
warmup=${WARMUP:-4000}
precision=${PRECISION:-auto}
systems=(${SYSTEMS:-dense thor2-a1 thor2-a5 switch4 random2 thor4-a1 thor4-a5})
seeds=${SEEDS:-"1 2"}
mkdir -p "$out"
[ -x "$thor" ] || bash "$root/scripts/build.sh" --target thor thor_spm_shim
# LANG_PAIRS (default en-de): several (en-de,en-fr,en-cs) make the multilingual study of
# item 5: one joint dataset and model, the target tag before every source, validation per pair
pairs=${LANG_PAIRS:-en-de}
if [ "$pairs" = "${pairs%,*}" ]; then langs=(-s "${pairs%-*}" -t "${pairs#*-}"); else langs=(--lang-pairs "$pairs"); fi
[ -s "$out/data/meta.json" ] || "$thor" prepare "${langs[@]}" --trainpref "$data/train" --validpref "$data/valid" \
  --testpref "$data/test_2016_flickr" --destdir "$out/data" --vocab-size 8000 2> "$out/prepare.log"
common=(--arch transformer_tiny --share-all-embeddings --dropout 0.3 --lr 1e-3 --warmup-updates "$warmup"
        --weight-decay 1e-4 --max-tokens 4096 --precision "$precision"
        --validate-interval-updates "$interval" --save-interval-updates "$interval"
        --eval-beam 4 --eval-max-sentences 400 --no-progress --device auto)
flags() {  # system -> its model flags: BASE[-aALPHA][-MODIFIER...]
  local parts base out i=1
  IFS=- read -ra parts <<< "$1"
  base=${parts[0]}
  case $base in
    dense) out= ;;
    random[0-9]) out="--num-experts ${base:6} --router random" ;;
    thor[0-9])
      [[ ${parts[1]:-} == a* ]] || { echo "system '$1': THOR needs -aALPHA (thor2-a5)" >&2; return 1; }
      out="--num-experts ${base:4} --router thor --consistency-alpha ${parts[1]#a}"
      i=2 ;;
    switch[0-9]) out="--num-experts ${base:6} --router switch" ;;
    *) echo "unknown system '$1' (dense, randomE, thorE-aALPHA, switchE; modifiers -wN -copy -ufK -all -logits)" >&2; return 1 ;;
  esac
  for (( ; i < ${#parts[@]}; i++ )); do
    case ${parts[$i]} in
      w[0-9]*) out+=" --consistency-warmup ${parts[$i]#w}" ;;
      copy) out+=" --expert-init copy" ;;
      uf[0-9]*) out+=" --update-freq ${parts[$i]#uf}" ;;
      all) out+=" --expert-layers all" ;;
      logits) out+=" --consistency-on logits" ;;
      *) echo "system '$1': unknown modifier '${parts[$i]}' (-wN -copy -ufK -all -logits)" >&2; return 1 ;;
    esac
  done
  echo "$out"
}
for s in $seeds; do
  target=0
  while [ "$target" -lt "$max_update" ]; do
    target=$(( target + chunk > max_update ? max_update : target + chunk ))
    for sys in "${systems[@]}"; do
      dir="$out/$sys-s$s"
      [ -s "$dir/done" ] && continue
      extra=$(flags "$sys")
      echo "[converged] $(date +%T) $sys seed $s to update $target" >&2
      # shellcheck disable=SC2086
      "$thor" train "$out/data" "${common[@]}" $extra --max-update "$target" --seed "$s" \
        --save-dir "$dir" --resume 2>> "$dir.log"
      [ "$target" -lt "$max_update" ] || date +%s > "$dir/done"
    done
  done
done
echo "[converged] all runs done" >&2
