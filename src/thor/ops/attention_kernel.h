// Scaled-dot-product attention without autograd, in one pass per (sentence, head): scores,
// masking, softmax and the weighted sum of values for each query row, written straight
// into [B, T, H * Dh] (the layout the output projection reads). For decoding, where the
// matrices are tiny (one query row per beam, a few dozen keys) and LibTorch's batched
// products, masked_fill, softmax and the head transpose cost more in calls and copies than
// in arithmetic. Training (autograd, dropout) keeps the composite path.
#pragma once
#include <torch/torch.h>

namespace thor {

// q [B, H, T, Dh] (already scaled), k, v [B, H, S, Dh] (any strides), key_padding_mask
// [B, S] (true = padding) or undefined; causal: query i sees keys j <= i + S - T.
// Returns [B, T, H * Dh]. CPU, float32. A query row whose keys are all masked gets zeros.
torch::Tensor attention_inference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& key_padding_mask, bool causal);

// One decoding step over a paged history: q [N, H, 1, Dh]; k_buf, v_buf [rows, capacity,
// H, Dh] where position j of row i's history is in row history[i, j] (int64 [N, >= len]).
// A beam reorder then permutes `history` only, never the cached keys and values.
// first (int64 [N], optional): row i attends to positions [first[i], len) only, the
// positions it has decoded itself when sentences join a running batch at different steps.
// Returns [N, 1, H * Dh].
torch::Tensor attention_paged(const torch::Tensor& q, const torch::Tensor& k_buf, const torch::Tensor& v_buf,
                              const torch::Tensor& history, int64_t len, const torch::Tensor& first = {});

}  // namespace thor
