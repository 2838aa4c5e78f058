// See gemm.h.
#include "thor/ops/gemm.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <cpuid.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <mutex>
#include <vector>

#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/common/runtime.h"
#include "thor/ops/packed_gemm.h"
#include "thor/ops/simd.h"

namespace thor {

namespace {

// oneDNN's C API (dnnl.h), row-major: C = alpha * op(A) op(B) + beta * C. The bf16 product
// takes bfloat16 operands and accumulates and writes float32; the int8 one writes int32
// (zero points ao/bo and the fixed offset co are 0 here: symmetric quantisation).
using SgemmFn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
using Bf16GemmFn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha,
                           const c10::BFloat16* A, int64_t lda, const c10::BFloat16* B, int64_t ldb, float beta,
                           float* C, int64_t ldc);
using S8GemmFn = int (*)(char transa, char transb, char offsetc, int64_t M, int64_t N, int64_t K, float alpha,
                         const int8_t* A, int64_t lda, int8_t ao, const int8_t* B, int64_t ldb, int8_t bo, float beta,
                         int32_t* C, int64_t ldc, const int32_t* co);

void* onednn_symbol(const char* name) {
  const char* env = std::getenv("THOR_GEMM");
  if (env && std::strcmp(env, "aten") == 0) return nullptr;
  void* sym = dlsym(RTLD_DEFAULT, name);
  if (!sym) {
    if (void* h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)) sym = dlsym(h, name);
  }
  return sym;
}

SgemmFn onednn_sgemm() {
  static SgemmFn fn = reinterpret_cast<SgemmFn>(onednn_symbol("dnnl_sgemm"));
  return fn;
}
Bf16GemmFn onednn_bf16_gemm() {
  static Bf16GemmFn fn = reinterpret_cast<Bf16GemmFn>(onednn_symbol("dnnl_gemm_bf16bf16f32"));
  return fn;
}
S8GemmFn onednn_s8_gemm() {
  static S8GemmFn fn = reinterpret_cast<S8GemmFn>(onednn_symbol("dnnl_gemm_s8s8s32"));
  return fn;
}

std::atomic<Precision> g_precision{Precision::Float32};

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
// or transposed view (prepared). Operands float32 (c float32), bfloat16 (c float32) or int8
// (c int32). One matrix: oneDNN threads it; several: one product per matrix, the matrices
// in parallel.
void sgemm(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c, bool accumulate = false) {
  MatView va, vb;
  TORCH_CHECK(mat_view(a, &va) && mat_view(b, &vb), "sgemm: unsupported operand layout");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "sgemm: operand types differ");
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  auto oa = batch_offsets(a), ob = batch_offsets(b);
  const char ta = va.trans ? 'T' : 'N', tb = vb.trans ? 'T' : 'N';
  const float beta = accumulate ? 1.0f : 0.0f;
  const auto type = a.scalar_type();
  auto one = [&](int64_t i) {
    const auto ia = oa[static_cast<size_t>(i)], ib = ob[static_cast<size_t>(i)];
    int status = 0;
    if (type == torch::kFloat) {
      status = onednn_sgemm()(ta, tb, M, N, K, 1.0f, a.data_ptr<float>() + ia, va.ld, b.data_ptr<float>() + ib, vb.ld,
                              beta, c.data_ptr<float>() + i * M * N, N);
    } else if (type == torch::kBFloat16) {
      status = onednn_bf16_gemm()(ta, tb, M, N, K, 1.0f, a.data_ptr<c10::BFloat16>() + ia, va.ld,
                                  b.data_ptr<c10::BFloat16>() + ib, vb.ld, beta, c.data_ptr<float>() + i * M * N, N);
    } else {
      TORCH_CHECK(type == torch::kChar, "sgemm: unsupported type ", type);
      const int32_t co = 0;
      status = onednn_s8_gemm()(ta, tb, 'F', M, N, K, 1.0f, a.data_ptr<int8_t>() + ia, va.ld, 0,
                                b.data_ptr<int8_t>() + ib, vb.ld, 0, beta, c.data_ptr<int32_t>() + i * M * N, N, &co);
    }
    TORCH_CHECK(status == 0, "oneDNN gemm (", type, ") failed with status ", status);
  };
  const auto count = static_cast<int64_t>(oa.size());
  if (count == 1) return one(0);
  at::parallel_for(0, count, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) one(i);
  });
}

