// See translator.h.
#include "thor/decode/translator.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <numeric>

#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/common/runtime.h"
#include "thor/common/utf8.h"
#include "thor/data/corpus.h"
#include "thor/data/dataset.h"
#include "thor/data/meta.h"

namespace thor {

int target_lang_prefix(const nlohmann::json& meta, const Vocab& vocab, const std::string& lang) {
  const bool tagged = meta.is_object() && meta.value("target_tags", false);
  const std::string targets = meta.is_object() ? meta.value("tgt_lang", std::string()) : std::string();
  if (!tagged) {
    if (!lang.empty() && !targets.empty() && lang != targets)
      throw Error("--target-lang " + lang + ": this model translates into " + targets + " only");
    return -1;
  }
  if (lang.empty())
    throw Error("this model is multilingual (target languages " + targets + "): give --target-lang");
  const int id = vocab.piece_to_id(lang_tag(lang));
  bool known = false;
  for (const auto& p : meta.value("pairs", nlohmann::json::array())) known = known || p.value("tgt", "") == lang;
  if (!known || id == Vocab::kUnk)
    throw Error("--target-lang " + lang + ": this model translates into " + targets);
  return id;
}

SearchOptions search_options_for(const ModelConfig& cfg, SearchOptions so) {
  so.pad = cfg.pad_id, so.bos = cfg.bos_id, so.eos = cfg.eos_id;
  // Keep outputs within the model's position table.
  so.max_len_limit = cfg.max_positions - 1;
  return so;
}

Translation to_translation(const Vocab& vocab, const Hypothesis& h) {
  std::vector<int> toks(h.tokens.begin(), h.tokens.end());
  return {vocab.decode(toks), h.score, static_cast<int64_t>(h.tokens.size())};
}

std::vector<Source> encode_sources(const Vocab& vocab, const std::vector<std::string>& lines, int source_prefix,
                                   int64_t max_positions, int64_t* invalid, int64_t* first_invalid,
                                   int64_t* truncated, int64_t* first_truncated) {
  std::vector<Source> out(lines.size());
  int64_t invalid_lines = 0, long_lines = 0, first_bad = 0, first_long = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    out[i].blank = is_blank(lines[i]);
    int64_t replaced = 0;
    const std::string clean = replace_invalid_utf8(lines[i], &replaced);
    if (replaced > 0 && invalid_lines++ == 0) first_bad = static_cast<int64_t>(i) + 1;
    if (out[i].blank) continue;
    auto& ids = out[i].ids;
    ids = vocab.encode(clean);
    if (source_prefix >= 0) ids.insert(ids.begin(), source_prefix);
    if (static_cast<int64_t>(ids.size()) > max_positions - 1) {
      if (long_lines++ == 0) first_long = static_cast<int64_t>(i) + 1;
      ids.resize(static_cast<size_t>(max_positions - 1));
    }
  }
  if (invalid) *invalid = invalid_lines;
  if (first_invalid) *first_invalid = first_bad;
  if (truncated) *truncated = long_lines;
  if (first_truncated) *first_truncated = first_long;
  return out;
}

std::vector<std::vector<Translation>> translate_lines(Transformer& model, const Vocab& vocab,
                                                      const std::vector<std::string>& lines,
                                                      const TranslateOptions& opt,
                                                      const torch::Device& device) {
  const int64_t max_positions = model->config().max_positions;
  // Invalid UTF-8 is replaced (U+FFFD) and sources beyond the model's positions truncated,
  // each with a warning naming the first such line: the line count never changes.
  int64_t invalid_lines = 0, long_lines = 0, first_invalid = 0, first_long = 0;
  auto sources = encode_sources(vocab, lines, opt.source_prefix, max_positions, &invalid_lines, &first_invalid,
                                &long_lines, &first_long);
  if (invalid_lines > 0)
    THOR_WARN("translate") << invalid_lines << " input line(s) with invalid UTF-8 (the first: line " << first_invalid
                           << "): invalid bytes replaced by U+FFFD";
  if (long_lines > 0)
    THOR_WARN("translate") << long_lines << " input line(s) longer than the model's " << max_positions - 1
                           << " source positions (the first: line " << first_long << "): truncated";
  return translate_sources(model, vocab, sources, opt, device);
}

