// `thor score REF -i HYP`: corpus BLEU (sacreBLEU default) and chrF2 on stdout.
// `thor score REF -i A -i B ...`: every system's BLEU with paired bootstrap resampling
// (sacreBLEU's --paired-bs: mean, 95 % interval, p-value against the first system).
// `thor score --data DIR --split test -i 'out/{pair}.txt'`: one row per language pair of a
// prepared dataset (the references are its raw text; {pair}, {src}, {tgt} in the
// hypothesis path name each pair's file) and their mean.
#include <cstdio>

#include "cli/commands.h"
#include "thor/common/error.h"
#include "thor/data/corpus.h"
#include "thor/data/meta.h"
#include "thor/eval/metrics.h"
#include "thor/eval/significance.h"

namespace thor::cli {

namespace {

std::string substitute(std::string pattern, const LangPair& pair) {
  for (const auto& [key, value] : {std::pair<std::string, std::string>{"{pair}", pair.name()}, {"{src}", pair.src},
                                   {"{tgt}", pair.tgt}})
    for (size_t at; (at = pattern.find(key)) != std::string::npos;) pattern.replace(at, key.size(), value);
  return pattern;
}

std::vector<std::string> read_hypotheses(const std::string& path, const std::string& ref_path, size_t lines) {
  auto h = read_lines(path.empty() ? "/dev/stdin" : path);
  if (h.size() != lines)
    throw Error("score: " + (path.empty() ? std::string("stdin") : path) + " has " + std::to_string(h.size()) +
                " lines but " + ref_path + " has " + std::to_string(lines));
  return h;
}

// One language pair of a prepared dataset per row, and the mean BLEU of each system.
void score_pairs(const std::string& data, const std::string& split, const std::vector<std::string>& patterns,
                 int samples, uint64_t seed) {
  if (patterns.empty()) throw Error("score --data: give the hypotheses with -i PATTERN ({pair}, {src}, {tgt})");
  auto meta = read_meta(data);
  if (!meta.splits.count(split)) throw Error("score --data: " + data + " has no split '" + split + "'");
  for (const auto& pat : patterns)
    if (meta.pairs.size() > 1 && pat.find('{') == std::string::npos)
      throw Error("score --data: -i " + pat + " names no {pair}, {src} or {tgt}: every pair needs its own file");
  std::vector<double> mean(patterns.size(), 0.0);
  if (patterns.size() == 1) std::printf("pair\tBLEU\tchrF2\tlines\n");
  else std::printf("pair\tsystem\tBLEU\tmean\tci95\tp_value\n");
  for (size_t p = 0; p < meta.pairs.size(); ++p) {
    const auto& pair = meta.pairs[p];
    const auto ref_path = raw_file(data, meta, split, p, pair.tgt);
    auto refs = read_lines(ref_path);
    std::vector<std::vector<std::string>> systems;
    for (const auto& pat : patterns) systems.push_back(read_hypotheses(substitute(pat, pair), ref_path, refs.size()));
    if (systems.size() == 1) {
      auto b = corpus_bleu(systems[0], refs);
      auto c = corpus_chrf(systems[0], refs);
      std::printf("%s\t%.2f\t%.2f\t%zu\n", pair.name().c_str(), b.score, c.score, refs.size());
      mean[0] += b.score / static_cast<double>(meta.pairs.size());
      continue;
    }
    std::vector<std::vector<BleuStats>> stats;
    for (auto& sys : systems) stats.push_back(sentence_stats(sys, refs));
    auto res = paired_bootstrap(stats, bootstrap_indices(refs.size(), samples, seed));
    for (size_t s = 0; s < res.size(); ++s) {
      const auto file = substitute(patterns[s], pair);
      if (s == 0) std::printf("%s\t%s\t%.2f\t%.2f\t%.2f\t(baseline)\n", pair.name().c_str(), file.c_str(), res[s].score, res[s].mean, res[s].ci);
      else std::printf("%s\t%s\t%.2f\t%.2f\t%.2f\t%.4f\n", pair.name().c_str(), file.c_str(), res[s].score, res[s].mean, res[s].ci, res[s].p_value);
      mean[s] += res[s].score / static_cast<double>(meta.pairs.size());
    }
  }
  for (size_t s = 0; s < patterns.size(); ++s) {
    if (patterns.size() == 1) std::printf("mean\t%.2f\t\t\n", mean[s]);
    else std::printf("mean\t%s\t%.2f\t\t\t\n", patterns[s].c_str(), mean[s]);
  }
  std::printf("BLEU signature: %s%s\n", BleuScore::signature().c_str(),
              patterns.size() > 1 ? ("; paired bootstrap resampling: " + std::to_string(samples) + " samples, seed " +
                                     std::to_string(seed)).c_str()
                                  : "");
}

}  // namespace

void add_score(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("score", "corpus BLEU and chrF2 of a hypothesis file against a reference");
  static std::string ref;
  static std::vector<std::string> hyp;
  static int samples = 1000;
  static uint64_t seed = 12345;
  static std::string data, split = "test";
  cmd->add_option("ref", ref, "reference file, one sentence per line (or --data)");
  cmd->add_option("--data", data, "a prepared dataset: one row per language pair, its raw text the references");
  cmd->add_option("--split", split, "with --data: the split scored")->capture_default_str();
  cmd->add_option("-i,--input", hyp, "hypothesis file (default: stdin); several: paired bootstrap against the first");
  cmd->add_option("--paired-bs-n", samples, "bootstrap samples with several -i")->capture_default_str();
  cmd->add_option("--seed", seed, "bootstrap sample seed")->capture_default_str();
  cmd->callback([&common] {
    apply_common(common);
    if (!data.empty()) {
      if (!ref.empty()) throw Error("score: give a reference file or --data, not both");
      score_pairs(data, split, hyp, samples, seed);
      return;
    }
    if (ref.empty()) throw Error("score: a reference file (or --data DIR) is required");
    auto refs = read_lines(ref);
    std::vector<std::vector<std::string>> systems;
    for (const auto& h : hyp.empty() ? std::vector<std::string>{""} : hyp)
      systems.push_back(read_hypotheses(h, ref, refs.size()));
    if (systems.size() == 1) {
      auto b = corpus_bleu(systems[0], refs);
      auto c = corpus_chrf(systems[0], refs);
      std::printf("%s\n%s\n", b.format().c_str(), c.format().c_str());
      std::printf("BLEU signature: %s\nchrF2 signature: %s\n", BleuScore::signature().c_str(),
                  ChrfScore::signature().c_str());
      return;
    }
    std::vector<std::vector<BleuStats>> stats;
    for (auto& s : systems) stats.push_back(sentence_stats(s, refs));
    auto res = paired_bootstrap(stats, bootstrap_indices(refs.size(), samples, seed));
    std::printf("system\tBLEU\tmean\tci95\tp_value\n");
    for (size_t s = 0; s < res.size(); ++s) {
      if (s == 0) std::printf("%s\t%.2f\t%.2f\t%.2f\t(baseline)\n", hyp[s].c_str(), res[s].score, res[s].mean, res[s].ci);
      else std::printf("%s\t%.2f\t%.2f\t%.2f\t%.4f\n", hyp[s].c_str(), res[s].score, res[s].mean, res[s].ci, res[s].p_value);
    }
    std::printf("paired bootstrap resampling: %d samples, seed %llu; BLEU signature: %s\n", samples,
                static_cast<unsigned long long>(seed), BleuScore::signature().c_str());
  });
}

}  // namespace thor::cli