torch::Tensor to_bf16(const torch::Tensor& t) { return prepare(t.to(torch::kBFloat16)); }

// Rows [m0, m1) of g [M, N]: their bf16 bits to out, and (acc not null) per column their
// sum (from the unrounded values) added to acc.
THOR_VECTOR_CLONES void bf16_rows_and_sums(const float* g, int64_t N, int64_t m0, int64_t m1, uint16_t* out,
                                           float* acc) {
  for (int64_t m = m0; m < m1; ++m) {
    const float* row = g + m * N;
    uint16_t* o = out + m * N;
    int64_t n = 0;
    for (; n + simd::kLanes <= N; n += simd::kLanes) {
      const auto x = simd::load16(row + n);
      if (acc) simd::store16(acc + n, simd::load16(acc + n) + x);
      const auto b = simd::bf16_bits(x);
      std::memcpy(o + n, &b, sizeof b);
    }
    for (; n < N; ++n) {
      if (acc) acc[n] += row[n];
      o[n] = simd::bf16_bits(row[n]);
    }
  }
}

// y [M, N] float32 = a op_w + bias (bias: [N], or empty for none), a and op_w of one type
// (float32 or bf16): the bias is written first and the product accumulates onto it.
torch::Tensor biased_product(const torch::Tensor& a, const torch::Tensor& op_w, const torch::Tensor& bias,
                             const torch::TensorOptions& options) {
  auto y = torch::empty({a.size(0), op_w.size(1)}, options);
  const bool has_bias = bias.numel() > 0;
  if (has_bias) y.copy_(bias.expand(y.sizes()));
  sgemm(a, op_w, y, has_bias);
  return y;
}

// Weights in the forms the products without autograd read (bf16, int8, float32 panels for
// packed_gemm), made once while the weight is unchanged (inference:
// the same parameters serve every decoding step). Keyed by address, shape, strides and
// version counter; an entry holds its source tensor, so that memory cannot be reused by
// another tensor while the entry lives. A new version of the same view replaces its entry
// (validation after every update does not pile up copies); beyond kMaxBytes (converted
// copies, plus the sources that are not parameters, e.g. a batch's shortlist rows) the least
// recently used entries go. Thread-safe.
enum class WeightForm { BFloat16, Int8, Panels };
struct LowWeight {
  torch::Tensor w;      // bf16, int8 quantised per output channel, or float32 panels
  torch::Tensor scale;  // int8: float32 [out], one scale per output channel
};
class WeightCache {
 public:
  LowWeight get(const torch::Tensor& w, WeightForm form, bool w_out_in) {
    Key key{w.data_ptr(), w.sizes().vec(), w.strides().vec(), w._version(), form};
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (!(entries_[i].key == key)) continue;
      std::rotate(entries_.begin() + static_cast<std::ptrdiff_t>(i), entries_.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                  entries_.end());  // most recently used last
      return entries_.back().value;
    }
    for (size_t i = 0; i < entries_.size();) {  // an older version of this view
      if (entries_[i].key.same_view(key)) {
        bytes_ -= entries_[i].bytes;
        entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    Entry e{key, w, make(w, form, w_out_in), 0};
    e.bytes = e.value.w.numel() * static_cast<int64_t>(e.value.w.element_size()) +
              (w.requires_grad() ? 0 : w.numel() * static_cast<int64_t>(w.element_size()));
    bytes_ += e.bytes;
    entries_.push_back(std::move(e));
    while (bytes_ > kMaxBytes && entries_.size() > 1) {
      bytes_ -= entries_.front().bytes;
      entries_.erase(entries_.begin());
    }
    return entries_.back().value;
  }

  int64_t bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }

