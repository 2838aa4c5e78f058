# Sourced by the distributed benchmarks (dist.sh, dist_bytes.sh, expert_memory.sh) with
# their own arguments: DATA_DIR ($1, default ../shared/data/multi30k) and OUT_DIR ($2,
# default runs/$default_out); sets root, data, out, thor (THOR_BIN or the build's, built if
# missing) and prepares Multi30k de-en once into OUT_DIR/data.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=${1:-$root/../shared/data/multi30k}
out=${2:-$root/runs/${default_out:?}}
thor=${THOR_BIN:-$root/build/thor}
[ -d "$data" ] || { echo "$(basename "$0"): no data directory $data" >&2; exit 1; }
[ -x "$thor" ] || bash "$root/scripts/build.sh" --target thor thor_spm_shim
mkdir -p "$out"
[ -s "$out/data/meta.json" ] || "$thor" prepare -s de -t en --trainpref "$data/train" --validpref "$data/valid" \
  --destdir "$out/data" --vocab-size 8000 2> "$out/prepare.log"
