#!/usr/bin/env bash
# Issue 17, item 2, end to end: a dense fairseq transformer and an official THOR model
# (thor_transformer_iwslt_de_en, E=2), both transformer_tiny-sized and trained UPDATES
# updates (default 1,000) by fairseq with the harness's recipe, converted by
# tools/convert_fairseq.py and read by `thor import`; then test_2016_flickr de->en decoded
# at beam 5 by fairseq-generate and by `thor translate` on the imported models. THOR: one
# fixed expert on both sides (the official code redraws experts at random at inference;
# THOR_FIXED_EXPERT=K makes its draws return K, see shims/fairseq_compat.py), and the
# imported THOR model also at --expert-select sentence against the imported dense model for
# the "dense cost" check. Reports identical translations, the largest score difference,
# BLEU of both and decoding wall time of both. Writes OUT/import.md and OUT/import.json.
#
#   bash bench/official/import.sh FAIRSEQ_DIR THOR_OFFICIAL_DIR [DATA_DIR] [OUT_DIR] [UPDATES]
# THOR_UPDATES: the official THOR model's own budget (default UPDATES; it costs two passes).
#
# Arguments and Python packages as for bench/official/run.sh (same OUT_DIR reuses its setup).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
usage="bench/official/import.sh FAIRSEQ_DIR THOR_OFFICIAL_DIR [DATA_DIR] [OUT_DIR] [UPDATES]"
updates=${5:-1000}
thor_updates=${THOR_UPDATES:-$updates}
source "$root/bench/official/setup.sh" "${@:1:4}"

imp="$out/import"
mkdir -p "$imp"
recipe=(--share-all-embeddings --dropout 0.3 --lr 1e-3 --warmup-updates 200 --weight-decay 1e-4 --max-tokens 4096
        --log-interval 50)
official_task=(--task translation_thor --user-dir "$official/thor" --inference-level 1)
official_flags=("${official_task[@]}" --arch thor_transformer_iwslt_de_en --num-experts 2)
train() {  # NAME UPDATES ARGS...: a fairseq model (resumes from its checkpoint_last.pt by itself)
  local name=$1 n=$2; shift 2
  local dir="$imp/$name-u$n"
  [ -f "$dir/done" ] && return 0
  echo "[bench/official] training $name ($n updates)" >&2
  fairseq_cli fairseq_cli.train "$out/data-bin" "$@" "${tiny[@]}" "${recipe[@]}" --max-update "$n" \
    --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.0 --lr-scheduler inverse_sqrt \
    --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --num-workers 0 --seed 1 --cpu \
    --disable-validation --no-epoch-checkpoints --save-dir "$dir" > "$dir.log" 2>&1 || fail "fairseq training failed: $dir.log"
  touch "$dir/done"
}
train fairseq-dense "$updates" --task translation --arch transformer_iwslt_de_en
train official-thor "$thor_updates" "${official_flags[@]}" --consistency-alpha 5.0
dense_dir=$imp/fairseq-dense-u$updates
thor_dir=$imp/official-thor-u$thor_updates

convert() {  # DIR: fairseq checkpoint DIR/checkpoint_last.pt -> thor checkpoint DIR.thor.pt
  local dir=$1
  [ -f "$dir.thor.pt" ] && return 0
  $py "$root/tools/convert_fairseq.py" "$dir/checkpoint_last.pt" --dict "$out/data-bin/dict.de.txt" \
    --spm "$prepared/spm.model" --source-lang de --target-lang en --out "$dir.converted" > "$dir.convert.log" 2>&1 ||
    fail "convert_fairseq.py failed: $dir.convert.log"
  "$thor" import --from "$dir.converted" --out "$dir.thor.pt" >> "$dir.convert.log" 2>&1 || fail "thor import failed: $dir.convert.log"
}
convert "$dense_dir"
convert "$thor_dir"

