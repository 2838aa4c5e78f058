// Paired bootstrap resampling for BLEU (Koehn 2004), as sacreBLEU's --paired-bs computes it:
// the same resampled sentence sets for every system, each sample's BLEU from the summed
// sufficient statistics, mean and 95 % interval (half-width between the 2.5th and 97.5th
// sorted samples: index n/40 and n - n/40 - 1) per system, and against the first system the
// p-value p = (c + 1) / (n + 1), c = #samples whose |BLEU_sys - BLEU_base| minus its mean
// over the samples exceeds the observed |difference| (strictly, as sacreBLEU after multeval:
// a system against itself gets 1 / (n + 1), a zero difference not being put down to chance;
// read p together with the difference). The sample indices come from our own
// generator (seeded, 12345 by default), so the figures are sacreBLEU's method, not its
// random draws.
#pragma once
#include <cstdint>
#include <vector>

#include "thor/eval/metrics.h"

namespace thor {

struct BootstrapResult {
  double score = 0;    // BLEU of the whole test set
  double mean = 0;     // mean BLEU over the samples
  double ci = 0;       // half-width of the 95 % interval
  double p_value = -1; // against system 0 (-1 for system 0 itself)
};

// samples x n sentence indices drawn with replacement.
std::vector<std::vector<uint32_t>> bootstrap_indices(size_t n, int samples, uint64_t seed);

// per_sentence[s][i]: the BLEU statistics of system s on sentence i (every system the same n).
std::vector<BootstrapResult> paired_bootstrap(const std::vector<std::vector<BleuStats>>& per_sentence,
                                              const std::vector<std::vector<uint32_t>>& indices);

// One BleuStats per sentence.
std::vector<BleuStats> sentence_stats(const std::vector<std::string>& hyps, const std::vector<std::string>& refs);

}  // namespace thor
