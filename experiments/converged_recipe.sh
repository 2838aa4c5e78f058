# Sourced by converged.sh and converged_pace.sh: the study's recipe (the training flags every
# run shares) and `flags SYSTEM`, a system's name turned into its model flags. Expects
# $warmup, $precision and $interval to be set.
# MAX_TOKENS (default 4096) and MODEL_FLAGS (default none: transformer_tiny as it is) exist
# for the scripts' own test, which runs the study end to end on a toy model in seconds.
# shellcheck disable=SC2206
common=(--arch transformer_tiny --share-all-embeddings --dropout 0.3 --lr 1e-3 --warmup-updates "$warmup"
        --weight-decay 1e-4 --max-tokens "${MAX_TOKENS:-4096}" --precision "$precision"
        --validate-interval-updates "$interval" --save-interval-updates "$interval"
        --eval-beam 4 --eval-max-sentences 400 --no-progress --device auto ${MODEL_FLAGS:-})
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
