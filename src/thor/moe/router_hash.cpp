// See router_hash.h.
#include "thor/moe/router_hash.h"

namespace thor {

HashRouterImpl::HashRouterImpl(const ModelConfig& c) {
  auto gen = at::detail::createCPUGenerator(c.hash_seed);
  auto perm = torch::randperm(c.vocab_size, gen, torch::TensorOptions().dtype(torch::kLong));
  // position of each id in the permutation, modulo E: exactly balanced over token types
  auto t = torch::empty_like(perm);
  t.index_put_({perm}, torch::arange(c.vocab_size, torch::kLong) % c.num_experts);
  table = register_buffer("table", t);
}

Routing HashRouterImpl::route(const RouterInput& in) {
  Routing r;
  auto e = table.index_select(0, in.tokens.to(table.device()).clamp(0, table.size(0) - 1));
  r.expert = e.masked_fill(in.valid.logical_not(), -1).view({-1, 1});
  r.weight = torch::ones({in.x.size(0), 1}, in.x.options());
  return r;
}

}  // namespace thor
