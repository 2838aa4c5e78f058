// See significance.h.
#include "thor/eval/significance.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "thor/common/error.h"

namespace thor {

std::vector<std::vector<uint32_t>> bootstrap_indices(size_t n, int samples, uint64_t seed) {
  if (n == 0) throw Error("bootstrap: no sentences");
  if (samples < 1) throw Error("bootstrap: need at least one sample");
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint32_t> pick(0, static_cast<uint32_t>(n - 1));
  std::vector<std::vector<uint32_t>> idx(static_cast<size_t>(samples), std::vector<uint32_t>(n));
  for (auto& row : idx)
    for (auto& i : row) i = pick(rng);
  return idx;
}

std::vector<BleuStats> sentence_stats(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  if (hyps.size() != refs.size())
    throw Error("BLEU: " + std::to_string(hyps.size()) + " hypotheses but " + std::to_string(refs.size()) +
                " references");
  std::vector<BleuStats> out;
  out.reserve(hyps.size());
  for (size_t i = 0; i < hyps.size(); ++i) out.push_back(bleu_stats({hyps[i]}, {refs[i]}));
  return out;
}

std::vector<BootstrapResult> paired_bootstrap(const std::vector<std::vector<BleuStats>>& per_sentence,
                                              const std::vector<std::vector<uint32_t>>& indices) {
  const size_t systems = per_sentence.size(), samples = indices.size();
  if (systems == 0) return {};
  std::vector<BootstrapResult> res(systems);
  std::vector<std::vector<double>> scores(systems, std::vector<double>(samples));
  for (size_t s = 0; s < systems; ++s) {
    if (per_sentence[s].size() != per_sentence[0].size())
      throw Error("bootstrap: system " + std::to_string(s) + " has " + std::to_string(per_sentence[s].size()) +
                  " sentences, system 0 has " + std::to_string(per_sentence[0].size()));
    BleuStats all;
    for (const auto& st : per_sentence[s]) all += st;
    res[s].score = bleu_from_stats(all).score;
    for (size_t k = 0; k < samples; ++k) {
      BleuStats sum;
      for (uint32_t i : indices[k]) sum += per_sentence[s][i];
      scores[s][k] = bleu_from_stats(sum).score;
    }
    auto sorted = scores[s];
    std::sort(sorted.begin(), sorted.end());
    double mean = 0;
    for (double x : sorted) mean += x;
    res[s].mean = mean / static_cast<double>(samples);
    const size_t lower = samples / 40, upper = samples - lower - 1;
    res[s].ci = 0.5 * (sorted[upper] - sorted[lower]);
  }
  for (size_t s = 1; s < systems; ++s) {
    const double observed = std::abs(res[s].score - res[0].score);
    std::vector<double> diff(samples);
    double mean = 0;
    for (size_t k = 0; k < samples; ++k) mean += diff[k] = std::abs(scores[s][k] - scores[0][k]);
    mean /= static_cast<double>(samples);
    size_t c = 0;
    for (double d : diff) c += (d - mean) > observed;
    res[s].p_value = static_cast<double>(c + 1) / static_cast<double>(samples + 1);
  }
  return res;
}

}  // namespace thor
