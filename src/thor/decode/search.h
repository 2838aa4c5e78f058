// Batched beam search over an abstract step model (fairseq's SequenceGenerator logic):
// 2*beam candidates per sentence and step; an eos among the top `beam` candidates
// finalises a hypothesis with score / length^lenpen; a sentence is done after `beam`
// finalised hypotheses, and its rows leave the batch. Beam 1 is greedy decoding.
// BeamStream runs it over a stream of sentences (continuous batching, the iteration-level
// scheduling of Orca, OSDI '22): sentences join the batch between two steps and leave it
// the step they finish, each searched exactly as it would be alone.
#pragma once
#include <cstdint>
#include <limits>
#include <utility>
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
  // The sentences src [n, S] join a running state, starting at its next position, with one
  // row each for their first step (admit_state; for BeamStream). Models that cannot throw
  // thor::Error (the default).
  virtual void admit(DecoderState& state, const torch::Tensor& src);
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

// Beam search as a stream: admit() sentences at any time, step() until active() is 0.
// A sentence gets the hypotheses beam_search gives it alone: the ones that join later
// attend to their own positions only (the model's admit), and a sentence that joins a
// batch past step 0 takes its first step on one row (as alone) before it widens to a beam.
class BeamStream {
 public:
  BeamStream(StepModel& model, const SearchOptions& opt);
  // src [n, S] right-padded; ids name the sentences in step()'s answers.
  void admit(const torch::Tensor& src, const std::vector<int64_t>& ids);
  // One decoding step of every active sentence -> the sentences that finished in it, each
  // with its nbest hypotheses, best first.
  std::vector<std::pair<int64_t, std::vector<Hypothesis>>> step();
  int64_t active() const { return static_cast<int64_t>(sentences_.size()); }
  // The state's positions now (the batch forgets positions no active row still reads).
  int64_t positions() const { return position_; }

 private:
  struct Sentence {
    int64_t id, max_len, start;  // start: the state position of its first step
    std::vector<Hypothesis> finished;
  };
  StepModel& model_;
  SearchOptions opt_;
  DecoderState state_;
  std::vector<int64_t> vocab_;  // the step's columns (a shortlist), empty: the vocabulary
  int64_t pad_col_ = -1, bos_col_ = -1, eos_col_ = -1;
  int64_t width_ = 1;  // rows per sentence: 1 before the first step, then beam
  int64_t position_ = 0;  // the batch's next step (the model's state.filled)
  std::vector<Sentence> sentences_;
  // per row: tokens so far (without bos), positional scores, cumulative score, last token
  std::vector<std::vector<int64_t>> tokens_;
  std::vector<std::vector<float>> pos_scores_;
  std::vector<float> scores_;
  std::vector<int64_t> last_;
};

}  // namespace thor
