// See attention.h.
#include "thor/model/attention.h"

#include <cmath>
#include <limits>

#include "thor/ops/dropout.h"
#include "thor/ops/attention_kernel.h"
#include "thor/ops/gemm.h"

namespace thor {

MultiheadAttentionImpl::MultiheadAttentionImpl(int64_t dim, int64_t heads, double dropout)
    : dim_(dim), heads_(heads), head_dim_(dim / heads), dropout_(dropout) {
  TORCH_CHECK(dim % heads == 0, "attention: dim ", dim, " not divisible by heads ", heads);
  q_proj = register_module("q_proj", torch::nn::Linear(dim, dim));
  k_proj = register_module("k_proj", torch::nn::Linear(dim, dim));
  v_proj = register_module("v_proj", torch::nn::Linear(dim, dim));
  out_proj = register_module("out_proj", torch::nn::Linear(dim, dim));
  // fairseq's initialisation: scaled xavier for the input projections.
  double gain = 1.0 / std::sqrt(2.0);
  for (auto* l : {&q_proj, &k_proj, &v_proj}) {
    torch::nn::init::xavier_uniform_((*l)->weight, gain);
    torch::nn::init::zeros_((*l)->bias);
  }
  torch::nn::init::xavier_uniform_(out_proj->weight);
  torch::nn::init::zeros_(out_proj->bias);
}

torch::Tensor MultiheadAttentionImpl::split_heads(const torch::Tensor& x) const {
  auto B = x.size(0), T = x.size(1);
  return x.view({B, T, heads_, head_dim_}).transpose(1, 2);  // [B, H, T, Dh]
}

std::vector<torch::Tensor> MultiheadAttentionImpl::project_fused(const torch::Tensor& x,
                                                                 const std::vector<torch::nn::Linear*>& proj,
                                                                 const Packing* packed) {
  // One [*, C] x [C, n*C] product instead of n products of a third of the width; the
  // parameters stay separate (checkpoints unchanged), their concatenation costs n*C*C copies
  // per call in training and once per parameter change without autograd.
  std::vector<torch::Tensor> w, b, params;
  for (auto* p : proj) w.push_back((*p)->weight), b.push_back((*p)->bias);
  const auto n = static_cast<int64_t>(proj.size());
  auto make = [&] { return std::vector<torch::Tensor>{torch::cat(w, 0), torch::cat(b, 0)}; };
  std::vector<torch::Tensor> fused;
  if (torch::GradMode::is_enabled()) {
    fused = make();
  } else {
    params = w;
    params.insert(params.end(), b.begin(), b.end());
    fused = fused_.at(proj.size()).get(params, make);
  }
  const auto& fw = fused[0];
  const auto& fb = fused[1];
  auto y = linear(x, fw, fb);  // [B, T, n*C]
  if (packed) y = packed->unpack(y);
  auto B = y.size(0), T = y.size(1);
  y = y.view({B, T, n, heads_, head_dim_});
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(y.select(2, i).transpose(1, 2));  // [B, H, T, Dh]
  return out;
}

std::pair<torch::Tensor, torch::Tensor> MultiheadAttentionImpl::project_kv(const torch::Tensor& kv,
                                                                          const Packing* packed) {
  auto p = project_fused(kv, {&k_proj, &v_proj}, packed);
  return {p[0], p[1]};
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> MultiheadAttentionImpl::project_qkv(const torch::Tensor& x,
                                                                                           const Packing* packed) {
  auto p = project_fused(x, {&q_proj, &k_proj, &v_proj}, packed);
  return {p[0] * (1.0 / std::sqrt(static_cast<double>(head_dim_))), p[1], p[2]};
}

torch::Tensor MultiheadAttentionImpl::self_attend_packed(const torch::Tensor& x, const Packing& packed,
                                                         const torch::Tensor& kpm) {
  auto [q, k, v] = project_qkv(x, &packed);
  return linear(packed.pack(attention_inference(q, k, v, kpm, false)), out_proj->weight, out_proj->bias);
}

torch::Tensor MultiheadAttentionImpl::attend(const torch::Tensor& query, const torch::Tensor& k,
                                             const torch::Tensor& v, const torch::Tensor& kpm,
                                             bool causal) {
  auto q = split_heads(linear(query, q_proj->weight, q_proj->bias) * (1.0 / std::sqrt(static_cast<double>(head_dim_))));
  return attend_heads(q, k, v, kpm, causal);
}

torch::Tensor MultiheadAttentionImpl::attend_heads(const torch::Tensor& q, const torch::Tensor& k,
                                                   const torch::Tensor& v, const torch::Tensor& kpm,
                                                   bool causal) {
  auto B = q.size(0), T = q.size(2), S = k.size(2);
  if (!torch::GradMode::is_enabled() && !is_training() && q.device().is_cpu() && q.scalar_type() == torch::kFloat)
    return linear(attention_inference(q, k, v, kpm, causal), out_proj->weight, out_proj->bias);
  auto scores = batched_matmul(q, k.transpose(-1, -2));  // [B, H, T, S]
  const float ninf = -std::numeric_limits<float>::infinity();
  if (causal) {
    TORCH_CHECK(T == S, "causal attention needs T == S");
    auto future = torch::ones({T, S}, torch::TensorOptions().dtype(torch::kBool).device(q.device()))
                      .triu(1);
    scores.masked_fill_(future, ninf);
  }
  if (kpm.defined()) scores.masked_fill_(kpm.view({B, 1, 1, S}), ninf);
  auto probs = torch::softmax(scores, -1);
  probs = thor::dropout(probs, dropout_, is_training());
  auto out = batched_matmul(probs, v);  // [B, H, T, Dh]
  return linear(out.transpose(1, 2).reshape({B, T, dim_}), out_proj->weight, out_proj->bias);
}

torch::Tensor MultiheadAttentionImpl::attend_paged(const torch::Tensor& q, const torch::Tensor& k_buf,
                                                   const torch::Tensor& v_buf, const torch::Tensor& history,
                                                   int64_t len, const torch::Tensor& first) {
  return linear(attention_paged(q, k_buf, v_buf, history, len, first), out_proj->weight, out_proj->bias);
}

torch::Tensor MultiheadAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& kv,
                                              const torch::Tensor& kpm, bool causal) {
  if (query.is_same(kv)) {
    auto [q, k, v] = project_qkv(query);
    return attend_heads(q, k, v, kpm, causal);
  }
  auto [k, v] = project_kv(kv);
  return attend(query, k, v, kpm, causal);
}

}  // namespace thor
