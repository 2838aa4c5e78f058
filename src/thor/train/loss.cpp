// See loss.h.
#include "thor/train/loss.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "thor/common/error.h"
#include "thor/ops/simd.h"

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

torch::Tensor consistency_logits_loss(const torch::Tensor& z0, const torch::Tensor& z1, const torch::Tensor& keep) {
  auto per_token = 0.5 * (z0 - z1).pow(2).mean(-1);  // [N]
  return (per_token * keep.reshape({-1}).to(per_token.dtype())).sum();
}

Consistency parse_consistency(const std::string& name) {
  if (name == "probs") return Consistency::Probabilities;
  if (name == "logits") return Consistency::Logits;
  throw Error("--consistency-on " + name + ": expected probs or logits");
}

}  // namespace thor

namespace thor {

namespace {

// Per row (token), from the closed forms
//   d LS-CE / dz   = p - eps_i - (1 - eps - eps_i) * onehot(t)
//   d cons / dz_p  = p * (d/2 + 1/2 - kl_pq/2) - q/2,   d = log p - log q, kl_pq = sum p d
//   d cons / dz_q  = q * (-d/2 + 1/2 - kl_qp/2) - p/2,  kl_qp = -sum q d
// (derivatives of sum_v(-log p_v) etc. through log-softmax; see fused_translation_loss).
// Raw loops over the row, in cache, written so the compiler vectorises them (reductions
// into simd::kLanes partial sums, simd::vexp): ATen ops per block of rows spent more time
// dispatching than computing.
struct RowSums {
  double ls = 0, nll = 0, cons = 0;
};

using simd::f32x16;
using simd::kLanes;
using simd::load16;
using simd::splat16;
using simd::store16;

THOR_VECTOR_CLONES float row_max(const float* z, int64_t V) {
  float m = -std::numeric_limits<float>::infinity();
  int64_t v = 0;
  if (V >= kLanes) {
    f32x16 acc = load16(z);
    for (v = kLanes; v + kLanes <= V; v += kLanes) {
      const f32x16 x = load16(z + v);
      acc = x > acc ? x : acc;
    }
    m = simd::hmax16(acc);
  }
  for (; v < V; ++v) m = z[v] > m ? z[v] : m;
  return m;
}

// e[v] = exp(z[v] - m); returns sum e, and sum z in *sum_z
THOR_VECTOR_CLONES float exp_row(const float* z, float m, int64_t V, float* e, float* sum_z) {
  f32x16 se = {}, sz = {};
  int64_t v = 0;
  for (; v + kLanes <= V; v += kLanes) {
    const f32x16 x = load16(z + v), y = simd::vexp(x - m);
    store16(e + v, y);
    se += y;
    sz += x;
  }
  float s = simd::hsum16(se), t = simd::hsum16(sz);
  for (; v < V; ++v) {
    e[v] = simd::vexp(z[v] - m);
    s += e[v];
    t += z[v];
  }
  *sum_z = t;
  return s;
}

// g[v] = e[v] * inv - eps_i (one pass: the LS-CE gradient without the target's term)
THOR_VECTOR_CLONES void ce_grad_row(float* g, float inv, float eps_i, int64_t V) {
  for (int64_t v = 0; v < V; ++v) g[v] = g[v] * inv - eps_i;
}

// Two passes: p, q from e0 * inv0, e1 * inv1 (in place); kl_pq = sum p d, kl_qp = -sum q d
// with d = z0 - z1 - c (c = lse0 - lse1)
THOR_VECTOR_CLONES void kl_row(const float* z0, const float* z1, float c, float* p, float* q, float inv0, float inv1,
                               int64_t V, float* kl_pq, float* kl_qp) {
  f32x16 a = {}, b = {};
  int64_t v = 0;
  for (; v + kLanes <= V; v += kLanes) {
    const f32x16 pv = load16(p + v) * inv0, qv = load16(q + v) * inv1, d = load16(z0 + v) - load16(z1 + v) - c;
    store16(p + v, pv);
    store16(q + v, qv);
    a += pv * d;
    b += qv * d;
  }
  float sa = simd::hsum16(a), sb = simd::hsum16(b);
  for (; v < V; ++v) {
    const float pv = p[v] * inv0, qv = q[v] * inv1, d = z0[v] - z1[v] - c;
    p[v] = pv, q[v] = qv;
    sa += pv * d, sb += qv * d;
  }
  *kl_pq = sa;
  *kl_qp = -sb;
}

// the two gradient rows, in place over p and q
THOR_VECTOR_CLONES void cons_grad_row(const float* z0, const float* z1, float c, float* p, float* q, float base0,
                                      float base1, float half, float eps_i, int64_t V) {
  for (int64_t v = 0; v < V; ++v) {
    const float pv = p[v], qv = q[v], d = z0[v] - z1[v] - c;
    p[v] = pv * (base0 + half * d) - half * qv - eps_i;
    q[v] = qv * (base1 - half * d) - half * pv - eps_i;
  }
}

// Consistency on the logits: g0 += a d, g1 -= a d with d = z0 - z1; returns sum d^2.
THOR_VECTOR_CLONES float logit_cons_row(const float* z0, const float* z1, float* g0, float* g1, float a, int64_t V) {
  f32x16 acc = {};
  int64_t v = 0;
  for (; v + kLanes <= V; v += kLanes) {
    const f32x16 d = load16(z0 + v) - load16(z1 + v);
    store16(g0 + v, load16(g0 + v) + a * d);
    store16(g1 + v, load16(g1 + v) - a * d);
    acc += d * d;
  }
  float s = simd::hsum16(acc);
  for (; v < V; ++v) {
    const float d = z0[v] - z1[v];
    g0[v] += a * d, g1[v] -= a * d;
    s += d * d;
  }
  return s;
}

// Loss terms and gradient rows of row i of every pass (z, g: [groups * N, V] float).
RowSums loss_row(const float* Z, float* G, int64_t i, int64_t N, int64_t V, int64_t groups, int64_t t, double eps,
                 double alpha, Consistency on) {
  const double eps_i = V > 1 ? eps / static_cast<double>(V - 1) : 0.0;
  const double hit = 1.0 - eps - eps_i;
  RowSums s;
  double lse[2] = {0, 0}, inv[2] = {0, 0};
  for (int64_t g = 0; g < groups; ++g) {
    const float* z = Z + (g * N + i) * V;
    float* e = G + (g * N + i) * V;
    const float m = row_max(z, V);
    float sum_z = 0;
    const double se = exp_row(z, m, V, e, &sum_z);
    lse[g] = m + std::log(se);
    inv[g] = 1.0 / se;
    const double nll = lse[g] - z[t];
    const double smooth = static_cast<double>(V) * lse[g] - sum_z;  // -sum_v log p_v
    s.nll += nll;
    s.ls += hit * nll + eps_i * smooth;
  }
  if (groups == 1) {
    float* g0 = G + i * V;
    ce_grad_row(g0, static_cast<float>(inv[0]), static_cast<float>(eps_i), V);
    g0[t] -= static_cast<float>(hit);
    return s;
  }
  const float* z0 = Z + i * V;
  const float* z1 = Z + (N + i) * V;
  float* p = G + i * V;
  float* q = G + (N + i) * V;
  if (on == Consistency::Logits) {  // each pass's CE gradient, then alpha/V (z0 - z1) between them
    ce_grad_row(p, static_cast<float>(inv[0]), static_cast<float>(eps_i), V);
    ce_grad_row(q, static_cast<float>(inv[1]), static_cast<float>(eps_i), V);
    const double sq = logit_cons_row(z0, z1, p, q, static_cast<float>(alpha / static_cast<double>(V)), V);
    s.cons = 0.5 * sq / static_cast<double>(V);
    p[t] -= static_cast<float>(hit);
    q[t] -= static_cast<float>(hit);
    return s;
  }
  const float c = static_cast<float>(lse[0] - lse[1]);
  float kl_pq = 0, kl_qp = 0;
  kl_row(z0, z1, c, p, q, static_cast<float>(inv[0]), static_cast<float>(inv[1]), V, &kl_pq, &kl_qp);
  s.cons = 0.5 * (static_cast<double>(kl_pq) + kl_qp);
  // grad_g = p_g * (1 + a/2 -+ a/2 d - a/2 kl_g) - a/2 p_other - eps_i
  const double half = 0.5 * alpha;
  cons_grad_row(z0, z1, c, p, q, static_cast<float>(1.0 + half - half * kl_pq),
                static_cast<float>(1.0 + half - half * kl_qp), static_cast<float>(half), static_cast<float>(eps_i), V);
  p[t] -= static_cast<float>(hit);
  q[t] -= static_cast<float>(hit);
  return s;
}

// The same closed forms with ATen ops over all rows at once (devices other than the CPU).
torch::Tensor composite_loss(const torch::Tensor& z, const torch::Tensor& tgt, int64_t groups, double eps,
                             double alpha, int64_t pad, Consistency on, RowSums* sums) {
  const int64_t N = tgt.numel(), V = z.size(1);
  const double eps_i = V > 1 ? eps / static_cast<double>(V - 1) : 0.0;
  const double hit = 1.0 - eps - eps_i;
  auto keep = tgt.ne(pad).to(torch::kFloat);
  auto grad = torch::empty(z.sizes(), z.options().dtype(torch::kFloat));
  std::vector<torch::Tensor> lp, p, gs;
  for (int64_t g = 0; g < groups; ++g) {
    lp.push_back(torch::log_softmax(z.narrow(0, g * N, N).to(torch::kFloat), 1));
    p.push_back(lp[g].exp());
    gs.push_back(grad.narrow(0, g * N, N));
    auto ce = label_smoothed_nll_lprobs(lp[g], tgt, eps, pad);
    sums->nll += ce.nll.item<double>();
    sums->ls += ce.loss.item<double>();
  }
  if (groups == 2 && on == Consistency::Logits) {
    auto d = (z.narrow(0, 0, N) - z.narrow(0, N, N)).to(torch::kFloat);
    sums->cons = 0.5 * ((d * d).mean(1) * keep).sum().item<double>();
    const double a = alpha / static_cast<double>(V);
    torch::add_out(gs[0], p[0], d, a);
    torch::add_out(gs[1], p[1], d, -a);
  } else if (groups == 2) {
    auto d = lp[0] - lp[1];
    auto kl_pq = (p[0] * d).sum(1, true), kl_qp = -(p[1] * d).sum(1, true);
    sums->cons = 0.5 * ((kl_pq + kl_qp).squeeze(1) * keep).sum().item<double>();
    auto half = 0.5 * alpha;
    torch::add_out(gs[0], (1.0 + half) - half * kl_pq, d, half).mul_(p[0]).sub_(p[1], half);
    torch::add_out(gs[1], (1.0 + half) - half * kl_qp, d, -half).mul_(p[1]).sub_(p[0], half);
  } else {
    gs[0].copy_(p[0]);
  }
  auto t = tgt.unsqueeze(1);
  auto minus_hit = torch::full(t.sizes(), -hit, grad.options());
  for (auto& g : gs) g.sub_(eps_i).scatter_add_(1, t, minus_hit).mul_(keep.unsqueeze(1));
  return grad;
}

class FusedLoss : public torch::autograd::Function<FusedLoss> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& target, int64_t groups, double eps, double alpha, int64_t pad,
                               int64_t on_logits, FusedLossResult* out) {
    const Consistency on = on_logits ? Consistency::Logits : Consistency::Probabilities;
    RECORD_FUNCTION("thor::loss", std::vector<c10::IValue>());
    const int64_t N = target.numel(), V = logits.size(1);
    torch::Tensor grad;
    RowSums total;
    if (logits.device().is_cpu()) {
      auto tgt = target.reshape({-1}).to(torch::kLong).contiguous();
      const int64_t* T = tgt.data_ptr<int64_t>();
      for (int64_t i = 0; i < N; ++i)
        TORCH_CHECK(T[i] == pad || (T[i] >= 0 && T[i] < V), "fused_translation_loss: target id ", T[i],
                    " outside the vocabulary");
      auto z = logits.detach().to(torch::kFloat).contiguous();
      grad = torch::empty(z.sizes(), z.options());
      const float* Z = z.data_ptr<float>();
      float* G = grad.data_ptr<float>();
      std::vector<RowSums> sums(static_cast<size_t>(N));
      at::parallel_for(0, N, 8, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
          if (T[i] == pad) {  // padding: no loss, no gradient
            for (int64_t g = 0; g < groups; ++g) std::fill_n(G + (g * N + i) * V, V, 0.0f);
            continue;
          }
          sums[static_cast<size_t>(i)] = loss_row(Z, G, i, N, V, groups, T[i], eps, groups == 2 ? alpha : 0.0, on);
        }
      });
      for (auto& s : sums) total.ls += s.ls, total.nll += s.nll, total.cons += s.cons;
    } else {
      grad = composite_loss(logits.detach(), target.reshape({-1}), groups, eps, alpha, pad, on, &total);
    }
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
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

FusedLossResult fused_translation_loss(const torch::Tensor& logits, const torch::Tensor& target, int64_t groups,
                                       double epsilon, double alpha, int64_t pad, Consistency on) {
  TORCH_CHECK(groups == 1 || groups == 2, "fused_translation_loss: 1 or 2 passes");
  TORCH_CHECK(logits.dim() == 2 && logits.size(0) == groups * target.numel(),
              "fused_translation_loss: logits must be [groups * N, V]");
  FusedLossResult r;
  r.loss = FusedLoss::apply(logits, target, groups, epsilon, alpha, pad,
                            static_cast<int64_t>(on == Consistency::Logits ? 1 : 0), &r);
  return r;
}

}  // namespace thor
