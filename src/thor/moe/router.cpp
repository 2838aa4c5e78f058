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

torch::Tensor router_z_loss(const torch::Tensor& logits, const torch::Tensor& valid) {
  auto z = torch::logsumexp(logits, -1).pow(2);  // [N]
  auto m = valid.to(z.dtype());
  return (z * m).sum() / m.sum().clamp_min(1);
}

int64_t expert_capacity(double factor, int64_t n, int64_t k, int64_t experts) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(factor * static_cast<double>(n * k) / experts)));
}

}  // namespace thor
