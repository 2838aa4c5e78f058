// Padding removed (inference): the tokens of a right-padded [B, S] batch packed into [T, ...]
// rows, so position-wise work (projections, feed-forward blocks, layer norms) runs on the T
// real tokens only, and unpacked where a sentence's positions must line up (attention).
// Joined sentences in `thor serve` come in small groups of mixed lengths: their encoder
// pass spent ~40 % of its products on padding.
#pragma once
#include <cstdint>

#include <torch/torch.h>

namespace thor {

struct Packing {
  torch::Tensor index;  // int64 [T]: flat positions b * S + s of the tokens, in order
  int64_t batch = 0, len = 0;

  static Packing of(const torch::Tensor& pad_mask);  // [B, S] bool, true = padding
  int64_t tokens() const { return index.size(0); }
  torch::Tensor pack(const torch::Tensor& x) const;     // [B, S, ...] -> [T, ...]
  torch::Tensor unpack(const torch::Tensor& xp) const;  // [T, ...] -> [B, S, ...], zeros at padding
  torch::Tensor rows() const;                            // int64 [T]: each token's sentence
};

}  // namespace thor