  static LowWeight make(const torch::Tensor& w, WeightForm form, bool w_out_in) {
    if (form == WeightForm::BFloat16) return {to_bf16(w), torch::Tensor()};
    if (form == WeightForm::Panels) return {pack_weight_panels(w, w_out_in), torch::Tensor()};
    // Symmetric int8 per output channel: W [out, in] reduces over dim 1, W [in, out] over 0.
    auto amax = w.abs().amax(w_out_in ? 1 : 0, /*keepdim=*/true).clamp_min(1e-12f);
    const float qmax = static_cast<float>(int8_quant_max());
    auto scale = amax / qmax;
    auto q = (w / scale).round().clamp(-qmax, qmax).to(torch::kChar);
    return {prepare(q), scale.reshape({-1}).contiguous()};
  }

 private:
  struct Key {
    const void* ptr;
    std::vector<int64_t> sizes, strides;
    int64_t version;
    WeightForm form;
    bool same_view(const Key& o) const {
      return ptr == o.ptr && form == o.form && sizes == o.sizes && strides == o.strides;
    }
    bool operator==(const Key& o) const { return version == o.version && same_view(o); }
  };
  struct Entry {
    Key key;
    torch::Tensor source;
    LowWeight value;
    int64_t bytes;
  };
  static constexpr int64_t kMaxBytes = int64_t{512} << 20;
  std::mutex mu_;
  std::vector<Entry> entries_;
  int64_t bytes_ = 0;
};

WeightCache& weight_cache() {
  static WeightCache cache;
  return cache;
}

THOR_VECTOR_CLONES void quantize_row(const float* row, int64_t K, float qmax, int8_t* out, float* scale) {
  float lanes[16] = {};  // independent maxima: vectorisable
  int64_t k0 = 0;
  for (; k0 + 16 <= K; k0 += 16)
    for (int l = 0; l < 16; ++l) lanes[l] = std::max(lanes[l], std::fabs(row[k0 + l]));
  float amax = 0.0f;
  for (; k0 < K; ++k0) amax = std::max(amax, std::fabs(row[k0]));
  for (int l = 0; l < 16; ++l) amax = std::max(amax, lanes[l]);
  const float s = amax > 0.0f ? amax / qmax : 1.0f, inv = 1.0f / s;
  for (int64_t k = 0; k < K; ++k) out[k] = static_cast<int8_t>(std::nearbyint(row[k] * inv));
  *scale = s;
}

THOR_VECTOR_CLONES void dequantize_row(const int32_t* acc, int64_t N, float s, const float* col_scale,
                                       const float* bias, float* out) {
  if (bias) {
    for (int64_t n = 0; n < N; ++n) out[n] = static_cast<float>(acc[n]) * s * col_scale[n] + bias[n];
  } else {
    for (int64_t n = 0; n < N; ++n) out[n] = static_cast<float>(acc[n]) * s * col_scale[n];
  }
}

// int8 activations: each row scaled by its own max |x| / int8_quant_max() (symmetric, per row).
void quantize_rows(const torch::Tensor& x, torch::Tensor& q, torch::Tensor& scale) {
  const int64_t M = x.size(0), K = x.size(1);
  q = torch::empty({M, K}, x.options().dtype(torch::kChar));
  scale = torch::empty({M}, x.options());
  const float* px = x.data_ptr<float>();
  int8_t* pq = q.data_ptr<int8_t>();
  float* ps = scale.data_ptr<float>();
  const float qmax = static_cast<float>(int8_quant_max());
  at::parallel_for(0, M, 16, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) quantize_row(px + m * K, K, qmax, pq + m * K, ps + m);
  });
}

