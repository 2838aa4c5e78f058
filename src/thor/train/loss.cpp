// See loss.h.
#include "thor/train/loss.h"

namespace thor {

LossResult label_smoothed_nll(const torch::Tensor& logits, const torch::Tensor& target,
                              double epsilon, int64_t pad) {
  auto V = logits.size(-1);
  return label_smoothed_nll_lprobs(torch::log_softmax(logits.reshape({-1, V}).to(torch::kFloat), -1), target,
                                   epsilon, pad);
}

LossResult label_smoothed_nll_lprobs(const torch::Tensor& lprobs, const torch::Tensor& target,
                                     double epsilon, int64_t pad) {
  auto V = lprobs.size(-1);
  auto tgt = target.reshape({-1, 1});
  auto keep = tgt.ne(pad).to(torch::kFloat);  // [N, 1]
  auto nll = -(lprobs.gather(1, tgt) * keep).sum();
  auto smooth = -(lprobs.sum(-1, true) * keep).sum();
  double eps_i = V > 1 ? epsilon / static_cast<double>(V - 1) : 0.0;
  auto loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth;
  return {loss, nll};
}

torch::Tensor consistency_loss(const torch::Tensor& lp, const torch::Tensor& lq, const torch::Tensor& keep) {
  auto per_token = 0.5 * ((lp.exp() - lq.exp()) * (lp - lq)).sum(-1);  // [N]
  return (per_token * keep.reshape({-1}).to(per_token.dtype())).sum();
}

}  // namespace thor
