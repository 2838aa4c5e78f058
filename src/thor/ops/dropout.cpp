// See dropout.h.
#include "thor/ops/dropout.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include "thor/common/runtime.h"

namespace thor {

namespace {

inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class Dropout : public torch::autograd::Function<Dropout> {
 public:
  // y = dropout(x) (+ residual, when residual is not empty: one pass instead of two)
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& residual_in, double p) {
    RECORD_FUNCTION("thor::dropout", std::vector<c10::IValue>());
    auto x = x_in.contiguous();
    const bool add = residual_in.numel() > 0;
    auto residual = add ? residual_in.expand(x.sizes()).contiguous() : residual_in;
    auto y = torch::empty_like(x);
    auto mask = torch::empty(x.sizes(), x.options().dtype(torch::kByte));
    const uint64_t seed = runtime::draw_seed();
    // keep when a 16-bit uniform is >= p * 65536; four uniforms per 64-bit hash
    const uint32_t threshold = static_cast<uint32_t>(p * 65536.0 + 0.5);
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    const float* xs = x.data_ptr<float>();
    float* ys = y.data_ptr<float>();
    const float* rs = add ? residual.data_ptr<float>() : nullptr;
    uint8_t* ms = mask.data_ptr<uint8_t>();
    const int64_t n = x.numel(), words = (n + 3) / 4;
    at::parallel_for(0, words, 4096, [&](int64_t w0, int64_t w1) {
      for (int64_t w = w0; w < w1; ++w) {
        uint64_t r = splitmix64(seed ^ (static_cast<uint64_t>(w) * 0xd1b54a32d192ed03ULL));
        for (int64_t j = 0; j < 4; ++j) {
          int64_t i = w * 4 + j;
          if (i >= n) break;
          uint8_t keep = ((r >> (16 * j)) & 0xffff) >= threshold;
          ms[i] = keep;
          ys[i] = (keep ? xs[i] * scale : 0.0f) + (rs ? rs[i] : 0.0f);
        }
      }
    });
    ctx->save_for_backward({mask});
    ctx->saved_data["scale"] = static_cast<double>(scale);
    ctx->saved_data["add"] = add;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    RECORD_FUNCTION("thor::dropout_backward", std::vector<c10::IValue>());
    auto mask = ctx->get_saved_variables()[0];
    auto gy = grad[0].contiguous();
    auto gx = torch::empty_like(gy);
    const float scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    const float* g = gy.data_ptr<float>();
    const uint8_t* ms = mask.data_ptr<uint8_t>();
    float* out = gx.data_ptr<float>();
    at::parallel_for(0, gy.numel(), 16384, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) out[i] = ms[i] ? g[i] * scale : 0.0f;
    });
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
