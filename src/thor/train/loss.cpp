// See loss.h.
#include "thor/train/loss.h"

#include <ATen/record_function.h>

namespace thor {

LossResult label_smoothed_nll(const torch::Tensor& logits, const torch::Tensor& target,
                              double epsilon, int64_t pad) {
  auto V = logits.size(-1);
  return label_smoothed_nll_lprobs(torch::log_softmax(logits.reshape({-1, V}).to(torch::kFloat), -1), target,
                                   epsilon, pad);
}

LossResult label_smoothed_nll_lprobs(const torch::Tensor& lprobs, const torch::Tensor& target,
                                     double epsilon, int64_t pad) {
  auto V = lprobs.size(-1);
  auto tgt = target.reshape({-1, 1});
  auto keep = tgt.ne(pad).to(torch::kFloat);  // [N, 1]
  auto nll = -(lprobs.gather(1, tgt) * keep).sum();
  auto smooth = -(lprobs.sum(-1, true) * keep).sum();
  double eps_i = V > 1 ? epsilon / static_cast<double>(V - 1) : 0.0;
  auto loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth;
  return {loss, nll};
}

torch::Tensor consistency_loss(const torch::Tensor& lp, const torch::Tensor& lq, const torch::Tensor& keep) {
  auto per_token = 0.5 * ((lp.exp() - lq.exp()) * (lp - lq)).sum(-1);  // [N]
  return (per_token * keep.reshape({-1}).to(per_token.dtype())).sum();
}

}  // namespace thor

namespace thor {

namespace {

// Per block of rows: the gradient rows and the block's sums, from the closed forms
//   d LS-CE / dz   = p - eps_i - (1 - eps - eps_i) * onehot(t)
//   d cons / dz_p  = p * (d/2 + 1/2 - kl_pq/2) - q/2,   d = log p - log q, kl_pq = sum p d
//   d cons / dz_q  = q * (-d/2 + 1/2 - kl_qp/2) - p/2,  kl_qp = -sum q d
// (derivatives of sum_v(-log p_v) etc. through log-softmax; see fused_translation_loss).
struct BlockSums {
  double ls = 0, nll = 0, cons = 0;
};

BlockSums loss_block(const std::vector<torch::Tensor>& z, const torch::Tensor& tgt, const torch::Tensor& keep,
                     std::vector<torch::Tensor>& grad, double eps, double alpha, int64_t pad) {
  const auto V = z[0].size(1);
  const double eps_i = V > 1 ? eps / static_cast<double>(V - 1) : 0.0;
  const double hit = 1.0 - eps - eps_i;
  BlockSums s;
  std::vector<torch::Tensor> lp, p;
  for (size_t g = 0; g < z.size(); ++g) {
    lp.push_back(torch::log_softmax(z[g].to(torch::kFloat), 1));
    p.push_back(lp[g].exp());
    auto ce = label_smoothed_nll_lprobs(lp[g], tgt, eps, pad);
    s.nll += ce.nll.item<double>();
    s.ls += ce.loss.item<double>();
  }
  if (z.size() == 2) {
    auto d = lp[0] - lp[1];
    auto kl_pq = (p[0] * d).sum(1, true), kl_qp = -(p[1] * d).sum(1, true);
    s.cons = 0.5 * ((kl_pq + kl_qp).squeeze(1) * keep).sum().item<double>();
    // grad_g = p_g * (1 + a/2 -+ a/2 d - a/2 kl_g) - a/2 p_other - eps_i
    auto half = 0.5 * alpha;
    auto base0 = (1.0 + half) - half * kl_pq, base1 = (1.0 + half) - half * kl_qp;
    torch::add_out(grad[0], base0, d, half).mul_(p[0]).sub_(p[1], half);
    torch::add_out(grad[1], base1, d, -half).mul_(p[1]).sub_(p[0], half);
  } else {
    grad[0].copy_(p[0]);
  }
  auto t = tgt.unsqueeze(1);
  auto minus_hit = torch::full(t.sizes(), -hit, grad[0].options());
  auto k = keep.unsqueeze(1);
  for (size_t g = 0; g < z.size(); ++g) grad[g].sub_(eps_i).scatter_add_(1, t, minus_hit).mul_(k);
  return s;
}

class FusedLoss : public torch::autograd::Function<FusedLoss> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& target, int64_t groups, double eps, double alpha, int64_t pad,
                               FusedLossResult* out) {
    RECORD_FUNCTION("thor::loss", std::vector<c10::IValue>());
    auto z = logits.detach();
    const int64_t N = target.numel();
    auto tgt = target.reshape({-1}).to(z.device());
    auto keep = tgt.ne(pad).to(torch::kFloat);
    auto grad = torch::empty(z.sizes(), z.options().dtype(torch::kFloat));
    // Blocks of rows small enough to stay in cache while ~10 passes run over them; on the
    // CPU the blocks run in parallel (each block's ops then run single-threaded).
    const int64_t V = z.size(1);
    const bool cpu = z.device().is_cpu();
    const int64_t block = cpu ? std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, V)) : N;
    const int64_t nblocks = std::max<int64_t>(1, (N + block - 1) / block);
    std::vector<BlockSums> sums(static_cast<size_t>(nblocks));
    auto run = [&](int64_t b0, int64_t b1) {
      torch::NoGradGuard ng;
      for (int64_t b = b0; b < b1; ++b) {
        int64_t r0 = b * block, n = std::min(block, N - r0);
        if (n <= 0) continue;
        std::vector<torch::Tensor> zs, gs;
        for (int64_t g = 0; g < groups; ++g) {
          zs.push_back(z.narrow(0, g * N + r0, n));
          gs.push_back(grad.narrow(0, g * N + r0, n));
        }
        sums[static_cast<size_t>(b)] =
            loss_block(zs, tgt.narrow(0, r0, n), keep.narrow(0, r0, n), gs, eps, groups == 2 ? alpha : 0.0, pad);
      }
    };
    if (cpu)
      at::parallel_for(0, nblocks, 1, run);
    else
      run(0, nblocks);
    BlockSums total;
    for (auto& s : sums) total.ls += s.ls, total.nll += s.nll, total.cons += s.cons;
    out->ce = total.ls / static_cast<double>(groups);
    out->nll = total.nll / static_cast<double>(groups);
    out->consistency = total.cons;
    ctx->saved_data["grad"] = grad.to(logits.scalar_type());
    double loss = total.ls + (groups == 2 ? alpha * total.cons : 0.0);
    return torch::tensor(loss, logits.options().dtype(torch::kFloat));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    RECORD_FUNCTION("thor::loss_backward", std::vector<c10::IValue>());
    // Scaled in place: the graph is never back-propagated twice (no retain_graph).
    auto grad = ctx->saved_data["grad"].toTensor();
    grad.mul_(grad_out[0].to(grad.scalar_type()));
    ctx->saved_data.erase("grad");
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

FusedLossResult fused_translation_loss(const torch::Tensor& logits, const torch::Tensor& target, int64_t groups,
                                       double epsilon, double alpha, int64_t pad) {
  TORCH_CHECK(groups == 1 || groups == 2, "fused_translation_loss: 1 or 2 passes");
  TORCH_CHECK(logits.dim() == 2 && logits.size(0) == groups * target.numel(),
              "fused_translation_loss: logits must be [groups * N, V]");
  FusedLossResult r;
  r.loss = FusedLoss::apply(logits, target, groups, epsilon, alpha, pad, &r);
  return r;
}

}  // namespace thor