// y = x op(W) + b without autograd in the low precisions: bf16 operands (the weight from the
// cache), or int8 (rows of x and channels of W quantised, int32 products rescaled).
torch::Tensor low_precision_product(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                                    bool w_out_in, Precision p) {
  RECORD_FUNCTION(p == Precision::Int8 ? "thor::gemm_int8" : "thor::gemm_bf16", std::vector<c10::IValue>());
  auto lw = weight_cache().get(w, p == Precision::Int8 ? WeightForm::Int8 : WeightForm::BFloat16, w_out_in);
  auto op_w = w_out_in ? lw.w.t() : lw.w;
  const int64_t M = x.size(0), N = op_w.size(1);
  if (p == Precision::BFloat16) return biased_product(to_bf16(x), op_w, b, x.options());
  const bool has_bias = b.numel() > 0;
  torch::Tensor xq, xs;
  quantize_rows(x.contiguous(), xq, xs);
  auto acc = torch::empty({M, N}, x.options().dtype(torch::kInt));
  sgemm(xq, op_w, acc);
  auto y = torch::empty({M, N}, x.options());
  const int32_t* pa = acc.data_ptr<int32_t>();
  const float* px = xs.data_ptr<float>();
  const float* pw = lw.scale.data_ptr<float>();
  auto bias = has_bias ? b.contiguous() : b;
  const float* pb = has_bias ? bias.data_ptr<float>() : nullptr;
  float* py = y.data_ptr<float>();
  at::parallel_for(0, M, 16, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) dequantize_row(pa + m * N, N, px[m], pw, pb, py + m * N);
  });
  return y;
}

// y = x op(W) + b in float32 without autograd from the weight's cached panels (packed_gemm.h).
torch::Tensor packed_product(const torch::Tensor& x_in, const torch::Tensor& w, const torch::Tensor& b,
                             bool w_out_in) {
  RECORD_FUNCTION("thor::gemm", std::vector<c10::IValue>());
  auto x = x_in.stride(1) == 1 && x_in.stride(0) >= x_in.size(1) ? x_in : x_in.contiguous();
  auto panels = weight_cache().get(w, WeightForm::Panels, w_out_in).w;
  const int64_t M = x.size(0), K = x.size(1), N = w_out_in ? w.size(0) : w.size(1);
  auto y = torch::empty({M, N}, x.options());
  auto bias = b.numel() > 0 ? b.contiguous() : b;
  packed_gemm(x.data_ptr<float>(), M, K, x.stride(0), panels, N, b.numel() > 0 ? bias.data_ptr<float>() : nullptr,
              y.data_ptr<float>(), N);
  return y;
}

// y = x op(W) + b, with op(W) = W^T when w_out_in (W [out, in]), else W [in, out]. With
// bf16 the operands of all three products (forward, input and weight gradients) are
// rounded to bfloat16 and the products accumulate in float32 (mixed precision: parameters,
// gradients and everything outside the products stay float32); x is saved in bf16.
class Gemm : public torch::autograd::Function<Gemm> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& w_in, const torch::Tensor& b, bool w_out_in, bool bf16) {
    RECORD_FUNCTION("thor::gemm", std::vector<c10::IValue>());
    auto x = bf16 ? to_bf16(x_in) : prepare(x_in), w = bf16 ? to_bf16(w_in) : prepare(w_in);
    // no bias: an empty tensor (LibTorch 1.13 rejects undefined inputs)
    auto y = biased_product(x, w_out_in ? w.t() : w, b, x_in.options());
    ctx->save_for_backward({x, w});
    ctx->saved_data["w_out_in"] = w_out_in;
    ctx->saved_data["has_bias"] = b.numel() > 0;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    RECORD_FUNCTION("thor::gemm_backward", std::vector<c10::IValue>());
    auto saved = ctx->get_saved_variables();
    auto x = saved[0], w = saved[1];
    bool w_out_in = ctx->saved_data["w_out_in"].toBool();
    auto gy = grad[0].contiguous();
    const bool bias_grad = ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2);
    torch::Tensor gy_op = gy, gx, gw, gb;
    if (x.scalar_type() == torch::kBFloat16) {
      // one pass over the gradient: its bf16 copy for the products and, only where there is
      // a bias to train, the bias gradient (the vocabulary projection has none)
      std::tie(gy_op, gb) = bf16_with_column_sums(gy, bias_grad);
    } else if (bias_grad) {
      gb = gy.sum(0);
    }
    auto f32 = gy.options();
    if (ctx->needs_input_grad(0)) {  // gx = gy op(W)^T
      gx = torch::empty(x.sizes(), f32);
      sgemm(gy_op, w_out_in ? w : w.t(), gx);
    }
    if (ctx->needs_input_grad(1)) {  // W [out, in]: gy^T x ; W [in, out]: x^T gy
      gw = torch::empty(w.sizes(), f32);
      if (w_out_in)
        sgemm(gy_op.t(), x, gw);
      else
        sgemm(x.t(), gy_op, gw);
    }
    return {gx, gw, gb, torch::Tensor(), torch::Tensor()};
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
  auto x2 = x.reshape({-1, in});
  auto bias = b.defined() ? b : torch::empty({0}, w.options());
  const Precision p = g_precision.load();
  const bool graph = torch::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || bias.requires_grad());
  torch::Tensor y;
  if (p != Precision::Float32 && !graph) {
    y = low_precision_product(x2, w, bias, w_out_in, p);
  } else if (!graph && packed_gemm_preferred() && w.dim() == 2) {
    y = packed_product(x2, w, bias, w_out_in);
  } else {
    TORCH_CHECK(p != Precision::Int8, "int8 products are for inference: they have no backward");
    y = Gemm::apply(x2, w, bias, w_out_in, p == Precision::BFloat16);
  }
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

