// `thor` router (Zuo et al. 2022, Sec. 3): the random router's uniform draw, trained with
// two stochastic passes tied by a consistency loss (the trainer asks two_pass()).
#pragma once
#include "thor/moe/router_random.h"

namespace thor {

class ThorRouterImpl : public RandomRouterImpl {
 public:
  using RandomRouterImpl::RandomRouterImpl;
  bool two_pass() const override { return true; }
};

}  // namespace thor
