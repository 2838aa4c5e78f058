// `thor score REF -i HYP`: corpus BLEU (sacreBLEU default) and chrF2 on stdout.
// `thor score REF -i A -i B ...`: every system's BLEU with paired bootstrap resampling
// (sacreBLEU's --paired-bs: mean, 95 % interval, p-value against the first system).
#include <cstdio>

#include "cli/commands.h"
#include "thor/common/error.h"
#include "thor/data/corpus.h"
#include "thor/eval/metrics.h"
#include "thor/eval/significance.h"

namespace thor::cli {

void add_score(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("score", "corpus BLEU and chrF2 of a hypothesis file against a reference");
  static std::string ref;
  static std::vector<std::string> hyp;
  static int samples = 1000;
  static uint64_t seed = 12345;
  cmd->add_option("ref", ref, "reference file, one sentence per line")->required();
  cmd->add_option("-i,--input", hyp, "hypothesis file (default: stdin); several: paired bootstrap against the first");
  cmd->add_option("--paired-bs-n", samples, "bootstrap samples with several -i")->capture_default_str();
  cmd->add_option("--seed", seed, "bootstrap sample seed")->capture_default_str();
  cmd->callback([&common] {
    apply_common(common);
    auto refs = read_lines(ref);
    std::vector<std::vector<std::string>> systems;
    for (const auto& h : hyp.empty() ? std::vector<std::string>{""} : hyp) {
      systems.push_back(read_lines(h.empty() ? "/dev/stdin" : h));
      if (systems.back().size() != refs.size())
        throw Error("score: " + (h.empty() ? std::string("stdin") : h) + " has " +
                    std::to_string(systems.back().size()) + " lines but " + ref + " has " +
                    std::to_string(refs.size()));
    }
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
