// Batched beam search over an abstract step model (fairseq's SequenceGenerator logic):
// 2*beam candidates per sentence and step; an eos among the top `beam` candidates
// finalises a hypothesis with score / length^lenpen; a sentence is done after `beam`
// finalised hypotheses, and its rows leave the batch. Beam 1 is greedy decoding.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include <torch/torch.h>

#include "thor/model/state.h"

namespace thor {

// What beam search needs from a model. Every state tensor has rows first.
class StepModel {
 public:
  virtual ~StepModel() = default;
  // src [B, S] -> state with B rows.
  virtual DecoderState start(const torch::Tensor& src) = 0;
  // last [N] token ids (bos at step 0) -> log-probabilities [N, V] over the next token.
  virtual torch::Tensor step(const torch::Tensor& last, int64_t step, DecoderState& state) = 0;
};

struct SearchOptions {
  int64_t beam = 5;
  double lenpen = 1.0;
  double max_len_a = 0.0;  // max output length = a * src_len + b (tokens, without eos)
  int64_t max_len_b = 200;
  int64_t max_len_limit = std::numeric_limits<int64_t>::max();  // output tokens at most (the model's positions)
  int64_t nbest = 1;
  int64_t bos = 2, eos = 3, pad = 0;
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // without bos, ending in eos
  double score = 0;             // sum of log-probs / len^lenpen
  std::vector<float> positional_scores;
};

// src [B, S] right-padded (pad = opt.pad) -> for each sentence its nbest hypotheses, best first.
std::vector<std::vector<Hypothesis>> beam_search(StepModel& model, const torch::Tensor& src,
                                                 const SearchOptions& opt);

}  // namespace thor