std::vector<std::vector<Translation>> translate_sources(Transformer& model, const Vocab& vocab,
                                                        const std::vector<Source>& sources,
                                                        const TranslateOptions& opt, const torch::Device& device) {
  torch::NoGradGuard ng;
  bool was_training = model->is_training();
  model->eval();
  const auto& cfg = model->config();
  const SearchOptions so = search_options_for(cfg, opt.search);

  // a blank line translates to an empty line without being decoded
  std::vector<size_t> order;
  for (size_t i = 0; i < sources.size(); ++i)
    if (!sources[i].blank) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sources[a].ids.size() > sources[b].ids.size(); });

  if (opt.shortlist && opt.shortlist->vocab_size != model->output_projection.size(0))
    throw Error("--shortlist: built for a vocabulary of " + std::to_string(opt.shortlist->vocab_size) +
                " tokens, the model has " + std::to_string(model->output_projection.size(0)));
  const auto num_batches = static_cast<int64_t>((order.size() + static_cast<size_t>(opt.batch_size) - 1) /
                                                 static_cast<size_t>(opt.batch_size));
  int64_t workers = opt.workers > 0 ? opt.workers : (device.is_cpu() ? at::get_num_threads() : 1);
  // Random expert draws come from the batch's own generator (below), except on other devices,
  // where token-level draws use the device's global generator at every step: their order, and
  // so the output, would depend on scheduling.
  if (!device.is_cpu() && model->stochastic_experts() && model->expert_select() == ExpertSelect::Token) workers = 1;
  workers = std::max<int64_t>(1, std::min(workers, num_batches));

  std::vector<std::vector<Translation>> out(sources.size());
  for (size_t i = 0; i < sources.size(); ++i)
    if (sources[i].blank) out[i].push_back({"", 0.0, 0});
  auto decode_batch = [&](TransformerStepModel& step_model, int64_t b) {
    const size_t start = static_cast<size_t>(b * opt.batch_size);
    const size_t end = std::min(order.size(), start + static_cast<size_t>(opt.batch_size));
    std::vector<std::vector<int>> batch;
    for (size_t j = start; j < end; ++j) batch.push_back(sources[order[j]].ids);
    auto src = pad_sources(batch, cfg.pad_id, cfg.eos_id).to(device);
    // every random draw of this batch (sentence- or token-level experts) from its own generator:
    // outputs do not depend on the number of workers
    runtime::GeneratorScope rng(at::detail::createCPUGenerator(opt.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(b)));
    auto hyps = beam_search(step_model, src, so);
    for (size_t j = start; j < end; ++j) {
      auto& dst = out[order[j]];
      for (auto& h : hyps[j - start]) dst.push_back(to_translation(vocab, h));
      if (dst.empty()) dst.push_back({"", 0.0, 0});
    }
  };

  // Longest batches first (the order is sorted by length), each taken by whichever worker
  // is free.
  std::atomic<int64_t> next{0};
  std::mutex progress_mu;
  int64_t decoded = 0;
  auto work = [&] {
    TransformerStepModel step_model(model, opt.shortlist);
    for (int64_t b = next++; b < num_batches; b = next++) {
      if (opt.stop && opt.stop()) {
        next = num_batches;
        break;
      }
      decode_batch(step_model, b);
      if (opt.progress) {
        std::lock_guard<std::mutex> lock(progress_mu);
        decoded += std::min<int64_t>(opt.batch_size, static_cast<int64_t>(order.size()) - b * opt.batch_size);
        opt.progress(decoded);
      }
    }
  };
  runtime::run_workers(workers, [&](int64_t) {
    torch::NoGradGuard worker_ng;
    try {
      work();
    } catch (...) {
      next = num_batches;  // the others stop after their current batch
      throw;
    }
  });
  if (was_training) model->train();
  return out;
}

}  // namespace thor
