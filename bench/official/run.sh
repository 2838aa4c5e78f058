#!/usr/bin/env bash
# Training throughput of the official THOR code (a fairseq plugin) against thor on THIS
# machine, in one run, interleaved: dense and THOR E=2 at transformer_tiny and
# transformer_iwslt_de_en, Multi30k de->en, joint 8k SentencePiece vocabulary (the same
# pieces for both), --max-tokens 4096, the reference recipe's flags. Writes OUT/official.md
# and OUT/official.json.
#
#   bash bench/official/run.sh FAIRSEQ_DIR THOR_OFFICIAL_DIR [DATA_DIR] [OUT_DIR] [ROUNDS] [UPDATES]
#
# FAIRSEQ_DIR: a checkout of facebookresearch/fairseq at 597a8fc5 (July 2021, the last
#   commit before fairseq.models.transformer became a package; the THOR plugin imports
#   the layers from the old module).
# THOR_OFFICIAL_DIR: a checkout of microsoft/Stochastic-Mixture-of-Experts (7c43d18).
# Neither is part of this project; setup.sh copies FAIRSEQ_DIR to OUT/fairseq and builds
# its extensions there. Python packages, from Debian 12 (no PyPI needed):
#   apt-get install -y python3-torch python3-omegaconf python3-bitarray python3-regex \
#     python3-cffi cython3 python3-tqdm python3-numpy python3-sentencepiece python3-dev
# hydra-core and sacrebleu are not packaged; bench/official/shims stands in for the parts
# fairseq imports (see fairseq_compat.py for the three Python 3.11 / NumPy / omegaconf fixes).
#
# Each run trains 5 warm-up updates plus UPDATES timed ones (default 25); ROUNDS (default 2)
# alternate the systems so that machine drift hits all of them alike. ~25 minutes a round
# on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
usage="bench/official/run.sh FAIRSEQ_DIR THOR_OFFICIAL_DIR [DATA_DIR] [OUT_DIR] [ROUNDS] [UPDATES]"
updates=${6:-25}
warm=5
source "$root/bench/official/setup.sh" "$@"

common=(--share-all-embeddings --dropout 0.3 --lr 1e-3 --warmup-updates 4000 --weight-decay 1e-4 --max-tokens 4096
        --max-update $((warm + updates)) --log-interval 1)

official_run() {  # ARCH SYSTEM LOG
  local arch=$1 sys=$2 log=$3 a=()
  if [ "$sys" = thor2 ]; then
    a=(--task translation_thor --user-dir "$official/thor" --arch thor_transformer_iwslt_de_en --num-experts 2
       --consistency-alpha 5.0 --inference-level 1)
  else
    a=(--task translation --arch transformer_iwslt_de_en)
  fi
  [ "$arch" = transformer_tiny ] && a+=("${tiny[@]}")
  fairseq_cli fairseq_cli.train "$out/data-bin" "${a[@]}" "${common[@]}" \
    --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.0 --lr-scheduler inverse_sqrt \
    --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --log-format json --num-workers 0 --seed 1 --cpu \
    --no-save --disable-validation --save-dir "$out/ckpt-official" > "$log" 2>&1 || fail "official run failed: $log"
}

thor_run() {  # ARCH SYSTEM PRECISION DIR
  local arch=$1 sys=$2 precision=$3 dir=$4 a=()
  [ "$sys" = thor2 ] && a=(--num-experts 2 --router thor --consistency-alpha 5)
  rm -rf "$dir"
  "$thor" train "$prepared" --arch "$arch" "${a[@]}" "${common[@]}" --precision "$precision" --no-progress \
    --validate-interval-updates 1000000 --eval-max-sentences 5 --eval-beam 1 --save-dir "$dir" > "$dir.log" 2>&1 ||
    fail "thor run failed: $dir.log"
}

for r in $(seq 1 "$rounds"); do
  for arch in transformer_tiny transformer_iwslt_de_en; do
    for sys in dense thor2; do
      tag="$arch-$sys-r$r"
      echo "[bench/official] round $r: $arch $sys" >&2
      official_run "$arch" "$sys" "$out/logs/official-$tag.log"
      for precision in float32 bf16; do thor_run "$arch" "$sys" "$precision" "$out/runs/thor-$precision-$tag"; done
    done
  done
done
$py "$here/summarize.py" "$out" "$warm" "$rounds"
