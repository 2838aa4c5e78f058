// Text in, text out: SentencePiece encoding, length-sorted batches, beam search with the
// Transformer's incremental decoder, detokenised output in input order.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "thor/data/vocab.h"
#include "thor/decode/search.h"
#include "thor/decode/shortlist.h"
#include "thor/model/transformer.h"

namespace thor {

class TransformerStepModel : public StepModel {
 public:
  // shortlist (optional, not owned): each batch scores only its source tokens' candidates.
  explicit TransformerStepModel(Transformer model, const Shortlist* shortlist = nullptr)
      : model_(std::move(model)), shortlist_(shortlist) {}
  DecoderState start(const torch::Tensor& src) override {
    auto st = model_->init_state(src);
    if (shortlist_) {
      const auto& c = model_->config();
      model_->restrict_output(st, shortlist_->select(src, {c.eos_id, c.unk_id}));
    }
    return st;
  }
  torch::Tensor step(const torch::Tensor& last, int64_t t, DecoderState& st) override {
    return torch::log_softmax(model_->step(last, t, st).to(torch::kFloat), -1);
  }
  // A shortlist is chosen for the sentences of one batch: with one, no sentence can join.
  void admit(DecoderState& st, const torch::Tensor& src) override {
    if (shortlist_) StepModel::admit(st, src);
    model_->admit(st, src);
  }

 private:
  Transformer model_;
  const Shortlist* shortlist_;
};

struct TranslateOptions {
  SearchOptions search;
  int64_t batch_size = 64;  // sentences per batch
  const Shortlist* shortlist = nullptr;  // optional vocabulary shortlist (not owned)
  // Batches decoded in parallel by `workers` threads sharing the model, each with
  // threads / workers intra-op threads (Marian's --cpu-threads, CTranslate2's inter_threads):
  // one decoding step is too small to keep several cores busy. 0 = auto: on the CPU as many
  // workers as intra-op threads (at most one per batch), elsewhere 1. Outputs do not depend
  // on the number of workers: each batch draws its sentence-level experts from a generator
  // seeded with (seed, batch index).
  int64_t workers = 0;
  uint64_t seed = 1;
  // Token id put before every source (a multilingual model's target-language tag, as
  // `thor prepare --lang-pairs` put it in the training data); -1: none.
  int source_prefix = -1;
  // Asked before each batch: once it returns true no further batch starts (the ones being
  // decoded finish) and the lines not decoded get no translation (an empty list).
  std::function<bool()> stop;
  // Called (from the decoding threads, one at a time) with the sentences decoded so far.
  std::function<void(int64_t)> progress;
};

// The source prefix for `--target-lang LANG` with a model trained on `meta` (its checkpoint's
// train_state["meta"]): the tag's id for a multilingual model (an Error names the languages
// it knows when LANG is not one, or when LANG is empty), -1 for a bilingual one (whose
// target, when LANG is given, must be LANG).
int target_lang_prefix(const nlohmann::json& meta, const Vocab& vocab, const std::string& lang);

struct Translation {
  std::string text;
  double score = 0;
  int64_t length = 0;  // output subword tokens, end of sentence included
};

// A source sentence as the model reads it: its token ids (the tag of a multilingual model
// first, at most the model's positions), or blank (translated to an empty line undecoded).
struct Source {
  std::vector<int> ids;
  bool blank = false;
};

// Encodes input lines as translate_lines does: invalid UTF-8 replaced (U+FFFD), the
// source_prefix put first, lines beyond max_positions - 1 tokens truncated. Counts of the
// repaired and truncated lines go to *invalid / *truncated, the 1-based number of the first
// of each to *first_invalid / *first_truncated (any of them may be null).
std::vector<Source> encode_sources(const Vocab& vocab, const std::vector<std::string>& lines, int source_prefix,
                                   int64_t max_positions, int64_t* invalid = nullptr, int64_t* first_invalid = nullptr,
                                   int64_t* truncated = nullptr, int64_t* first_truncated = nullptr);

// The search options for a model: its pad / bos / eos ids, outputs within its positions.
SearchOptions search_options_for(const ModelConfig& cfg, SearchOptions so);

// A hypothesis as text (detokenised), its score and length.
Translation to_translation(const Vocab& vocab, const Hypothesis& h);

// Decodes encoded sources (opt.source_prefix is not used: it is in the ids): per source, its
// nbest translations (best first); sources sorted by length into batches of opt.batch_size.
std::vector<std::vector<Translation>> translate_sources(Transformer& model, const Vocab& vocab,
                                                        const std::vector<Source>& sources,
                                                        const TranslateOptions& opt, const torch::Device& device);

// Returns, per input line, its nbest translations (best first): encode_sources (with a
// warning naming the first repaired and the first truncated line) + translate_sources.
std::vector<std::vector<Translation>> translate_lines(Transformer& model, const Vocab& vocab,
                                                      const std::vector<std::string>& lines,
                                                      const TranslateOptions& opt,
                                                      const torch::Device& device);

}  // namespace thor
