// See gemm.h.
#include "thor/ops/gemm.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "thor/common/runtime.h"

namespace thor {

namespace {

// oneDNN's C API (dnnl.h), row-major: C = alpha * op(A) op(B) + beta * C.
using SgemmFn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

SgemmFn onednn_sgemm() {
  static SgemmFn fn = [] {
    const char* env = std::getenv("THOR_GEMM");
    if (env && std::strcmp(env, "aten") == 0) return SgemmFn(nullptr);
    void* sym = dlsym(RTLD_DEFAULT, "dnnl_sgemm");
    if (!sym) {
      if (void* h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)) sym = dlsym(h, "dnnl_sgemm");
    }
    return reinterpret_cast<SgemmFn>(sym);
  }();
  return fn;
}

bool fast_path(const torch::Tensor& x, const torch::Tensor& w) {
  return onednn_sgemm() && x.device().is_cpu() && x.scalar_type() == torch::kFloat &&
         w.scalar_type() == torch::kFloat && x.numel() > 0;
}

// A matrix operand as sgemm sees it: row-major with leading dimension ld, transposed or not.
struct MatView {
  bool trans = false;
  int64_t ld = 0;
};
bool mat_view(const torch::Tensor& t, MatView* v) {
  const int64_t rows = t.size(-2), cols = t.size(-1);
  if (t.stride(-1) == 1 && (rows == 1 || t.stride(-2) >= cols)) {
    v->trans = false, v->ld = rows == 1 ? cols : t.stride(-2);
    return true;
  }
  if (t.stride(-2) == 1 && (cols == 1 || t.stride(-1) >= rows)) {
    v->trans = true, v->ld = cols == 1 ? rows : t.stride(-1);
    return true;
  }
  return false;
}

// The operand itself when sgemm can read it in place, else a contiguous copy.
torch::Tensor prepare(const torch::Tensor& t) {
  MatView v;
  return mat_view(t, &v) ? t : t.contiguous();
}

// Offsets (in elements) of every matrix of t's leading dimensions, row-major batch order.
std::vector<int64_t> batch_offsets(const torch::Tensor& t) {
  const int64_t nb = t.dim() - 2;
  int64_t count = 1;
  for (int64_t d = 0; d < nb; ++d) count *= t.size(d);
  std::vector<int64_t> off(static_cast<size_t>(count), 0);
  for (int64_t i = 0; i < count; ++i) {
    int64_t rest = i, o = 0;
    for (int64_t d = nb - 1; d >= 0; --d) {
      o += (rest % t.size(d)) * t.stride(d);
      rest /= t.size(d);
    }
    off[static_cast<size_t>(i)] = o;
  }
  return off;
}

// The one call into oneDNN: c (contiguous [..., M, N]) = a b, plus c when accumulate, for
// a [..., M, K] and b [..., K, N] with the same leading dimensions, each matrix a strided
// or transposed view (prepared). One matrix: sgemm threads it; several: one sgemm per
// matrix, the matrices in parallel.
void sgemm(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c, bool accumulate = false) {
  MatView va, vb;
  TORCH_CHECK(mat_view(a, &va) && mat_view(b, &vb), "sgemm: unsupported operand layout");
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  auto oa = batch_offsets(a), ob = batch_offsets(b);
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* pc = c.data_ptr<float>();
  auto one = [&](int64_t i) {
    int status = onednn_sgemm()(va.trans ? 'T' : 'N', vb.trans ? 'T' : 'N', M, N, K, 1.0f,
                                pa + oa[static_cast<size_t>(i)], va.ld, pb + ob[static_cast<size_t>(i)], vb.ld,
                                accumulate ? 1.0f : 0.0f, pc + i * M * N, N);
    TORCH_CHECK(status == 0, "dnnl_sgemm failed with status ", status);
  };
  const auto count = static_cast<int64_t>(oa.size());
  if (count == 1) return one(0);
  at::parallel_for(0, count, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) one(i);
  });
}

