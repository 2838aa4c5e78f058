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
# KEEP (e.g. docs/converged/runs): the finished runs kept in the repository without their
# checkpoints (converged_eval.sh keeps them; experiments/converged_keep.sh); they are restored
# into OUT_DIR and not trained again, so a study goes on from a machine that lost OUT_DIR.
# VOCAB: the joint BPE vocabulary (default 8000).
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
  --testpref "$data/test_2016_flickr" --destdir "$out/data" --vocab-size "${VOCAB:-8000}" 2> "$out/prepare.log"
source "$root/experiments/converged_recipe.sh"
source "$root/experiments/converged_keep.sh"
restore_kept
for s in $seeds; do
  target=0
  while [ "$target" -lt "$max_update" ]; do
    target=$(( target + chunk > max_update ? max_update : target + chunk ))
    for sys in "${systems[@]}"; do
      dir="$out/$sys-s$s"
      # done: the run has reached this study's MAX_UPDATE (a later call with a larger one goes on)
      [ "$(sed -n 's/^update //p' "$dir/done" 2> /dev/null)" -ge "$max_update" ] 2> /dev/null && continue
      if [ -e "$dir/kept" ]; then
        echo "converged: $sys seed $s is kept in ${KEEP:-KEEP} without its checkpoints and cannot go on to update $max_update; remove ${KEEP:-KEEP}/$sys-s$s to train it again" >&2
        exit 1
      fi
      extra=$(flags "$sys")
      echo "[converged] $(date +%T) $sys seed $s to update $target" >&2
      # shellcheck disable=SC2086
      "$thor" train "$out/data" "${common[@]}" $extra --max-update "$target" --seed "$s" \
        --save-dir "$dir" --resume 2>> "$dir.log"
      [ "$target" -lt "$max_update" ] || echo "update $max_update" > "$dir/done"
    done
  done
done
echo "[converged] all runs done" >&2
