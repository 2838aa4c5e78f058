// See router.h.
#include "thor/moe/router.h"

#include <cmath>

namespace thor {

void apply_capacity(torch::Tensor& expert, int64_t slot, int64_t capacity, std::vector<int64_t>& used) {
  auto col = expert.select(1, slot).to(torch::kCPU).contiguous();
  auto* e = col.data_ptr<int64_t>();
  for (int64_t i = 0; i < col.numel(); ++i) {
    if (e[i] < 0) continue;
    if (used[e[i]] < capacity) {
      ++used[e[i]];
    } else {
      e[i] = -1;
    }
  }
  expert.select(1, slot).copy_(col);
}

void apply_global_capacity(torch::Tensor& expert, double factor, int64_t k, int64_t experts, int64_t n_valid,
                           TokenExchange* ex) {
  std::vector<int64_t> used(static_cast<size_t>(experts), 0);
  if (!ex || ex->ranks() == 1) {
    const int64_t cap = expert_capacity(factor, n_valid, k, experts);
    for (int64_t s = 0; s < k; ++s) apply_capacity(expert, s, cap, used);
    return;
  }
  int64_t n_global = ex->allgather(torch::tensor({n_valid}, torch::kLong)).sum().item<int64_t>();
  const int64_t cap = expert_capacity(factor, n_global, k, experts);
  for (int64_t s = 0; s < k; ++s) {
    auto col = expert.select(1, s);
    auto mine = torch::bincount(col.masked_select(col >= 0).to(torch::kCPU), {}, experts);  // [E] candidates here
    auto all = ex->allgather(mine).to(torch::kCPU);                                          // [W, E]
    std::vector<int64_t> start(used);
    for (int r = 0; r < ex->rank(); ++r)
      for (int64_t e = 0; e < experts; ++e) start[static_cast<size_t>(e)] += all[r][e].item<int64_t>();
    apply_capacity(expert, s, cap, start);  // keeps a token while the global slots before it are < cap
    auto total = all.sum(0);
    for (int64_t e = 0; e < experts; ++e)
      used[static_cast<size_t>(e)] = std::min(cap, used[static_cast<size_t>(e)] + total[e].item<int64_t>());
  }
}

torch::Tensor load_balancing_loss(const torch::Tensor& probs, const torch::Tensor& top1, const torch::Tensor& valid,
                                  int64_t experts, double alpha, TokenExchange* ex) {
  auto m = valid.to(probs.dtype()).unsqueeze(1);                                     // [N, 1]
  auto onehot = torch::one_hot(top1.clamp_min(0), experts).to(probs.dtype()) * m;  // [N, E]
  auto counts = onehot.sum(0);                                                       // [E]
  auto n = m.sum();
  if (!ex || ex->ranks() == 1) {
    n = n.clamp_min(1);
    return alpha * static_cast<double>(experts) * ((counts / n) * ((probs * m).sum(0) / n)).sum();
  }
  torch::Tensor global;
  {
    torch::NoGradGuard ng;
    global = ex->allgather(torch::cat({counts, n.view({1})}).detach()).sum(0);  // [E + 1]
  }
  auto n_global = global[experts].clamp_min(1);
  auto f = global.narrow(0, 0, experts) / n_global;
  auto part = alpha * static_cast<double>(experts) * (f * ((probs * m).sum(0) / n_global)).sum();
  return part * (n_global / n.clamp_min(1));
}

torch::Tensor router_z_loss(const torch::Tensor& logits, const torch::Tensor& valid) {
  auto z = torch::logsumexp(logits, -1).pow(2);  // [N]
  auto m = valid.to(z.dtype());
  return (z * m).sum() / m.sum().clamp_min(1);
}

int64_t expert_capacity(double factor, int64_t n, int64_t k, int64_t experts) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(factor * static_cast<double>(n * k) / experts)));
}

}  // namespace thor
