// Label-smoothed cross entropy, as fairseq's label_smoothed_cross_entropy criterion:
//   loss = (1 - eps - eps/(V-1)) * nll + eps/(V-1) * sum_v(-log p_v), pad positions ignored.
#pragma once
#include <string>

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

// What THOR's consistency term compares (issue 14, item 6's hypothesis): the two passes'
// probabilities (the paper: symmetric KL, consistency_loss) or their logits (mean squared
// difference, consistency_logits_loss).
enum class Consistency { Probabilities, Logits };
// sum over the tokens where keep [N] is true of 1/2 * mean_v (z0 - z1)^2, logits z0, z1 [N, V].
torch::Tensor consistency_logits_loss(const torch::Tensor& z0, const torch::Tensor& z1, const torch::Tensor& keep);
Consistency parse_consistency(const std::string& name);  // probs | logits; thor::Error otherwise

}  // namespace thor

namespace thor {

// The training loss of G stacked passes in one sweep over the vocabulary (G = 1: dense,
// G = 2: THOR): logits [G*N, V] hold the passes one after the other, target [N] is shared.
//   loss = sum_g LS-CE(pass g) + alpha * consistency(pass 0, pass 1)   (alpha ignored for G = 1)
// with the consistency of `on` (probabilities: consistency_loss; logits: consistency_logits_loss).
// The gradient with respect to the logits is written once, in closed form, block of rows
// by block of rows while the block is in cache, instead of autograd keeping log-softmax,
// exp, differences and products as separate [G*N, V] tensors. Equal to label_smoothed_nll
// and consistency_loss (tested, loss and gradient).
struct FusedLossResult {
  torch::Tensor loss;      // differentiable scalar
  double ce = 0, nll = 0;  // label-smoothed CE and NLL summed over tokens, mean over passes
  double consistency = 0;  // summed consistency term (G = 2)
};
FusedLossResult fused_translation_loss(const torch::Tensor& logits, const torch::Tensor& target, int64_t groups,
                                       double epsilon, double alpha, int64_t pad,
                                       Consistency on = Consistency::Probabilities);

}  // namespace thor
