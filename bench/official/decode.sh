#!/usr/bin/env bash
# Decoding speed of fairseq-generate (fairseq at the commit the official THOR code needs)
# against `thor translate` on THIS machine, interleaved: a dense transformer_tiny trained
# 1,000 updates by each with the harness's recipe (same data, same SentencePiece pieces), all
# 1,000 sentences of test_2016_flickr de->en, beam 5 at batch 64 and batch 1. Writes
# OUT/decode.md and OUT/decode.json.
#
#   bash bench/official/decode.sh FAIRSEQ_DIR THOR_OFFICIAL_DIR [DATA_DIR] [OUT_DIR] [ROUNDS] [THOR_MODEL]
#
# Arguments and Python packages as for bench/official/run.sh (same OUT_DIR reuses its setup).
# THOR_MODEL: a thor checkpoint to decode with instead of training one here (e.g. the
# harness's OUT/models/transformer_tiny-dense/checkpoint_last.pt; it was prepared from the
# same data the same way). Training the fairseq model takes ~25 minutes, a thor one ~15.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
usage="bench/official/decode.sh FAIRSEQ_DIR THOR_OFFICIAL_DIR [DATA_DIR] [OUT_DIR] [ROUNDS] [THOR_MODEL]"
thor_model=${6:-}
# before setup.sh builds anything
[ -z "$thor_model" ] || [ -f "$thor_model" ] || { echo "bench/official: THOR_MODEL $thor_model: no such file" >&2; exit 1; }
source "$root/bench/official/setup.sh" "$@"

recipe=(--share-all-embeddings --dropout 0.3 --lr 1e-3 --warmup-updates 200 --weight-decay 1e-4 --max-tokens 4096
        --max-update 1000 --log-interval 50)
models="$out/models"
mkdir -p "$models"
if [ ! -f "$models/fairseq-dense/done" ]; then  # fairseq resumes from checkpoint_last.pt by itself
  echo "[bench/official] training the fairseq model (1,000 updates)" >&2
  fairseq_cli fairseq_cli.train "$out/data-bin" --task translation --arch transformer_iwslt_de_en "${tiny[@]}" "${recipe[@]}" \
    --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.0 --lr-scheduler inverse_sqrt \
    --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --num-workers 0 --seed 1 --cpu \
    --disable-validation --no-epoch-checkpoints --save-dir "$models/fairseq-dense" > "$out/logs/model-fairseq.log" 2>&1 ||
    fail "fairseq training failed: $out/logs/model-fairseq.log"
  touch "$models/fairseq-dense/done"
fi
if [ -z "$thor_model" ]; then
  thor_model="$models/thor-dense/checkpoint_last.pt"
  if [ ! -f "$models/thor-dense/done" ]; then
    echo "[bench/official] training the thor model (1,000 updates)" >&2
    "$thor" train "$prepared" --arch transformer_tiny "${recipe[@]}" --no-progress --resume --save-dir "$models/thor-dense" \
      > "$out/logs/model-thor.log" 2>&1 || fail "thor training failed: $out/logs/model-thor.log"
    touch "$models/thor-dense/done"
  fi
fi
[ -f "$out/shortlist.txt" ] || "$thor" shortlist "$prepared" --out "$out/shortlist.txt" > "$out/logs/shortlist.log" 2>&1 ||
  fail "thor shortlist failed: $out/logs/shortlist.log"

dec="$out/decode"
mkdir -p "$dec"
for r in $(seq 1 "$rounds"); do
  for batch in 64 1; do
    echo "[bench/official] decoding round $r, batch $batch" >&2
    tag="beam5-batch$batch-r$r"
    fairseq_cli fairseq_cli.generate "$out/data-bin" --path "$models/fairseq-dense/checkpoint_last.pt" --gen-subset test \
      --beam 5 --batch-size "$batch" --remove-bpe sentencepiece --cpu > "$dec/fairseq-$tag.out" 2> "$dec/fairseq-$tag.log" ||
      fail "fairseq-generate failed: $dec/fairseq-$tag.log"
    # batch 1 as the harness times it: one worker, every thread on the sentence
    workers=(); [ "$batch" = 1 ] && workers=(--workers 1)
    for variant in float32 int8-shortlist; do
      v=(--precision float32); [ "$variant" = int8-shortlist ] && v=(--precision int8 --shortlist "$out/shortlist.txt")
      "$thor" translate --model "$thor_model" --input "$prepared/test.raw.de" --beam 5 --batch-size "$batch" "${workers[@]}" \
        "${v[@]}" > "$dec/thor-$variant-$tag.out" 2> "$dec/thor-$variant-$tag.log" ||
        fail "thor translate failed: $dec/thor-$variant-$tag.log"
    done
  done
done
for f in "$dec"/thor-*-r1.out; do
  "$thor" score "$prepared/test.raw.en" --input "$f" > "$f.score" 2>/dev/null || fail "thor score failed on $f"
done
# fairseq's hypotheses (H- lines, in corpus order) scored by the same scorer
for f in "$dec"/fairseq-*-r1.out; do
  grep '^H-' "$f" | sed 's/^H-//' | sort -n -k1,1 | cut -f3 > "$f.hyp"
  "$thor" score "$prepared/test.raw.en" --input "$f.hyp" > "$f.score" 2>/dev/null || fail "thor score failed on $f.hyp"
done
$py "$here/summarize.py" decode "$out" "$rounds"
