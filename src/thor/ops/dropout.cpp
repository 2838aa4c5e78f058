// See dropout.h.
#include "thor/ops/dropout.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>

#include "thor/common/runtime.h"
#include "thor/ops/simd.h"

namespace thor {

namespace {

using simd::f32x16;
using simd::kLanes;

// The call's random stream: keep element i when hash32(i) >= threshold (P = 1 - p).
struct Stream {
  uint32_t k0 = 0, k1 = 0, threshold = 0;
  float scale = 1;
  Stream(uint64_t seed, double p)
      : k0(static_cast<uint32_t>(seed)),
        k1(static_cast<uint32_t>(seed >> 32)),
        threshold(static_cast<uint32_t>(std::min(4294967295.0, std::round(p * 4294967296.0)))),
        scale(static_cast<float>(1.0 / (1.0 - p))) {}
  // the key of elements [i, i + 2^32): tensors beyond 2^32 elements get fresh draws
  uint32_t key1(int64_t i) const { return k1 + static_cast<uint32_t>(static_cast<uint64_t>(i) >> 32) * 0x9E3779B9U; }
};

// y[i] = keep(i) ? x[i] * scale : 0 (+ r[i] when r), for i in [a, b). Also the backward
// (x = the incoming gradient, no r): the mask is recomputed from the seed, never stored.
THOR_VECTOR_CLONES void dropout_range(const Stream& s, const float* x, const float* r, float* y, int64_t a,
                                      int64_t b) {
  int64_t i = a;
  for (; i + kLanes <= b; i += kLanes) {
    const auto keep = simd::hash32(simd::iota16(static_cast<uint32_t>(i)), s.k0, s.key1(i)) >= s.threshold;
    f32x16 out = keep ? simd::load16(x + i) * s.scale : f32x16{};
    if (r) out += simd::load16(r + i);
    simd::store16(y + i, out);
  }
  for (; i < b; ++i) {
    const bool keep = simd::hash32(static_cast<uint32_t>(i), s.k0, s.key1(i)) >= s.threshold;
    y[i] = (keep ? x[i] * s.scale : 0.0f) + (r ? r[i] : 0.0f);
  }
}

void run_dropout(const Stream& s, const torch::Tensor& x, const torch::Tensor& r, torch::Tensor& y) {
  const float* xs = x.data_ptr<float>();
  const float* rs = r.defined() ? r.data_ptr<float>() : nullptr;
  float* ys = y.data_ptr<float>();
  // chunks start at multiples of kLanes: every element goes through the vector loop
  at::parallel_for(0, (x.numel() + kLanes - 1) / kLanes, 1024, [&](int64_t c0, int64_t c1) {
    dropout_range(s, xs, rs, ys, c0 * kLanes, std::min(c1 * kLanes, x.numel()));
  });
}

class Dropout : public torch::autograd::Function<Dropout> {
 public:
  // y = dropout(x) (+ residual, when residual is not empty: one pass instead of two)
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& residual_in, double p) {
    RECORD_FUNCTION("thor::dropout", std::vector<c10::IValue>());
    auto x = x_in.contiguous();
    const bool add = residual_in.numel() > 0;
    auto residual = add ? residual_in.expand(x.sizes()).contiguous() : torch::Tensor();
    auto y = torch::empty_like(x);
    const uint64_t seed = runtime::draw_seed();
    run_dropout(Stream(seed, p), x, residual, y);
    ctx->saved_data["seed"] = static_cast<int64_t>(seed);
    ctx->saved_data["p"] = p;
    ctx->saved_data["add"] = add;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    RECORD_FUNCTION("thor::dropout_backward", std::vector<c10::IValue>());
    auto gy = grad[0].contiguous();
    auto gx = torch::empty_like(gy);
    const Stream s(static_cast<uint64_t>(ctx->saved_data["seed"].toInt()), ctx->saved_data["p"].toDouble());
    run_dropout(s, gy, torch::Tensor(), gx);
    // the residual's gradient is the incoming one (same shape: residuals are never broadcast here)
    return {gx, ctx->saved_data["add"].toBool() ? grad[0] : torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat || p >= 1.0) return torch::dropout(x, p, training);
  return Dropout::apply(x, torch::empty({0}, x.options()), p);
}

torch::Tensor dropout_add(const torch::Tensor& residual, const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0 || !x.device().is_cpu() || x.scalar_type() != torch::kFloat || p >= 1.0 ||
      residual.sizes() != x.sizes() || residual.scalar_type() != torch::kFloat)
    return residual + thor::dropout(x, p, training);
  return Dropout::apply(x, residual, p);
}

}  // namespace thor
