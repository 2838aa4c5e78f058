#!/usr/bin/env bash
# Issue 14, item 4: the converged study's evaluation, from the runs experiments/converged.sh
# left in OUT_DIR. Every run is evaluated at the same update BUDGET (default: the largest
# update every run of SYSTEMS x SEEDS has reached, a multiple of INTERVAL) from its own
# checkpoints: the best valid-BLEU checkpoint_N.pt with N <= BUDGET, and the average of the
# last AVG (default 5) checkpoints up to BUDGET (thor average). Both translate Multi30k
# test_2016_flickr (beam 5; THOR: --expert-select sentence, the paper's sentence level).
# Multilingual runs (converged.sh with LANG_PAIRS): every pair with --target-lang, a table per
# pair and one of the mean over pairs.
# Writes OUT_DIR/eval/table.md (BLEU per system: every seed, mean and spread ('-' for one
# seed); paired bootstrap p-values of every THOR system against dense, Switch and random
# routing with as many experts (randomE for thorE), seed by seed)
# and OUT_DIR/eval/curves/*.svg (thor report: valid BLEU against updates, minutes, FLOPs), with
# the compute each run spent to the budget (FLOPs from its log; minutes at the pace
# OUT_DIR/pace.tsv holds when converged_pace.sh has measured it; `thor report` draws the
# minutes at that pace too; with a pace.tsv, THOR_BIN needs `report --seconds-per-update`, after 07c76c2).
#   experiments/converged_eval.sh DATA_DIR OUT_DIR
# Translations are cached (OUT_DIR/eval/hyp/): a rerun after more training re-translates only
# what a new budget changes. SYSTEMS / SEEDS as for converged.sh. With BUDGET given, a run
# that has not reached it is left out (with a line on stderr).
# KEEP (experiments/converged_keep.sh): runs kept there are restored into OUT_DIR first, and
# every finished run evaluated is kept there (its log, done mark and translations at the budget), so
# the tables can be made again, and the study continued, where OUT_DIR is gone.
set -euo pipefail
data=${1:?usage: converged_eval.sh DATA_DIR OUT_DIR}
out=${2:?usage: converged_eval.sh DATA_DIR OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
thor=${THOR_BIN:-$root/build/thor}
interval=${INTERVAL:-250}
avg_n=${AVG:-5}
systems=(${SYSTEMS:-dense thor2-a1 thor2-a5 switch4 random2 thor4-a1 thor4-a5})
seeds=(${SEEDS:-1 2})
ev=$out/eval
mkdir -p "$ev/hyp" "$ev/curves"
source "$root/experiments/converged_keep.sh"
restore_kept
# the language pairs of the prepared data (several for the multilingual study)
mapfile -t pairs < <(python3 -c 'import json,sys; print("\n".join(p["src"] + "-" + p["tgt"] for p in json.load(open(sys.argv[1]))["pairs"]))' "$out/data/meta.json")
multi=$([ ${#pairs[@]} -gt 1 ] && echo 1 || echo 0)

runs=()
reached=  # the least update any run has reached
for sys in "${systems[@]}"; do
  for s in "${seeds[@]}"; do
    d=$out/$sys-s$s
    [ -f "$d/train_log.jsonl" ] || continue
    u=$(last_update "$d")
    if [ -n "${BUDGET:-}" ] && [ "$u" -lt "$BUDGET" ]; then
      echo "[eval] $sys-s$s left out: at update $u, short of the budget $BUDGET" >&2
      continue
    fi
    runs+=("$sys-s$s")
    if [ -z "$reached" ] || [ "$u" -lt "$reached" ]; then reached=$u; fi
  done
done
[ ${#runs[@]} -gt 0 ] || { echo "converged_eval: no runs in $out${BUDGET:+ at update $BUDGET}" >&2; exit 1; }
budget=${BUDGET:-$reached}
budget=$(( budget / interval * interval ))
echo "[eval] ${#runs[@]} runs, budget $budget updates" >&2

# the best validation checkpoint up to the budget: from the log's valid lines
best_ckpt() {
  python3 - "$1/train_log.jsonl" "$budget" <<'PY'
import json, sys
best = None
for line in open(sys.argv[1]):
    j = json.loads(line)
    if "valid_bleu" in j and j["update"] <= int(sys.argv[2]) and (best is None or j["valid_bleu"] > best[1]):
        best = (j["update"], j["valid_bleu"])
print(best[0] if best else "")
PY
}
decode() {  # run checkpoint hyp-prefix: every pair's test source into hyp-prefix.{pair}.txt
  local run=$1 ckpt=$2 hyp=$3 sel=() p
  [[ $run == thor* || $run == random* ]] && sel=(--expert-select sentence)
  for p in "${pairs[@]}"; do
    local h=$hyp.$p.txt tgt=()
    [ "$multi" = 1 ] && tgt=(--target-lang "${p#*-}")
    [ -s "$h" ] && continue
    "$thor" translate --model "$ckpt" --beam 5 "${sel[@]}" "${tgt[@]}" --input "$data/test_2016_flickr.${p%-*}" \
      > "$h.tmp" 2> "$h.log" ||
      { echo "converged_eval: translating $p with $ckpt failed: $(tail -n 1 "$h.log")" >&2; rm -f "$h.tmp"; exit 1; }
    mv "$h.tmp" "$h"
  done
}
for run in "${runs[@]}"; do
  d=$out/$run
  b=$(best_ckpt "$d")
  [ -n "$b" ] || { echo "converged_eval: $run has no validation up to update $budget" >&2; exit 1; }
  for p in "${pairs[@]}"; do  # a kept run has no checkpoints to translate from
    for h in "$ev/hyp/$run.best$b.$p.txt" "$ev/hyp/$run.avg$budget.$p.txt"; do
      [ ! -e "$d/kept" ] || [ -s "$h" ] || { echo "converged_eval: $run is kept without its checkpoints and has no $(basename "$h") for update $budget (it was kept at update $(last_update "$d")); give that BUDGET" >&2; exit 1; }
    done
  done
  decode "$run" "$d/checkpoint_$b.pt" "$ev/hyp/$run.best$b"
  for p in "${pairs[@]}"; do ln -sf "$run.best$b.$p.txt" "$ev/hyp/$run.best.$p.txt"; done
  inputs=()
  for u in $(seq "$budget" "-$interval" 1 | head -n "$avg_n"); do
    [ -f "$d/checkpoint_$u.pt" ] && inputs+=("$d/checkpoint_$u.pt")
  done
  avg=$ev/hyp/$run.avg$budget.pt
  if [ ! -s "$ev/hyp/$run.avg$budget.${pairs[-1]}.txt" ] && [ ! -f "$avg" ]; then
    [ ${#inputs[@]} -gt 0 ] || { echo "converged_eval: $run has no checkpoint_N.pt for the last $avg_n validations up to update $budget in $d to average" >&2; exit 1; }
    "$thor" average --inputs "${inputs[@]}" --out "$avg" 2> "$avg.log" ||
      { echo "converged_eval: averaging $run's checkpoints failed: $(tail -n 1 "$avg.log")" >&2; exit 1; }
    rm -f "$avg.log"
  fi
  decode "$run" "$avg" "$ev/hyp/$run.avg$budget"
  rm -f "$avg"
  for p in "${pairs[@]}"; do ln -sf "$run.avg$budget.$p.txt" "$ev/hyp/$run.avg.$p.txt"; done
  keep_run "$run" "$b" "$budget"
done

# a run's system's pace measured apart (converged_pace.sh), empty when not measured
pace_of() { [ -s "$out/pace.tsv" ] && awk -F'\t' -v s="${1%-s*}" '$1 == s {print $2}' "$out/pace.tsv" || true; }
bleu() { "$thor" score "$data/test_2016_flickr.${2#*-}" -i "$1" | sed -n 's/^BLEU = \([0-9.]*\).*/\1/p'; }
pval() { "$thor" score "$data/test_2016_flickr.${3#*-}" -i "$1" -i "$2" | awk -F'\t' 'NR == 3 {print $5}'; }
{
  echo "Budget: update $budget (every run evaluated there); beam 5; BLEU on test_2016_flickr (1,000 sentences)."
  for p in "${pairs[@]}" mean; do
    [ "$p" = mean ] && [ "$multi" = 0 ] && continue
    echo
    echo "**${p}**"
    echo
    echo "| system | kind | $(printf 'seed %s | ' "${seeds[@]}")mean | spread (max - min) |"
    echo "|---|---|$(printf -- '---|%.0s' "${seeds[@]}")---|---|"
    for sys in "${systems[@]}"; do
      for kind in best avg; do
        vals=()
        for s in "${seeds[@]}"; do
          if [ "$p" = mean ]; then  # the mean over the language pairs
            v=$(for q in "${pairs[@]}"; do h=$ev/hyp/$sys-s$s.$kind.$q.txt; [ -e "$h" ] && bleu "$h" "$q"; done |
                awk '{s += $1; n++} END {if (n) printf "%.2f", s / n}')
            vals+=("${v:--}")
          else
            h=$ev/hyp/$sys-s$s.$kind.$p.txt
            if [ -e "$h" ]; then vals+=("$(bleu "$h" "$p")"); else vals+=("-"); fi
          fi
        done
        printf '| %s | %s | %s' "$sys" "$kind" "$(printf '%s | ' "${vals[@]}")"
        printf '%s\n' "${vals[@]}" | awk '$1 != "-" {s += $1; n++; if (n == 1 || $1 > mx) mx = $1; if (n == 1 || $1 < mn) mn = $1}
          END {if (n > 1) printf "%.2f | %.2f |\n", s / n, mx - mn; else if (n) printf "%.2f | - |\n", s; else print "- | - |"}'
      done
    done
  done
  echo
  echo "Paired bootstrap (1,000 samples, sacreBLEU's --paired-bs): p-value of each THOR system against"
  echo "dense, against Switch and against random routing with as many experts and no consistency"
  echo "(the paper's ablation), same seed, averaged-checkpoint translations."
  echo
  echo "| system | pair | seed | vs dense | vs switch4 | vs random (same E) |"
  echo "|---|---|---|---|---|---|"
  for sys in "${systems[@]}"; do
    [[ $sys == thor* ]] || continue
    for p in "${pairs[@]}"; do
      for s in "${seeds[@]}"; do
        h=$ev/hyp/$sys-s$s.avg.$p.txt
        [ -e "$h" ] || continue
        r=${sys%%-*}; r=random${r#thor}  # thorE-aALPHA... -> randomE, as flags() reads E
        row="| $sys | $p | $s |"
        for base in dense switch4 "$r"; do
          b=$ev/hyp/$base-s$s.avg.$p.txt
          if [ -e "$b" ]; then row+=" $(pval "$b" "$h" "$p") |"; else row+=" - |"; fi
        done
        echo "$row"
      done
    done
  done
  echo
  echo "Compute to the budget: training FLOPs summed from each run's log (the model's FLOPs per"
  echo "update; THOR's two passes count twice), and minutes at the system's pace measured apart"
  echo "on an idle machine (converged_pace.sh; '-' where it was not measured)."
  echo
  echo "| run | s/update | minutes | PFLOP |"
  echo "|---|---|---|---|"
  for run in "${runs[@]}"; do
    p=$(pace_of "$run")
    python3 - "$out/$run/train_log.jsonl" "$budget" "${p:--}" "$run" <<'PY'
import json, sys
total, prev = 0.0, 0
for line in open(sys.argv[1]):
    j = json.loads(line)
    if "loss" in j and "gflop_s" in j and "s_per_update" in j and j["update"] <= int(sys.argv[2]):
        total += j["gflop_s"] * 1e9 * j["s_per_update"] * (j["update"] - prev) / 1e15
        prev = j["update"]
pace = sys.argv[3]
minutes = "-" if pace == "-" else "%.1f" % (float(pace) * int(sys.argv[2]) / 60)
print("| %s | %s | %s | %.2f |" % (sys.argv[4], pace, minutes, total))
PY
  done
} > "$ev/table.md"
# the wall-clock view: each system's pace measured apart (converged_pace.sh), else the
# median of each run's own log
paces=()
for run in "${runs[@]}"; do
  p=$(pace_of "$run")
  [ -z "$p" ] || paces+=(--seconds-per-update "$run=$p")
done
"$thor" report "${runs[@]/#/$out/}" "${paces[@]}" --format svg --out "$ev/curves" 2> /dev/null
cat "$ev/table.md"
