// See router_random.h.
#include "thor/moe/router_random.h"

#include "thor/common/error.h"
#include "thor/common/runtime.h"

namespace thor {

RouteLevel parse_route_level(const std::string& s) {
  if (s == "batch") return RouteLevel::Batch;
  if (s == "sentence") return RouteLevel::Sentence;
  if (s == "token") return RouteLevel::Token;
  throw Error("--route-level: expected batch, sentence or token, got '" + s + "'");
}

RandomRouterImpl::RandomRouterImpl(const ModelConfig& c)
    : experts_(c.num_experts), first_(c.first_local_expert()), draw_(c.local_experts()),
      level_(parse_route_level(c.route_level)) {
  if (draw_ < experts_ && level_ != RouteLevel::Batch)
    throw Error("--expert-parallel with router " + c.router + " draws one expert per batch: --route-level batch");
}

std::vector<int64_t> RandomRouterImpl::draw_groups(int64_t groups) const {
  return level_ == RouteLevel::Batch ? draw_group_experts(groups) : std::vector<int64_t>{};
}

std::vector<int64_t> RandomRouterImpl::draw_group_experts(int64_t groups) const {
  // (randint takes as many random bits whatever the range: ranks drawing among their own
  // experts keep one RNG stream)
  auto draws = torch::randint(draw_, {groups}, runtime::thread_generator(), torch::TensorOptions().dtype(torch::kLong));
  std::vector<int64_t> out(draws.data_ptr<int64_t>(), draws.data_ptr<int64_t>() + groups);
  for (auto& e : out) e += first_;
  return out;
}

Routing RandomRouterImpl::route(const RouterInput& in) { return route_at(in, level_); }

Routing RandomRouterImpl::route_at(const RouterInput& in, RouteLevel level) const {
  const int64_t N = in.x.size(0);
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(in.x.device());
  Routing r;
  torch::Tensor e;  // [N]
  if (level == RouteLevel::Batch) {
    TORCH_CHECK(in.rows % in.groups == 0, "rows must split into equal groups");
    r.group_expert = draw_group_experts(in.groups);
    e = torch::tensor(r.group_expert, torch::kLong).to(in.x.device()).repeat_interleave(N / in.groups);
  } else if (level == RouteLevel::Sentence) {
    e = torch::randint(experts_, {in.rows}, runtime::generator_for(in.x), opts).repeat_interleave(N / in.rows);
  } else {
    e = torch::randint(experts_, {N}, runtime::generator_for(in.x), opts);
  }
  if (r.group_expert.empty()) e = e.masked_fill(in.valid.logical_not(), -1);
  r.expert = e.view({N, 1});
  r.weight = torch::ones({N, 1}, in.x.options());
  return r;
}

}  // namespace thor
