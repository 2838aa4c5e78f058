"""Summarise bench/official/run.sh (training) or, with "decode", bench/official/decode.sh: per-update target tokens/s of the official code (fairseq's
per-interval "wps", interval = 1 update) and of thor (train_log.jsonl "tgt_tok_s"), updates after
the warm-up, pooled over the rounds. Writes OUT/official.json and OUT/official.md.

    python3 summarize.py OUT WARMUP ROUNDS
    python3 summarize.py decode OUT ROUNDS
"""
import json
import os
import re
import statistics
import sys


def official_updates(path, warm):
    """[(update, target tokens, seconds)] from a fairseq --log-format json --log-interval 1 log."""
    rows = []
    with open(path) as f:
        for line in f:
            if "| train_inner |" not in line:
                continue
            j = json.loads(line.split("| train_inner |", 1)[1])
            u, wpb, wps = int(j["num_updates"]), float(j["wpb"]), float(j["wps"])
            if u > warm and wps > 0:
                rows.append((u, wpb, wpb / wps))
    return rows


def thor_updates(path, warm):
    rows = []
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if "s_per_update" in j and j["update"] > warm:
                rows.append((j["update"], j["tgt_tok_s"] * j["s_per_update"], j["s_per_update"]))
    return rows


def stats(rows):
    rates = [t / s for _, t, s in rows]
    return {
        "updates": len(rows),
        "median_tgt_tok_s": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "pooled_tgt_tok_s": sum(t for _, t, _ in rows) / sum(s for _, _, s in rows),
        "median_s_per_update": statistics.median(s for _, _, s in rows),
    }


def write(out, stem, report, md):
    for name, text in ((stem + ".json", json.dumps(report, indent=1)), (stem + ".md", "\n".join(md) + "\n")):
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out, name))
    print("\n".join(md))


def read_decode(path, pattern):
    with open(path) as f:
        m = re.search(pattern, f.read())
    if not m:
        raise SystemExit(f"summarize.py: no timing line in {path}")
    sentences, tokens, secs = (float(m.group(i).replace(",", "")) for i in (1, 2, 3))
    return {"sentences_s": sentences / secs, "tgt_tok_s": tokens / secs, "tok_per_sentence": tokens / sentences,
            "seconds": secs}


FAIRSEQ_LINE = r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s"
THOR_LINE = r"decoded (\d+) sentences, (\d+) target tokens in ([\d.e+-]+) s"


def decode_main(out, rounds):
    dec = os.path.join(out, "decode")
    report = {"rounds": rounds, "rows": []}
    md = ["| system | beam | batch | sentences/s (per round) | tgt tok/s | tok/sent | ms/sent | BLEU | vs fairseq |",
          "|---|---|---|---|---|---|---|---|---|"]
    for batch in (64, 1):
        base = None
        for system, stem, line in (("fairseq-generate", "fairseq", FAIRSEQ_LINE),
                                   ("thor float32", "thor-float32", THOR_LINE),
                                   ("thor int8 + shortlist", "thor-int8-shortlist", THOR_LINE)):
            runs = []
            for r in range(1, rounds + 1):
                tag = f"beam5-batch{batch}-r{r}"
                runs.append(read_decode(f"{dec}/{stem}-{tag}.{'out' if stem == 'fairseq' else 'log'}", line))
            med = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
            score = f"{dec}/{stem}-beam5-batch{batch}-r1.out.score"
            bleu = None
            if os.path.exists(score):
                with open(score) as f:
                    m = re.search(r"BLEU = ([\d.]+)", f.read())
                    bleu = float(m.group(1)) if m else None
            base = base or med["sentences_s"]
            row = {"system": system, "beam": 5, "batch": batch, "median": med, "per_round": runs, "bleu": bleu,
                   "over_fairseq": med["sentences_s"] / base}
            report["rows"].append(row)
            rounds_txt = " / ".join(f"{x['sentences_s']:.1f}" for x in runs)
            md.append(f"| {system} | 5 | {batch} | {med['sentences_s']:.1f} ({rounds_txt}) | {med['tgt_tok_s']:,.0f} | "
                      f"{med['tok_per_sentence']:.1f} | {1000 / med['sentences_s']:.1f} | "
                      f"{'' if bleu is None else f'{bleu:.2f}'} | {row['over_fairseq']:.2f}× |")
    write(out, "decode", report, md)


def main():
    if sys.argv[1] == "decode":
        return decode_main(sys.argv[2], int(sys.argv[3]))
    out, warm, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    report = {"warmup_updates": warm, "rounds": rounds, "rows": []}
    md = ["| model | system | official (fairseq) | thor float32 | thor bf16 | float32 / official | bf16 / official |",
          "|---|---|---|---|---|---|---|"]
    for arch in ("transformer_tiny", "transformer_iwslt_de_en"):
        for sys_name in ("dense", "thor2"):
            runs = {"official": [], "float32": [], "bf16": []}
            per_round = {k: [] for k in runs}
            for r in range(1, rounds + 1):
                tag = f"{arch}-{sys_name}-r{r}"
                o = official_updates(f"{out}/logs/official-{tag}.log", warm)
                runs["official"] += o
                per_round["official"].append(stats(o)["median_tgt_tok_s"] if o else None)
                for p in ("float32", "bf16"):
                    t = thor_updates(f"{out}/runs/thor-{p}-{tag}/train_log.jsonl", warm)
                    runs[p] += t
                    per_round[p].append(stats(t)["median_tgt_tok_s"] if t else None)
            row = {"arch": arch, "system": sys_name}
            for k, v in runs.items():
                if not v:
                    raise SystemExit(f"summarize.py: no timed updates for {arch} {sys_name} {k} in {out}")
                row[k] = stats(v)
                row[k]["per_round_median"] = per_round[k]
            for p in ("float32", "bf16"):
                row[f"{p}_over_official"] = row[p]["median_tgt_tok_s"] / row["official"]["median_tgt_tok_s"]
            report["rows"].append(row)

            def cell(s):
                return f"{s['median_tgt_tok_s']:,.0f} ({s['min']:,.0f}–{s['max']:,.0f})"

            md.append(f"| {arch} | {'THOR E=2' if sys_name == 'thor2' else 'dense'} | {cell(row['official'])} | "
                      f"{cell(row['float32'])} | {cell(row['bf16'])} | {row['float32_over_official']:.2f}× | "
                      f"{row['bf16_over_official']:.2f}× |")
    write(out, "official", report, md)


if __name__ == "__main__":
    main()
