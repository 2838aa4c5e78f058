// See sampling.h.
#include "thor/data/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "thor/common/error.h"

namespace thor {

std::vector<double> temperature_shares(const std::vector<int64_t>& sizes, double temperature) {
  if (!(temperature > 0)) throw Error("--sampling-temperature must be > 0");
  std::vector<double> w;
  double sum = 0;
  for (auto n : sizes) {
    w.push_back(n > 0 ? std::pow(static_cast<double>(n), 1.0 / temperature) : 0.0);
    sum += w.back();
  }
  for (auto& x : w) x = sum > 0 ? x / sum : 0.0;
  return w;
}

std::vector<int64_t> sample_epoch(const std::vector<int64_t>& sizes, double temperature, uint64_t seed, int64_t epoch) {
  const auto share = temperature_shares(sizes, temperature);
  const auto total = static_cast<double>(std::accumulate(sizes.begin(), sizes.end(), int64_t{0}));
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) * 7919ULL + 1);
  std::vector<int64_t> examples;
  int64_t first = 0;
  for (size_t p = 0; p < sizes.size(); ++p) {
    const int64_t n = sizes[p];
    if (n > 0) {
      const auto m = static_cast<int64_t>(std::llround(share[p] * total));
      std::vector<int64_t> own(static_cast<size_t>(n));
      std::iota(own.begin(), own.end(), first);
      for (int64_t k = 0; k < m / n; ++k) examples.insert(examples.end(), own.begin(), own.end());
      std::shuffle(own.begin(), own.end(), rng);
      examples.insert(examples.end(), own.begin(), own.begin() + m % n);
    }
    first += n;
  }
  return examples;
}

}  // namespace thor
