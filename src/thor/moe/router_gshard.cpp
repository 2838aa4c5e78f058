// See router_gshard.h.
#include "thor/moe/router_gshard.h"

#include "thor/common/error.h"
#include "thor/common/runtime.h"

namespace thor {

GShardRouterImpl::GShardRouterImpl(const ModelConfig& c) : SwitchRouterImpl(c), second_policy_(c.second_expert_policy) {
  if (c.num_experts < 2) throw Error("--router gshard needs --num-experts >= 2");
  if (second_policy_ != "all" && second_policy_ != "random" && second_policy_ != "threshold")
    throw Error("--second-expert-policy: expected all, random or threshold, got '" + second_policy_ + "'");
}

Routing GShardRouterImpl::route(const RouterInput& in) {
  auto logits = gate(in.x).to(torch::kFloat);  // [N, E]
  auto probs = torch::softmax(logits, -1);
  auto top = probs.topk(2, -1);
  auto g = std::get<0>(top), e = std::get<1>(top);  // [N, 2]
  auto w = g / g.sum(-1, true).clamp_min(1e-9);     // renormalised
  Routing r;
  r.aux["balance"] = load_balancing_loss(probs, e.select(1, 0), in.valid, experts_, balance_alpha_, in.exchange);
  if (z_loss_ > 0) r.aux["z"] = z_loss_ * router_z_loss(logits, in.valid);
  auto expert = e.masked_fill(in.valid.logical_not().unsqueeze(1), -1).clone();
  torch::NoGradGuard ng;
  if (second_policy_ == "random" && is_training()) {
    auto keep = (2.0 * w.select(1, 1)) > torch::rand({w.size(0)}, runtime::generator_for(w), w.options());
    expert.select(1, 1).masked_fill_(keep.logical_not(), -1);
  } else if (second_policy_ == "threshold") {
    expert.select(1, 1).masked_fill_(w.select(1, 1) < 0.2, -1);
  }
  int64_t n_valid = in.valid.sum().item<int64_t>();
  double cf = is_training() ? capacity_factor_ : eval_capacity_factor_;
  if (cf > 0) apply_global_capacity(expert, cf, 2, experts_, n_valid, in.exchange);
  r.expert = expert;
  r.weight = w.to(in.x.dtype());
  return r;
}

}  // namespace thor
