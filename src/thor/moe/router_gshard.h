// `gshard` router (Lepikhin et al. 2021): top-2 softmax gate with the two weights
// renormalised to sum to 1; capacity ceil(cf * 2 * tokens / E) filled by first choices
// before second choices; second-expert policy all | random (kept when 2 * w2 > U(0,1),
// training only) | threshold (kept when w2 >= 0.2); the load-balancing loss on first choices.
#pragma once
#include "thor/moe/router_switch.h"

namespace thor {

class GShardRouterImpl : public SwitchRouterImpl {
 public:
  explicit GShardRouterImpl(const ModelConfig& c);
  Routing route(const RouterInput& in) override;

 private:
  std::string second_policy_;
};

}  // namespace thor
