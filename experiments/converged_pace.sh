#!/usr/bin/env bash
# Issue 14, item 4: each system's training pace, measured apart on an idle machine, for the
# wall-clock view of the converged study. The study's own logs cannot give it: its runs are
# stopped for benchmarks, resumed in later sessions and share the CPU, and their logged
# seconds per update count all of that. This trains every system of SYSTEMS with the
# study's recipe (experiments/converged_recipe.sh) and data (OUT_DIR/data, made by
# converged.sh) for UPDATES updates (default 40) from scratch, in ROUNDS rounds (default 3)
# that take the systems in turn, so that a drift of the machine's speed touches them alike.
# A round's figure is the mean seconds per update of its logged intervals after the first
# (start-up and the allocator's first growth left out); the pace is the median over rounds.
#   experiments/converged_pace.sh DATA_DIR OUT_DIR
# Run it with the study stopped (nothing else on the CPU). Writes OUT_DIR/pace.tsv
# (system, seconds per update, the rounds' figures), which converged_eval.sh passes to
# `thor report --seconds-per-update`, and with KEEP a copy as KEEP/pace.tsv. THOR_BIN,
# SYSTEMS, WARMUP, PRECISION as for converged.sh.
set -euo pipefail
data=${1:?usage: converged_pace.sh DATA_DIR OUT_DIR}
out=${2:?usage: converged_pace.sh DATA_DIR OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
thor=${THOR_BIN:-$root/build/thor}
updates=${UPDATES:-40}
rounds=${ROUNDS:-3}
interval=1000000  # no validation or kept checkpoint inside the timed updates
warmup=${WARMUP:-4000}
precision=${PRECISION:-auto}
systems=(${SYSTEMS:-dense thor2-a1 thor2-a5 switch4 random2 thor4-a1 thor4-a5})
[ -s "$out/data/meta.json" ] || { echo "converged_pace: no $out/data (run converged.sh on $data first)" >&2; exit 1; }
[ "$updates" -ge 20 ] || { echo "converged_pace: UPDATES must be >= 20 (two logged intervals of 10)" >&2; exit 1; }
source "$root/experiments/converged_recipe.sh"
tmp=$(mktemp -d "$out/pace.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
declare -A figures
for (( r = 1; r <= rounds; r++ )); do
  for sys in "${systems[@]}"; do
    extra=$(flags "$sys")
    # shellcheck disable=SC2086
    "$thor" train "$out/data" "${common[@]}" $extra --max-update "$updates" --seed 1 --log-interval 10 \
      --save-dir "$tmp/$sys-$r" 2> "$tmp/$sys-$r.log"
    f=$(python3 -c '
import json, sys
v = [json.loads(l)["s_per_update"] for l in open(sys.argv[1]) if "\"s_per_update\"" in l][1:]
print("%.4f" % (sum(v) / len(v)))' "$tmp/$sys-$r/train_log.jsonl")
    figures[$sys]+="$f "
    echo "[pace] round $r $sys $f s/update" >&2
    rm -rf "$tmp/$sys-$r"
  done
done
{
  printf "system\ts_per_update\trounds\n"
  for sys in "${systems[@]}"; do
    median=$(printf '%s\n' ${figures[$sys]} | sort -g | awk '{v[NR] = $1} END {printf "%.4f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
    printf "%s\t%s\t%s\n" "$sys" "$median" "${figures[$sys]% }"
  done
} > "$out/pace.tsv.tmp"
mv "$out/pace.tsv.tmp" "$out/pace.tsv"
# kept beside the runs (experiments/converged_keep.sh): the machine that trains the runs
# measures their pace, and a later machine remakes the table with it
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$out/pace.tsv" "$KEEP/pace.tsv"; fi
cat "$out/pace.tsv"