bool precision_available(Precision p) {
  if (p == Precision::Float32) return true;
  if (!onednn_sgemm()) return false;
  // Present and working on this CPU: one 2x2x2 product, checked against its exact value.
  static const bool bf16_ok = [] {
    if (!onednn_bf16_gemm()) return false;
    c10::BFloat16 a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1};
    float c[4] = {0, 0, 0, 0};
    return onednn_bf16_gemm()('N', 'N', 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2) == 0 && c[0] == 1 && c[3] == 4;
  }();
  static const bool int8_ok = [] {
    if (!onednn_s8_gemm()) return false;
    int8_t a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, -1};
    int32_t c[4] = {0, 0, 0, 0};
    const int32_t co = 0;
    return onednn_s8_gemm()('N', 'N', 'F', 2, 2, 2, 1.0f, a, 2, 0, b, 2, 0, 0.0f, c, 2, &co) == 0 && c[0] == 1 &&
           c[3] == -4;
  }();
  return p == Precision::BFloat16 ? bf16_ok : int8_ok;
}

int int8_quant_max() {
  // Without VNNI (AVX2, AVX-512 before Cascade Lake) oneDNN multiplies int8 pairs with
  // vpmaddubsw, whose 16-bit pair sums saturate for operands near +-127 (measured on an
  // AMD EPYC Zen 3: errors of 1e6 in a 64-term product of 127s). Operands within +-63 cannot
  // saturate; the probe is a product whose exact value needs the full range.
  static const int qmax = [] {
    if (!onednn_s8_gemm()) return 127;
    // A [2, K]: row 0 all +127, row 1 alternating +-127; B [K, 2] likewise by column
    constexpr int K = 32;
    int8_t a[2 * K], b[K * 2];
    for (int k = 0; k < K; ++k) {
      const auto alt = static_cast<int8_t>(k % 2 ? -127 : 127);
      a[k] = 127, a[K + k] = alt;
      b[k * 2] = 127, b[k * 2 + 1] = alt;
    }
    int32_t c[4] = {0, 0, 0, 0};
    const int32_t co = 0;
    if (onednn_s8_gemm()('N', 'N', 'F', 2, 2, K, 1.0f, a, K, 0, b, 2, 0, 0.0f, c, 2, &co) != 0) return 63;
    const int32_t full = K * 127 * 127;
    return c[0] == full && c[1] == 0 && c[2] == 0 && c[3] == full ? 127 : 63;
  }();
  return qmax;
}

void set_matmul_precision(Precision p) {
  if (!precision_available(p))
    throw Error("--precision " + precision_name(p) +
                ": needs oneDNN's CPU gemm for that type (libdnnl.so.2 loaded by LibTorch), not found in this process");
  g_precision.store(p);
}

Precision matmul_precision() { return g_precision.load(); }

Precision parse_precision(const std::string& name) {
  if (name == "float32" || name == "fp32") return Precision::Float32;
  if (name == "bf16" || name == "bfloat16") return Precision::BFloat16;
  if (name == "int8") return Precision::Int8;
  throw Error("--precision: unknown '" + name + "' (float32, bf16, int8)");
}

