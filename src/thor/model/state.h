// Decoder state for incremental decoding (CTranslate2's DecoderState idea): named tensors
// whose first dimension is either the row (sentence x beam: self-attention caches) or the
// sentence (encoder keys/values, source mask, sentence-level expert draws), which all
// beams of a sentence share instead of carrying `beam` identical copies. Reordering beams
// or dropping finished sentences is one index_select per row entry; sentence entries are
// only touched when the set of sentences changes.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

namespace thor {

struct DecoderState {
  std::map<std::string, torch::Tensor> rows;       // [sentences * beam, ...]
  std::map<std::string, torch::Tensor> sentences;  // [sentences, ...]
  int64_t beam = 1;                                // rows per sentence, consecutive
};

// Keeps rows `index` (int64 [N']) in that order, N' = sentences' * beam: rows
// [i * beam, (i + 1) * beam) must all come from one old sentence, which becomes sentence i.
inline void reorder_state(DecoderState& st, const torch::Tensor& index, int64_t beam) {
  TORCH_CHECK(beam >= 1 && index.numel() % beam == 0, "reorder_state: rows must come in blocks of beam");
  auto rows = index.to(torch::kCPU).contiguous();
  auto is_identity = [](const torch::Tensor& idx, int64_t n) {
    return idx.numel() == n && torch::equal(idx, torch::arange(n, idx.options()));
  };
  if (!st.sentences.empty()) {
    auto sent = rows.view({-1, beam}).select(1, 0).div(st.beam, "floor");
    if (!is_identity(sent, st.sentences.begin()->second.size(0)))
      for (auto& kv : st.sentences) kv.second = kv.second.index_select(0, sent.to(kv.second.device()));
  }
  // Greedy search keeps every row in place until a sentence finishes: no copy then.
  if (!st.rows.empty() && !is_identity(rows, st.rows.begin()->second.size(0)))
    for (auto& kv : st.rows) kv.second = kv.second.index_select(0, index.to(kv.second.device()));
  st.beam = beam;
}

}  // namespace thor
