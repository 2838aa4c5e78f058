# Shared by the experiment scripts (sourced; expects $data and $out to be set).
# Environment: THOR_BIN (a frozen binary, so rebuilding cannot disturb a long study),
# MAX_UPDATE (default 600), WARMUP (200), VALIDATIONS (4 per run), VOCAB (8000), JOBS (1: parallel jobs, each with
# nproc/JOBS CPU threads).
root=$(cd "$(dirname "$0")/.." && pwd)
thor=${THOR_BIN:-$root/build/thor}
max_update=${MAX_UPDATE:-600}
warmup=${WARMUP:-200}
validations=${VALIDATIONS:-4}
jobs=${JOBS:-1}
mkdir -p "$out"
threads=()
if [ "$jobs" -gt 1 ]; then threads=(--threads $(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))); fi

# a pool of $jobs background jobs; `barrier` waits for all and fails if any failed
failed=0
spawn() {
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || failed=1; done
  "$@" &
}
barrier() {
  while [ -n "$(jobs -rp)" ]; do wait -n || failed=1; done
  wait || failed=1
  [ "$failed" -eq 0 ] || { echo "[experiments] a job failed; see the logs in $out" >&2; exit 1; }
}
[ -x "$thor" ] || bash "$root/scripts/build.sh" --target thor thor_spm_shim

[ -s "$out/data/meta.json" ] || "$thor" prepare -s en -t de --trainpref "$data/train" \
  --validpref "$data/valid" --testpref "$data/test_2016_flickr" --destdir "$out/data" --vocab-size ${VOCAB:-8000}

common=(--arch transformer_tiny --share-all-embeddings --dropout 0.3 --lr 1e-3 --warmup-updates "$warmup"
        --weight-decay 1e-4 --max-tokens 4096 --max-update "$max_update"
        --validate-interval-updates $(( (max_update + validations - 1) / validations ))
        --eval-beam 4 --eval-max-sentences 400 --no-progress --device auto)

train() {  # name seed extra-args...
  local name=$1 seed=$2; shift 2
  local dir="$out/$name-s$seed"
  if [ ! -s "$dir/done" ]; then
    echo "[experiments] $(date +%T) training $name seed $seed" >&2
    "$thor" "${threads[@]}" train "$out/data" "${common[@]}" --seed "$seed" --save-dir "$dir" --resume "$@" 2>> "$dir.log" || {
      echo "training $name seed $seed failed; see $dir.log" >&2; return 1; }
    grep '"elapsed_s"' "$dir/train_log.jsonl" | tail -1 | sed 's/.*"elapsed_s":\([0-9.]*\).*/\1/' \
      | awk '{printf "%.0f\n", $1}' > "$dir/done"
  fi
}

valid_bleu() { grep '"valid_bleu"' "$1/train_log.jsonl" | sed 's/.*"best":\([0-9.]*\).*/\1/' | tail -1; }
