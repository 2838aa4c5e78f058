// See router_switch.h.
#include "thor/moe/router_switch.h"

namespace thor {

SwitchRouterImpl::SwitchRouterImpl(const ModelConfig& c)
    : experts_(c.num_experts), capacity_factor_(c.capacity_factor),
      eval_capacity_factor_(c.eval_capacity_factor), balance_alpha_(c.balance_alpha), z_loss_(c.router_z_loss) {
  gate = register_module("gate", torch::nn::Linear(torch::nn::LinearOptions(c.d_model, c.num_experts).bias(false)));
}

torch::Tensor load_balancing_loss(const torch::Tensor& probs, const torch::Tensor& top1,
                                  const torch::Tensor& valid, int64_t experts, double alpha) {
  auto m = valid.to(probs.dtype()).unsqueeze(1);                        // [N, 1]
  auto n = m.sum().clamp_min(1);
  auto onehot = torch::one_hot(top1.clamp_min(0), experts).to(probs.dtype()) * m;  // [N, E]
  auto f = onehot.sum(0) / n;                                            // [E]
  auto P = (probs * m).sum(0) / n;                                       // [E]
  return alpha * static_cast<double>(experts) * (f * P).sum();
}

Routing SwitchRouterImpl::route(const RouterInput& in) {
  auto logits = gate(in.x).to(torch::kFloat);  // [N, E]
  auto probs = torch::softmax(logits, -1);
  auto top = probs.max(-1);
  auto p1 = std::get<0>(top), e1 = std::get<1>(top);  // [N]
  Routing r;
  r.aux["balance"] = load_balancing_loss(probs, e1, in.valid, experts_, balance_alpha_);
  if (z_loss_ > 0) r.aux["z"] = z_loss_ * router_z_loss(logits, in.valid);
  auto expert = e1.masked_fill(in.valid.logical_not(), -1).view({-1, 1}).clone();
  int64_t n_valid = in.valid.sum().item<int64_t>();
  double cf = is_training() ? capacity_factor_ : eval_capacity_factor_;
  if (cf > 0) {
    std::vector<int64_t> used(experts_, 0);
    apply_capacity(expert, 0, expert_capacity(cf, n_valid, 1, experts_), used);
  }
  r.expert = expert;
  r.weight = p1.view({-1, 1}).to(in.x.dtype());
  return r;
}

}  // namespace thor
