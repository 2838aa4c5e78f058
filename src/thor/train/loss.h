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

}  // namespace thor
