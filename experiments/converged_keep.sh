# shellcheck shell=bash disable=SC2154  # $out is set by the script that sources this
# Sourced by converged.sh and converged_eval.sh: KEEP, a folder (in the repository, e.g.
# docs/converged/runs) that holds the study's finished runs without their checkpoints, so a
# study can go on from another machine that has only the repository. A kept run is its
# train_log.jsonl, its done mark and its test translations at the budget it was evaluated at
# (KEEP/RUN/hyp/RUN.bestN.PAIR.txt, RUN.avgBUDGET.PAIR.txt): everything converged_eval.sh
# needs for its tables, p-values and curves, and a few hundred KB; KEEP/pace.tsv holds the
# systems' paces (converged_pace.sh), measured on the machine that trained the runs. Expects
# $out to be set.

# the last update a run's log reached (0 without a log)
last_update() { grep -o '"update":[0-9]*' "$1/train_log.jsonl" 2> /dev/null | tail -1 | cut -d: -f2 || echo 0; }

# copies every kept run that $out does not have into $out (its log, done mark and
# translations), marked `kept`: converged.sh skips it, converged_eval.sh reads its translations;
# and the systems' paces (KEEP/pace.tsv, kept by converged_pace.sh) where $out has none
restore_kept() {
  [ -n "${KEEP:-}" ] && [ -d "$KEEP" ] || return 0
  local log run
  if [ -s "$KEEP/pace.tsv" ] && [ ! -s "$out/pace.tsv" ]; then
    cp "$KEEP/pace.tsv" "$out/pace.tsv"
    echo "[keep] pace.tsv restored from $KEEP" >&2
  fi
  for log in "$KEEP"/*/train_log.jsonl; do
    [ -e "$log" ] || continue
    run=$(basename "$(dirname "$log")")
    [ -e "$out/$run/train_log.jsonl" ] && continue
    mkdir -p "$out/$run" "$out/eval/hyp"
    cp "$log" "$out/$run/"
    if [ -e "$KEEP/$run/done" ]; then cp "$KEEP/$run/done" "$out/$run/"; fi
    cp "$KEEP/$run"/hyp/*.txt "$out/eval/hyp/"
    touch "$out/$run/kept"
    echo "[keep] $run restored from $KEEP (update $(last_update "$KEEP/$run"))" >&2
  done
}

# keep_run RUN BEST BUDGET: a finished run's (one with its done mark) log, done mark and test
# translations of its best checkpoint (update BEST) and of its averaged checkpoints at BUDGET
# into KEEP/RUN; a run still training is not kept (it could not go on from KEEP)
keep_run() {
  [ -n "${KEEP:-}" ] && [ -e "$out/$1/done" ] || return 0
  local dir=$KEEP/$1
  mkdir -p "$dir/hyp"
  cp "$out/$1/train_log.jsonl" "$out/$1/done" "$dir/"
  cp "$out/eval/hyp/$1.best$2".*.txt "$out/eval/hyp/$1.avg$3".*.txt "$dir/hyp/"
}
