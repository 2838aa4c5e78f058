// `switch` router (Fedus et al. 2021): top-1 softmax gate; load-balancing loss
// alpha * E * sum_i f_i P_i; capacity ceil(cf * tokens / E) with overflow tokens skipping
// the expert (residual only); optional router z-loss (Zoph et al. 2022).
#pragma once
#include "thor/moe/router.h"

namespace thor {

class SwitchRouterImpl : public RouterImpl {
 public:
  explicit SwitchRouterImpl(const ModelConfig& c);
  Routing route(const RouterInput& in) override;
  torch::nn::Linear gate{nullptr};

 protected:
  int64_t experts_;
  double capacity_factor_, eval_capacity_factor_, balance_alpha_, z_loss_;
};

}  // namespace thor
