// Multi-head attention (Vaswani et al. 2017) with an incremental path for decoding.
// Layout is batch-first everywhere: [B, T, C]; per-head tensors are [B, H, T, Dh].
#pragma once
#include <array>
#include <map>
#include <vector>

#include <torch/torch.h>

#include "thor/model/packing.h"
#include "thor/ops/derived_cache.h"

namespace thor {

class MultiheadAttentionImpl : public torch::nn::Module {
 public:
  MultiheadAttentionImpl(int64_t dim, int64_t heads, double dropout);

  // query [B, T, C], key_value [B, S, C], key_padding_mask [B, S] bool (true = pad) or
  // undefined; causal masks future positions (requires T == S). Returns [B, T, C].
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& key_value,
                        const torch::Tensor& key_padding_mask, bool causal);

  // [B, S, C] -> keys and values per head, each [B, H, S, Dh] (cached during decoding),
  // from one product with the k and v weights side by side. With `packed`, key_value is
  // the batch's packed tokens [T, C] (the heads are still [B, H, S, Dh], zeros at padding).
  std::pair<torch::Tensor, torch::Tensor> project_kv(const torch::Tensor& key_value, const Packing* packed = nullptr);

  // Self-attention inputs: [B, T, C] -> scaled queries, keys, values per head [B, H, T, Dh],
  // from one product with the q, k and v weights side by side (`packed`: as project_kv).
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> project_qkv(const torch::Tensor& x,
                                                                      const Packing* packed = nullptr);

  // Self-attention of a packed batch (inference, CPU float32): x [T, C] -> [T, C]; the
  // projections run on the T tokens, the attention on the [B, S] layout under its mask.
  torch::Tensor self_attend_packed(const torch::Tensor& x, const Packing& packed, const torch::Tensor& key_padding_mask);

  // Attention of query [B, T, C] over per-head k, v [B, H, S, Dh]. Returns [B, T, C].
  torch::Tensor attend(const torch::Tensor& query, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& key_padding_mask, bool causal);

  // The same from scaled per-head queries q [B, H, T, Dh].
  torch::Tensor attend_heads(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& key_padding_mask, bool causal);
  // One decoding step over a paged self-attention history (see DecoderState): q [N, H, 1, Dh]
  // against the cache buffers, then the output projection. No autograd, CPU float32.
  // first (optional, int64 [N]): each row's first position (see attention_paged).
  torch::Tensor attend_paged(const torch::Tensor& q, const torch::Tensor& k_buf, const torch::Tensor& v_buf,
                             const torch::Tensor& history, int64_t len, const torch::Tensor& first = {});

  int64_t heads() const { return heads_; }

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};

 private:
  torch::Tensor split_heads(const torch::Tensor& x) const;  // [B, T, C] -> [B, H, T, Dh]
  // x [B, T, C] (or packed [T', C]) through n of the q/k/v projections at once -> n tensors [B, H, T, Dh]
  std::vector<torch::Tensor> project_fused(const torch::Tensor& x, const std::vector<torch::nn::Linear*>& proj,
                                           const Packing* packed);
  // Without autograd (decoding, validation) the concatenated weights are kept while the
  // parameters are unchanged: one cache per projection set (q/k/v, k/v).
  std::array<DerivedCache, 4> fused_;  // indexed by the number of fused projections
  int64_t dim_, heads_, head_dim_;
  double dropout_;
};
TORCH_MODULE(MultiheadAttention);

}  // namespace thor
