// Decoder state for incremental decoding (CTranslate2's DecoderState idea): named tensors
// whose first dimension is the row (sentence x beam). Reordering beams or dropping
// finished sentences is one index_select per entry, whatever the model keeps.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

namespace thor {

using DecoderState = std::map<std::string, torch::Tensor>;

// Keeps rows `index` (int64 [N']) of every state tensor, in that order.
inline void reorder_state(DecoderState& state, const torch::Tensor& index) {
  for (auto& kv : state) kv.second = kv.second.index_select(0, index.to(kv.second.device()));
}

}  // namespace thor
