// Lexical shortlist (Marian's --shortlist, CTranslate2's vocabulary mapping): for every
// source token, the target tokens most associated with it in the training data (Dice
// coefficient of sentence co-occurrence), plus the most frequent target tokens. A batch is
// decoded over the union of its source tokens' candidates only: the output projection,
// log-softmax and top-k shrink from the whole vocabulary to a few hundred columns.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace thor {

struct Dataset;

struct Shortlist {
  int64_t vocab_size = 0;
  std::vector<int32_t> frequent;                 // in every batch's list
  std::vector<std::vector<int32_t>> candidates;  // [vocab_size]: per source token, best first

  // per_source: candidates kept per source token; frequent: most frequent target tokens kept.
  static Shortlist build(const Dataset& train, int64_t vocab_size, int64_t per_source, int64_t frequent);
  // Text file, written to path + ".tmp" and renamed.
  void save(const std::string& path) const;
  // Throws thor::Error naming the file and line.
  static Shortlist load(const std::string& path);
  // Sorted unique target ids [V'] (int64, CPU) for source ids src [B, S]: the candidates of
  // every token in src, the frequent list and `always` (e.g. eos and unk).
  torch::Tensor select(const torch::Tensor& src, const std::vector<int64_t>& always) const;
};

}  // namespace thor
