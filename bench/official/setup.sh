# Sourced by bench/official/run.sh and decode.sh with their arguments
#   FAIRSEQ_DIR THOR_OFFICIAL_DIR [DATA_DIR] [OUT_DIR] [ROUNDS] [...]
# (the sixth is the script's own): checks the inputs, builds thor, copies fairseq to
# OUT/fairseq with its compiled extensions, prepares the same data for both systems, and sets
# the environment both are measured in. Expects: root, usage. Sets: fairseq_src, official,
# data, out, rounds, py, thor, fs, prepared, here, tiny, and the functions fairseq_cli and fail.
here="$root/bench/official"
py=/usr/bin/python3
fail() { echo "bench/official: $*" >&2; exit 1; }
[ $# -ge 2 ] || { echo "usage: $usage" >&2; exit 2; }
[ -d "$1" ] || fail "FAIRSEQ_DIR $1: no such directory"
[ -d "$2" ] || fail "THOR_OFFICIAL_DIR $2: no such directory"
fairseq_src=$(cd "$1" && pwd)
official=$(cd "$2" && pwd)
data=${3:-$root/../shared/data/multi30k}
out=${4:-$root/bench/results/official}
rounds=${5:-2}

[ -f "$fairseq_src/fairseq/models/transformer.py" ] ||
  fail "$fairseq_src/fairseq/models/transformer.py missing: FAIRSEQ_DIR must be fairseq at 597a8fc5 (before the July 2021 transformer split)"
[ -f "$official/thor/transformer_thor.py" ] ||
  fail "$official/thor/transformer_thor.py missing: THOR_OFFICIAL_DIR must be microsoft/Stochastic-Mixture-of-Experts"
[ -f "$data/train.de" ] || fail "$data/train.de missing (DATA_DIR: Multi30k with train/valid/test_2016_flickr .de/.en)"
$py -c "import torch, omegaconf, bitarray, regex, cffi, tqdm, numpy, sentencepiece, Cython" 2>/dev/null ||
  fail "Python packages missing: apt-get install -y python3-torch python3-omegaconf python3-bitarray python3-regex python3-cffi cython3 python3-tqdm python3-numpy python3-sentencepiece python3-dev"

mkdir -p "$out/logs" "$out/runs"
bash "$root/scripts/build.sh" --target thor > "$out/logs/build.log" 2>&1 || fail "build failed: $out/logs/build.log"
thor="$root/build/thor"

# fairseq copy with its compiled extensions: batching (Cython) and BLEU (C, for generate)
fs="$out/fairseq"
if [ ! -f "$fs/.copied" ]; then
  rm -rf "$fs" && mkdir -p "$fs"
  (cd "$fairseq_src" && tar --exclude=.git -cf - .) | tar -xf - -C "$fs"
  touch "$fs/.copied"
fi
inc="$($py-config --includes) -I$($py -c 'import numpy; print(numpy.get_include())')"
suffix=$($py-config --extension-suffix)
for m in data_utils_fast token_block_utils_fast; do
  [ -f "$fs/fairseq/data/$m$suffix" ] && continue
  cython3 -3 --cplus "$fs/fairseq/data/$m.pyx" -o "$fs/fairseq/data/$m.cpp"
  g++ -O2 -shared -fPIC $inc -w "$fs/fairseq/data/$m.cpp" -o "$fs/fairseq/data/$m$suffix"
done
[ -f "$fs/fairseq/libbleu$suffix" ] ||
  g++ -O2 -shared -fPIC $inc -w "$fs/fairseq/clib/libbleu/libbleu.cpp" "$fs/fairseq/clib/libbleu/module.cpp" \
    -o "$fs/fairseq/libbleu$suffix"

fairseq_cli() {  # MODULE ARGS... : a fairseq entry point under Debian 12's Python
  PYTHONPATH="$here/shims:$fs" $py "$here/shims/fairseq_compat.py" "$@"
}

# the same data for both: thor's prepared corpus (as the harness prepares it), its
# SentencePiece pieces binarised for fairseq with a joined dictionary
prepared="$out/data-deen"
[ -f "$prepared/meta.json" ] ||
  "$thor" prepare -s de -t en --trainpref "$data/train" --validpref "$data/valid" --testpref "$data/test_2016_flickr" \
    --destdir "$prepared" --vocab-size 8000 > "$out/logs/prepare.log" 2>&1 || fail "thor prepare failed: $out/logs/prepare.log"
if [ ! -f "$out/data-bin/dict.de.txt" ]; then
  mkdir -p "$out/pieces"
  $py - "$prepared" "$out/pieces" <<'PY'
import sys, sentencepiece as spm
src, dst = sys.argv[1], sys.argv[2]
sp = spm.SentencePieceProcessor(model_file=f"{src}/spm.model")
for split in ("train", "valid", "test"):
    for lang in ("de", "en"):
        with open(f"{src}/{split}.raw.{lang}") as f, open(f"{dst}/{split}.{lang}", "w") as g:
            for line in f:
                g.write(" ".join(sp.encode(line.rstrip("\n"), out_type=str)) + "\n")
PY
  rm -rf "$out/data-bin.tmp"
  fairseq_cli fairseq_cli.preprocess --source-lang de --target-lang en \
    --trainpref "$out/pieces/train" --validpref "$out/pieces/valid" --testpref "$out/pieces/test" \
    --destdir "$out/data-bin.tmp" --joined-dictionary --workers 1 > "$out/logs/preprocess.log" 2>&1 ||
    fail "fairseq preprocess failed: $out/logs/preprocess.log"
  rm -rf "$out/data-bin" && mv "$out/data-bin.tmp" "$out/data-bin"
fi

# what the issue measured the official code with: OpenBLAS with the core type thor itself
# picks, one thread per core, glibc told to keep freed memory (thor does the same itself)
grep -q avx512f /proc/cpuinfo && core=SkylakeX || core=Haswell
export OPENBLAS_CORETYPE=$core OMP_NUM_THREADS=$(nproc)
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=67108864
# transformer_tiny as thor defines it (fairseq's own transformer_tiny is 64-dimensional)
tiny=(--encoder-embed-dim 256 --decoder-embed-dim 256 --encoder-ffn-embed-dim 1024 --decoder-ffn-embed-dim 1024
      --encoder-layers 3 --decoder-layers 3 --encoder-attention-heads 4 --decoder-attention-heads 4)
