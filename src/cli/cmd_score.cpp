// `thor score REF -i HYP`: corpus BLEU (sacreBLEU default) and chrF2 on stdout.
#include <cstdio>

#include "cli/commands.h"
#include "thor/common/error.h"
#include "thor/data/corpus.h"
#include "thor/eval/metrics.h"

namespace thor::cli {

void add_score(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("score", "corpus BLEU and chrF2 of a hypothesis file against a reference");
  static std::string ref, hyp;
  cmd->add_option("ref", ref, "reference file, one sentence per line")->required();
  cmd->add_option("-i,--input", hyp, "hypothesis file (default: stdin)");
  cmd->callback([&common] {
    apply_common(common);
    auto refs = read_lines(ref);
    auto hyps = read_lines(hyp.empty() ? "/dev/stdin" : hyp);
    if (hyps.size() != refs.size())
      throw Error("score: " + (hyp.empty() ? std::string("stdin") : hyp) + " has " +
                  std::to_string(hyps.size()) + " lines but " + ref + " has " + std::to_string(refs.size()));
    auto b = corpus_bleu(hyps, refs);
    auto c = corpus_chrf(hyps, refs);
    std::printf("%s\n%s\n", b.format().c_str(), c.format().c_str());
    std::printf("BLEU signature: %s\nchrF2 signature: %s\n", BleuScore::signature().c_str(),
                ChrfScore::signature().c_str());
  });
}

}  // namespace thor::cli
