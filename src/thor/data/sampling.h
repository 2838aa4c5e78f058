// Sampling over the language pairs of a multilingual dataset with a temperature (fairseq's
// multilingual task, --sampling-temperature): pair p gets a share proportional to
// n_p^(1/T) of every epoch's examples. T = 1 keeps the sizes' proportions, T -> infinity
// makes the pairs equal.
#pragma once
#include <cstdint>
#include <vector>

namespace thor {

// Shares (summing to 1) of pairs of sizes `sizes` at temperature T > 0.
std::vector<double> temperature_shares(const std::vector<int64_t>& sizes, double temperature);

// One epoch's examples (indices into the pairs stored one after the other): as many as all
// pairs hold, pair p's round(share_p x total) of them drawn from its own examples, every one
// of them k times and a random subset of them for the rest (SampledMultiDataset's
// up- and down-sampling). Deterministic in (seed, epoch).
std::vector<int64_t> sample_epoch(const std::vector<int64_t>& sizes, double temperature, uint64_t seed, int64_t epoch);

}  // namespace thor
