// See router_switch.h.
#include "thor/moe/router_switch.h"

namespace thor {

SwitchRouterImpl::SwitchRouterImpl(const ModelConfig& c)
    : experts_(c.num_experts), capacity_factor_(c.capacity_factor),
      eval_capacity_factor_(c.eval_capacity_factor), balance_alpha_(c.balance_alpha), z_loss_(c.router_z_loss) {
  gate = register_module("gate", torch::nn::Linear(torch::nn::LinearOptions(c.d_model, c.num_experts).bias(false)));
}

Routing SwitchRouterImpl::route(const RouterInput& in) {
  auto logits = gate(in.x).to(torch::kFloat);  // [N, E]
  auto probs = torch::softmax(logits, -1);
  auto top = probs.max(-1);
  auto p1 = std::get<0>(top), e1 = std::get<1>(top);  // [N]
  Routing r;
  r.aux["balance"] = load_balancing_loss(probs, e1, in.valid, experts_, balance_alpha_, in.exchange);
  if (z_loss_ > 0) r.aux["z"] = z_loss_ * router_z_loss(logits, in.valid);
  auto expert = e1.masked_fill(in.valid.logical_not(), -1).view({-1, 1}).clone();
  int64_t n_valid = in.valid.sum().item<int64_t>();
  double cf = is_training() ? capacity_factor_ : eval_capacity_factor_;
  if (cf > 0) apply_global_capacity(expert, cf, 1, experts_, n_valid, in.exchange);
  r.expert = expert;
  r.weight = p1.view({-1, 1}).to(in.x.dtype());
  return r;
}

}  // namespace thor