// y = x op(W) + b, with op(W) = W^T when w_out_in (W [out, in]), else W [in, out].
class Gemm : public torch::autograd::Function<Gemm> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& w_in, const torch::Tensor& b, bool w_out_in) {
    RECORD_FUNCTION("thor::gemm", std::vector<c10::IValue>());
    auto x = prepare(x_in), w = prepare(w_in);
    auto op_w = w_out_in ? w.t() : w;
    const bool has_bias = b.numel() > 0;  // no bias: an empty tensor (LibTorch 1.13 rejects undefined inputs)
    auto y = torch::empty({x.size(0), op_w.size(1)}, x.options());
    if (has_bias) y.copy_(b.expand(y.sizes()));
    sgemm(x, op_w, y, has_bias);
    ctx->save_for_backward({x, w});
    ctx->saved_data["w_out_in"] = w_out_in;
    ctx->saved_data["has_bias"] = has_bias;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    RECORD_FUNCTION("thor::gemm_backward", std::vector<c10::IValue>());
    auto saved = ctx->get_saved_variables();
    auto x = saved[0], w = saved[1];
    bool w_out_in = ctx->saved_data["w_out_in"].toBool();
    auto gy = grad[0].contiguous();
    torch::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {  // gx = gy op(W)^T
      gx = torch::empty(x.sizes(), x.options());
      sgemm(gy, w_out_in ? w : w.t(), gx);
    }
    if (ctx->needs_input_grad(1)) {  // W [out, in]: gy^T x ; W [in, out]: x^T gy
      gw = torch::empty(w.sizes(), w.options());
      if (w_out_in)
        sgemm(gy.t(), x, gw);
      else
        sgemm(x.t(), gy, gw);
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) gb = gy.sum(0);
    return {gx, gw, gb, torch::Tensor()};
  }
};

class BatchedMatmul : public torch::autograd::Function<BatchedMatmul> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a_in,
                               const torch::Tensor& b_in) {
    RECORD_FUNCTION("thor::batched_matmul", std::vector<c10::IValue>());
    auto a = prepare(a_in), b = prepare(b_in);
    auto shape = a.sizes().vec();
    shape.back() = b.size(-1);
    auto c = torch::empty(shape, a.options());
    sgemm(a, b, c);
    ctx->save_for_backward({a, b});
    return c;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    RECORD_FUNCTION("thor::batched_matmul_backward", std::vector<c10::IValue>());
    auto saved = ctx->get_saved_variables();
    auto a = saved[0], b = saved[1];
    auto gc = grad[0].contiguous();
    torch::Tensor ga, gb;
    if (ctx->needs_input_grad(0)) {  // ga = gc b^T
      ga = torch::empty(a.sizes(), a.options());
      sgemm(gc, b.transpose(-1, -2), ga);
    }
    if (ctx->needs_input_grad(1)) {  // gb = a^T gc
      gb = torch::empty(b.sizes(), b.options());
      sgemm(a.transpose(-1, -2), gc, gb);
    }
    return {ga, gb};
  }
};

torch::Tensor gemm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, bool w_out_in) {
  const int64_t in = x.size(-1);
  auto lead = x.sizes().vec();
  lead.pop_back();
  auto y = Gemm::apply(x.reshape({-1, in}), w, b.defined() ? b : torch::empty({0}, w.options()), w_out_in);
  lead.push_back(y.size(1));
  return y.view(lead);
}

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (!fast_path(x, w)) return torch::nn::functional::linear(x, w, b);
  return gemm(x, w, b, true);
}

torch::Tensor linear_in_out(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (!fast_path(x, w)) return b.defined() ? torch::addmm(b, x, w) : torch::mm(x, w);
  return gemm(x, w, b, false);
}

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b) {
  bool fast = fast_path(a, b) && b.device().is_cpu() && a.dim() >= 3 && a.dim() == b.dim() &&
              a.sizes().slice(0, a.dim() - 2) == b.sizes().slice(0, b.dim() - 2) && a.size(-1) == b.size(-2) &&
              b.numel() > 0;
  if (!fast) return torch::matmul(a, b);
  return BatchedMatmul::apply(a, b);
}

std::string gemm_backend() { return onednn_sgemm() ? "onednn" : "aten"; }

}  // namespace thor

namespace thor {

double measure_gemm_gflops(int64_t n, int reps) {
  torch::NoGradGuard ng;
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  return runtime::median_gflops([&] { linear_in_out(a, b, torch::Tensor()); }, 2.0 * n * n * n, reps);
}

}  // namespace thor
