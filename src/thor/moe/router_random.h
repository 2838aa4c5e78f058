// `random` router: a uniformly random expert, no gate and no parameters (the ablation of
// THOR without consistency training). Granularity: one draw per group of rows (batch;
// the official THOR code draws once per layer and pass), per sentence, or per token.
#pragma once
#include "thor/moe/router.h"

namespace thor {

enum class RouteLevel { Batch, Sentence, Token };
RouteLevel parse_route_level(const std::string& s);  // throws thor::Error naming --route-level

class RandomRouterImpl : public RouterImpl {
 public:
  explicit RandomRouterImpl(const ModelConfig& c);
  Routing route(const RouterInput& in) override;
  Routing route_at(const RouterInput& in, RouteLevel level) const;
  bool stochastic() const override { return true; }
  std::vector<int64_t> draw_groups(int64_t groups) const override;

 private:
  std::vector<int64_t> draw_group_experts(int64_t groups) const;  // one uniform draw per group
  int64_t experts_;
  int64_t first_ = 0, draw_ = 1;  // draws among experts [first_, first_ + draw_) (expert parallel: the local ones)
  RouteLevel level_;
};

}  // namespace thor