timed() {  # LOG CMD...: runs CMD, stdout to LOG.out, stderr to LOG.log, wall seconds to LOG.time
  local log=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$log.out" 2> "$log.log" || fail "failed: $* (see $log.log)"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' > "$log.time"
}
dec="$imp/decode-u$updates-$thor_updates"
mkdir -p "$dec"
generate() {  # NAME CKPT ARGS... (kept from an earlier run of this script when done)
  local name=$1 ckpt=$2; shift 2
  [ -s "$dec/fairseq-$name.hyp" ] && return 0
  timed "$dec/fairseq-$name" fairseq_cli fairseq_cli.generate "$out/data-bin" --path "$ckpt" --gen-subset test \
    --beam 5 --batch-size 64 --remove-bpe sentencepiece --cpu "$@"
  # hypotheses in corpus order; fairseq prints scores in base 2
  grep '^H-' "$dec/fairseq-$name.out" | sed 's/^H-//' | sort -n -k1,1 > "$dec/fairseq-$name.h"
  cut -f3 "$dec/fairseq-$name.h" > "$dec/fairseq-$name.hyp"
}
# fairseq-generate's length limit (200 tokens whatever the source: fairseq applies
# --max-len-a to the longest source of a batch, thor to each sentence's own)
limits=(--max-len-a 0 --max-len-b 200)
translate() {  # NAME MODEL ARGS...: one timed decode with --nbest 5 (the beam is 5 either way);
  # the best hypothesis of each sentence (its first line) is the translation, its score compared
  local name=$1 model=$2; shift 2
  set -- "${limits[@]}" "$@"
  timed "$dec/thor-$name" "$thor" translate --model "$model" --input "$prepared/test.raw.de" --beam 5 --batch-size 64 \
    --nbest 5 "$@"
  mv "$dec/thor-$name.out" "$dec/thor-$name.nbest"
  awk -F' [|][|][|] ' 'NR == 1 || $1 != last { print $2; last = $1 }' "$dec/thor-$name.nbest" > "$dec/thor-$name.out"
}
generate dense "$dense_dir/checkpoint_last.pt"
THOR_FIXED_EXPERT=0 generate thor-expert0 "$thor_dir/checkpoint_last.pt" "${official_task[@]}"
THOR_FIXED_EXPERT=1 generate thor-expert1 "$thor_dir/checkpoint_last.pt" "${official_task[@]}"
translate dense "$dense_dir.thor.pt"
translate thor-expert0 "$thor_dir.thor.pt" --expert-select fixed:0
translate thor-expert1 "$thor_dir.thor.pt" --expert-select fixed:1
translate thor-sentence "$thor_dir.thor.pt" --expert-select sentence
translate dense-again "$dense_dir.thor.pt"  # the dense time twice: drift shows

for f in "$dec"/*.hyp "$dec"/thor-*.out; do
  "$thor" score "$prepared/test.raw.en" --input "$f" > "$f.score" 2> /dev/null || fail "thor score failed on $f"
done
$py - "$dec" "$updates" "$thor_updates" "$out" <<'PY'
import json, math, re, sys
dec, updates, thor_updates, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def lines(p): return open(p, encoding="utf-8").read().split("\n")[:-1]
def bleu(p): return float(re.search(r"BLEU[^=]*= *([0-9.]+)", open(p).read()).group(1))
def wall(p): return float(open(p).read())
def best_scores(p):  # thor --nbest: 'i ||| text ||| score', the first per i is the best
    best = {}
    for l in lines(p):
        i, text, score = l.split(" ||| ")
        best.setdefault(int(i), (text, float(score)))
    return [best[i] for i in sorted(best)]
rows = []
for name, thor_name in (("dense", "dense"), ("thor-expert0", "thor-expert0"), ("thor-expert1", "thor-expert1")):
    fs = [l.split("\t") for l in lines(f"{dec}/fairseq-{name}.h")]
    th = lines(f"{dec}/thor-{thor_name}.out")
    nb = best_scores(f"{dec}/thor-{thor_name}.nbest")
    same = sum(a[2] == b for a, b in zip(fs, th))
    # fairseq prints the length-normalised score in base 2; thor in base e
    diffs = [abs(float(a[1]) * math.log(2) - s) for a, (t, s) in zip(fs, nb) if a[2] == t]
    rows.append({"model": name, "sentences": len(th), "identical": same,
                 "max_score_diff": max(diffs) if diffs else None,
                 "bleu_fairseq": bleu(f"{dec}/fairseq-{name}.hyp.score"), "bleu_thor": bleu(f"{dec}/thor-{thor_name}.out.score"),
                 "seconds_fairseq": wall(f"{dec}/fairseq-{name}.time"), "seconds_thor": wall(f"{dec}/thor-{thor_name}.time")})
cost = {"thor_sentence_s": wall(f"{dec}/thor-thor-sentence.time"),
        "dense_s": [wall(f"{dec}/thor-dense.time"), wall(f"{dec}/thor-dense-again.time")],
        "bleu_thor_sentence": bleu(f"{dec}/thor-thor-sentence.out.score")}
json.dump({"updates": updates, "thor_updates": thor_updates, "rows": rows, "thor_at_dense_cost": cost}, open(f"{out}/import.json", "w"), indent=1)
md = [f"Models trained by fairseq: dense {updates} updates, official THOR {thor_updates}; "
      "test_2016_flickr de->en, beam 5, batch 64.", "",
      "| model | identical / sentences | max score diff | BLEU fairseq | BLEU thor | s fairseq | s thor |",
      "|---|---|---|---|---|---|---|"]
for r in rows:
    md.append(f"| {r['model']} | {r['identical']} / {r['sentences']} | {r['max_score_diff']:.2g} | {r['bleu_fairseq']:.2f} | "
              f"{r['bleu_thor']:.2f} | {r['seconds_fairseq']:.1f} | {r['seconds_thor']:.1f} |")
md += ["", f"Imported THOR at --expert-select sentence: {cost['thor_sentence_s']:.1f} s (BLEU {cost['bleu_thor_sentence']:.2f}); "
       f"imported dense: {cost['dense_s'][0]:.1f} s and {cost['dense_s'][1]:.1f} s."]
open(f"{out}/import.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
