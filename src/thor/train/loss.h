// Label-smoothed cross entropy, as fairseq's label_smoothed_cross_entropy criterion:
//   loss = (1 - eps - eps/(V-1)) * nll + eps/(V-1) * sum_v(-log p_v), pad positions ignored.
#pragma once
#include <torch/torch.h>

namespace thor {

struct LossResult {
  torch::Tensor loss;  // scalar, summed over non-pad tokens (what backward() uses)
  torch::Tensor nll;   // scalar, summed plain negative log-likelihood
};

// logits [N, V] (or [.., V]); target [N] (or matching leading dims).
LossResult label_smoothed_nll(const torch::Tensor& logits, const torch::Tensor& target,
                              double epsilon, int64_t pad);
// The same from log-probabilities lprobs [N, V] (float).
LossResult label_smoothed_nll_lprobs(const torch::Tensor& lprobs, const torch::Tensor& target,
                                     double epsilon, int64_t pad);

// THOR's consistency regulariser (Zuo et al. 2022, Eq. 2), summed over the tokens where
// keep [N] is true:  sum_tokens 1/2 sum_v (p - q)(log p - log q), with p = exp(lp),
// q = exp(lq) from log-softmax outputs lp, lq [N, V] (no log of an underflowed probability).
torch::Tensor consistency_loss(const torch::Tensor& lp, const torch::Tensor& lq, const torch::Tensor& keep);

}  // namespace thor
