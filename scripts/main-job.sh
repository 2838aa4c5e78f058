#!/usr/bin/env bash
# The README's main job on a fresh Debian 12 machine: install, build, get real parallel
# text (English-Spanish Bible verses from Debian's SWORD packages), prepare it, train a
# transformer_tiny for a bounded time, translate the held-out test set and print BLEU.
#   THOR_TRAIN_MINUTES  training budget in minutes (default 10)
#   THOR_WORK           working directory (default ./work-data)
# Re-running resumes training from the last checkpoint instead of starting over.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${THOR_TRAIN_MINUTES:-10}
work=${THOR_WORK:-work-data}

bash scripts/install-deps.sh
bash scripts/build.sh --target thor thor_spm_shim
thor=build/thor
"$thor" info

[ -s "$work/bible/test.es" ] || bash scripts/get-bible-corpus.sh "$work/bible"
[ -s "$work/data/meta.json" ] || "$thor" prepare -s en -t es \
  --trainpref "$work/bible/train" --validpref "$work/bible/valid" --testpref "$work/bible/test" \
  --destdir "$work/data" --vocab-size 8000 --max-len 200

# --precision auto: bf16 products where the CPU multiplies bf16 natively (AVX512-BF16 / AMX:
# ~2x the updates in the same minutes), float32 elsewhere (thor info shows which)
"$thor" train "$work/data" --arch transformer_tiny --share-all-embeddings --precision auto \
  --dropout 0.1 --lr 1e-3 --warmup-updates 200 --weight-decay 1e-4 --max-tokens 4096 \
  --max-time "$minutes" --validate-interval-updates 300 --eval-max-sentences 200 \
  --save-dir "$work/checkpoints" --resume

"$thor" translate --model "$work/checkpoints/checkpoint_best.pt" --beam 5 --precision auto \
  --input "$work/bible/test.en" > "$work/test.hyp.es.tmp"
mv "$work/test.hyp.es.tmp" "$work/test.hyp.es"
echo "== held-out test set ($(wc -l < "$work/bible/test.en") verses), en->es =="
"$thor" score "$work/bible/test.es" -i "$work/test.hyp.es"
echo "== examples (source / reference / thor) =="
for n in 1 2 3; do
  line=$(( n * $(wc -l < "$work/bible/test.en") / 4 ))
  echo "  en:   $(sed -n "${line}p" "$work/bible/test.en")"
  echo "  es:   $(sed -n "${line}p" "$work/bible/test.es")"
  echo "  thor: $(sed -n "${line}p" "$work/test.hyp.es")"
  echo
done
