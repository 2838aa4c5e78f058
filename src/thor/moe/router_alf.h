// `alf` router: auxiliary-loss-free load balancing (DeepSeek; Wang et al. 2024). A bias
// b_i is added to the gate scores for expert *selection* only; the combine weights use
// the unbiased scores. After every optimizer update, b_i += u * sign(mean load - load_i)
// over the tokens routed since the previous update. Dropless (no capacity).
#pragma once
#include "thor/moe/router.h"

namespace thor {

class AlfRouterImpl : public RouterImpl {
 public:
  explicit AlfRouterImpl(const ModelConfig& c);
  Routing route(const RouterInput& in) override;
  void after_update() override;
  std::vector<torch::Tensor> update_statistics() override { return {load}; }
  torch::nn::Linear gate{nullptr};
  torch::Tensor bias;  // [E] selection bias (buffer)
  torch::Tensor load;  // [E] tokens routed since the last update (buffer)

 private:
  int64_t experts_, top_k_;
  double rate_;
};

}  // namespace thor
