#!/usr/bin/env bash
# Distributed training on one machine: 2 ranks x 1 thread (--nproc-per-node 2) against one
# process with --workers 2 (2 threads), dense and THOR E=2 transformer_tiny, bf16 products,
# Multi30k de-en, --max-tokens 4096, in interleaved rounds; plus the 2-rank run without
# overlap (--no-comm-overlap), whose exposed communication time is all of it, so
#   hidden share = 1 - exposed(overlap) / exposed(no overlap).
# Also the bytes each rank sends per update (measured by the run's communicator).
#   bash bench/dist.sh [DATA_DIR] [OUT_DIR] [ROUNDS] [UPDATES]
# Writes OUT/dist.md and OUT/dist.json (medians over the rounds of the per-interval
# medians, the first interval of every run left out as warm-up).
set -euo pipefail
default_out=dist-bench
source "$(dirname "$0")/dist_setup.sh"
rounds=${3:-3}
updates=${4:-60}
common=(train "$out/data" --arch transformer_tiny --share-all-embeddings --dropout 0.3 --lr 1e-3 --warmup-updates 4000
        --max-tokens 4096 --max-update "$updates" --log-interval 10 --validate-interval-updates 100000
        --no-eval-bleu --eval-max-sentences 1 --precision bf16 --no-progress)
for r in $(seq 1 "$rounds"); do
  for model in dense thor; do
    extra=()
    [ "$model" = thor ] && extra=(--num-experts 2 --router thor --consistency-alpha 5)
    for setup in workers2 ranks2 ranks2-nooverlap; do
      dir="$out/r$r-$model-$setup"
      rm -rf "$dir"
      case $setup in
        workers2) "$thor" --threads 2 "${common[@]}" "${extra[@]}" --workers 2 --save-dir "$dir" 2> "$dir.log" ;;
        ranks2) "$thor" "${common[@]}" "${extra[@]}" --nproc-per-node 2 --workers 1 --save-dir "$dir" 2> "$dir.log" ;;
        ranks2-nooverlap) "$thor" "${common[@]}" "${extra[@]}" --nproc-per-node 2 --workers 1 --no-comm-overlap \
                            --save-dir "$dir" 2> "$dir.log" ;;
      esac
      echo "[bench] round $r $model $setup done" >&2
    done
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys, os
out, rounds = sys.argv[1], int(sys.argv[2])
def lines(d):
    return [json.loads(l) for l in open(os.path.join(d, "train_log.jsonl")) if '"gnorm"' in l][1:]
res = {}
for model in ("dense", "thor"):
    for setup in ("workers2", "ranks2", "ranks2-nooverlap"):
        per_round = {k: [] for k in ("tgt_tok_s", "comm_exposed_s", "comm_s", "s_per_update", "sent_mb_allreduce")}
        for r in range(1, rounds + 1):
            ls = lines(f"{out}/r{r}-{model}-{setup}")
            for k in per_round:
                v = [l[k] for l in ls if k in l]
                if v: per_round[k].append(statistics.median(v))
        res[f"{model}/{setup}"] = {k: statistics.median(v) for k, v in per_round.items() if v} | \
                                  {"rounds_tgt_tok_s": per_round["tgt_tok_s"]}
rows = ["| model | setup | target tok/s (median) | per round | s/update | exposed comm s/update | MB sent/update/rank |",
        "|---|---|---|---|---|---|---|"]
for key, v in res.items():
    m, s = key.split("/")
    rows.append(f"| {m} | {s} | {v['tgt_tok_s']:,.0f} | {', '.join(f'{x:,.0f}' for x in v['rounds_tgt_tok_s'])} | "
                f"{v['s_per_update']:.3f} | {v.get('comm_exposed_s', 0):.4f} | {v.get('sent_mb_allreduce', 0):.2f} |")
for m in ("dense", "thor"):
    a, b = res[f"{m}/ranks2"], res[f"{m}/ranks2-nooverlap"]
    w = res[f"{m}/workers2"]
    hidden = 1 - a["comm_exposed_s"] / b["comm_exposed_s"] if b.get("comm_exposed_s") else float("nan")
    res[f"{m}/summary"] = {"ranks2_over_workers2": a["tgt_tok_s"] / w["tgt_tok_s"], "hidden_share": hidden}
    rows.append(f"\n{m}: 2 ranks / --workers 2 = {a['tgt_tok_s'] / w['tgt_tok_s']:.3f}; all-reduce hidden behind "
                f"backward: {100 * hidden:.0f} % (exposed {a['comm_exposed_s']:.4f} s with overlap, "
                f"{b['comm_exposed_s']:.4f} s without)")
open(f"{out}/dist.md", "w").write("\n".join(rows) + "\n")
json.dump(res, open(f"{out}/dist.json", "w"), indent=1)
print("\n".join(rows))
PY
