// See translator.h.
#include "thor/decode/translator.h"

#include <algorithm>
#include <numeric>

#include "thor/common/error.h"
#include "thor/data/dataset.h"

namespace thor {

std::vector<std::vector<Translation>> translate_lines(Transformer& model, const Vocab& vocab,
                                                      const std::vector<std::string>& lines,
                                                      const TranslateOptions& opt,
                                                      const torch::Device& device) {
  torch::NoGradGuard ng;
  bool was_training = model->is_training();
  model->eval();
  const auto& cfg = model->config();
  SearchOptions so = opt.search;
  so.pad = cfg.pad_id, so.bos = cfg.bos_id, so.eos = cfg.eos_id;
  // Keep outputs within the model's position table.
  so.max_len_b = std::min<int64_t>(so.max_len_b, cfg.max_positions - 1);

  std::vector<std::vector<int>> ids(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    ids[i] = vocab.encode(lines[i]);
    if (static_cast<int64_t>(ids[i].size()) > cfg.max_positions - 1) ids[i].resize(cfg.max_positions - 1);
  }
  std::vector<size_t> order(lines.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a].size() > ids[b].size(); });

  if (opt.shortlist && opt.shortlist->vocab_size != model->output_projection.size(0))
    throw Error("--shortlist: built for a vocabulary of " + std::to_string(opt.shortlist->vocab_size) +
                " tokens, the model has " + std::to_string(model->output_projection.size(0)));
  TransformerStepModel step_model(model, opt.shortlist);
  std::vector<std::vector<Translation>> out(lines.size());
  for (size_t start = 0; start < order.size(); start += opt.batch_size) {
    size_t end = std::min(order.size(), start + static_cast<size_t>(opt.batch_size));
    std::vector<std::vector<int>> batch;
    for (size_t j = start; j < end; ++j) batch.push_back(ids[order[j]]);
    auto src = pad_sources(batch, cfg.pad_id, cfg.eos_id).to(device);
    auto hyps = beam_search(step_model, src, so);
    for (size_t j = start; j < end; ++j) {
      auto& dst = out[order[j]];
      for (auto& h : hyps[j - start]) {
        std::vector<int> toks(h.tokens.begin(), h.tokens.end());
        dst.push_back({vocab.decode(toks), h.score, static_cast<int64_t>(h.tokens.size())});
      }
      if (dst.empty()) dst.push_back({"", 0.0, 0});
    }
  }
  if (was_training) model->train();
  return out;
}

}  // namespace thor