std::string precision_name(Precision p) {
  switch (p) {
    case Precision::Float32: return "float32";
    case Precision::BFloat16: return "bf16";
    case Precision::Int8: return "int8";
  }
  return "?";
}

bool cpu_has_native_bf16() { return __builtin_cpu_supports("avx512bf16") != 0; }

bool cpu_has_native_int8() {
  if (__builtin_cpu_supports("avx512vnni")) return true;
  // AVX-VNNI (CPUID.(EAX=7,ECX=1):EAX[4]): asked of cpuid, as older compilers' builtins
  // have no name for it
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1u) != 0;
}

Precision auto_precision(const torch::Device& device) {
  if (device.is_cpu() && cpu_has_native_bf16() && precision_available(Precision::BFloat16)) return Precision::BFloat16;
  return Precision::Float32;
}

Precision use_precision(const std::string& name, const torch::Device& device, bool training) {
  if (name == "auto") {
    const Precision p = auto_precision(device);
    THOR_LOG("precision") << "auto: " << precision_name(p) << " products ("
                          << (device.is_cpu() ? (cpu_has_native_bf16() ? "the CPU has AVX512-BF16" : "the CPU has no native bf16 products")
                                              : device.str()) << ")";
    if (p != Precision::Float32) set_matmul_precision(p);
    return p;
  }
  const Precision p = parse_precision(name);
  if (p == Precision::Float32) return p;
  if (training && p == Precision::Int8) throw Error("--precision int8 is for inference (translate); train with float32 or bf16");
  if (!device.is_cpu()) throw Error("--precision " + name + ": implemented for the CPU (oneDNN); use float32 on " + device.str());
  set_matmul_precision(p);
  if (p == Precision::BFloat16 && !cpu_has_native_bf16())
    THOR_WARN("precision") << "this CPU has no AVX512-BF16: oneDNN emulates bf16 products, likely slower than float32";
  return p;
}

int64_t low_precision_cache_bytes() { return weight_cache().bytes(); }

std::pair<torch::Tensor, torch::Tensor> bf16_with_column_sums(const torch::Tensor& g_in, bool with_sums) {
  TORCH_CHECK(g_in.dim() == 2 && g_in.scalar_type() == torch::kFloat && g_in.device().is_cpu(),
              "bf16_with_column_sums: expected a float32 CPU matrix");
  auto g = g_in.contiguous();
  const int64_t M = g.size(0), N = g.size(1);
  auto out = torch::empty({M, N}, g.options().dtype(torch::kBFloat16));
  const float* pg = g.data_ptr<float>();
  auto* po = reinterpret_cast<uint16_t*>(out.data_ptr<c10::BFloat16>());
  // blocks of rows summed in float32 (threads take blocks), then the blocks in float64 in
  // block order: the same sums for any number of threads
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (M + kBlock - 1) / kBlock;
  auto part = with_sums ? torch::zeros({blocks, N}, g.options()) : torch::Tensor();
  float* pp = with_sums ? part.data_ptr<float>() : nullptr;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      bf16_rows_and_sums(pg, N, b * kBlock, std::min(M, (b + 1) * kBlock), po, pp ? pp + b * N : nullptr);
  });
  if (!with_sums) return {out, torch::Tensor()};
  auto sums = torch::empty({N}, g.options());
  float* ps = sums.data_ptr<float>();
  for (int64_t n = 0; n < N; ++n) {
    double t = 0;
    for (int64_t b = 0; b < blocks; ++b) t += pp[b * N + n];
    ps[n] = static_cast<float>(t);
  }
  return {out, sums};
}

PrecisionGuard::PrecisionGuard(Precision p) : saved_(matmul_precision()) { set_matmul_precision(p); }
PrecisionGuard::~PrecisionGuard() { g_precision.store(saved_); }

}  // namespace thor

namespace thor {

double measure_gemm_gflops(int64_t n, int reps) {
  torch::NoGradGuard ng;
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  return runtime::median_gflops([&] { linear_in_out(a, b, torch::Tensor()); }, 2.0 * n * n * n, reps);
}

}  // namespace thor
