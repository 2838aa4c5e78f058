// See attention_kernel.h.
#include "thor/ops/attention_kernel.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <cmath>
#include <limits>
#include <vector>

#include "thor/ops/simd.h"

namespace thor {

namespace {

// 16 independent partial sums: vectorisable without -ffast-math (a plain float reduction
// must keep its order and stays scalar).
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] += a[i + l] * b[i + l];
  float s = 0.0f;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int l = 0; l < 16; ++l) s += acc[l];
  return s;
}

inline void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

struct Problem {
  const float *q, *k, *v;
  const bool* mask;  // [B, S] or null
  float* out;        // [B, T, H, Dh]
  int64_t H, T, Dh, S, qs0, qs1, qs2, ks0, ks1, ks2, vs0, vs1, vs2;
  bool causal;
  const int64_t* history = nullptr;  // paged: [B, hs], the k/v row holding key j of row b
  int64_t hs = 0;
  const int64_t* first = nullptr;  // paged: [B], the first key of row b (earlier ones are not its own)
};

// (sentence, head) pairs [bh0, bh1): the whole loop is compiled per instruction set, with
// dot and axpy inlined into it.
THOR_VECTOR_CLONES void attend_range(const Problem& a, int64_t bh0, int64_t bh1) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const int64_t H = a.H, T = a.T, Dh = a.Dh, S = a.S;
  std::vector<float> p(static_cast<size_t>(S));
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const float* kb = a.k + b * a.ks0 + h * a.ks1;
    const float* vb = a.v + b * a.vs0 + h * a.vs1;
    const bool* mb = a.mask ? a.mask + b * S : nullptr;
    for (int64_t i = 0; i < T; ++i) {
      const float* qi = a.q + b * a.qs0 + h * a.qs1 + i * a.qs2;
      const int64_t last = a.causal ? std::min(S, i + S - T + 1) : S;  // keys [j0, last)
      const int64_t j0 = a.first ? a.first[b] : 0;
      float mx = ninf;
      const int64_t* hist = a.history ? a.history + b * a.hs : nullptr;
      for (int64_t j = j0; j < last; ++j) {
        const float* kj = hist ? a.k + hist[j] * a.ks0 + h * a.ks1 + j * a.ks2 : kb + j * a.ks2;
        const float s = (mb && mb[j]) ? ninf : dot(qi, kj, Dh);
        p[static_cast<size_t>(j)] = s;
        mx = std::max(mx, s);
      }
      float* oi = a.out + ((b * T + i) * H + h) * Dh;
      for (int64_t d = 0; d < Dh; ++d) oi[d] = 0.0f;
      if (mx == ninf) continue;  // every key masked
      float sum = 0.0f;
      for (int64_t j = j0; j < last; ++j) {
        const float e = std::exp(p[static_cast<size_t>(j)] - mx);
        p[static_cast<size_t>(j)] = e;
        sum += e;
      }
      const float inv = 1.0f / sum;
      for (int64_t j = j0; j < last; ++j) {
        if (p[static_cast<size_t>(j)] == 0.0f) continue;
        const float* vj = hist ? a.v + hist[j] * a.vs0 + h * a.vs1 + j * a.vs2 : vb + j * a.vs2;
        axpy(p[static_cast<size_t>(j)] * inv, vj, oi, Dh);
      }
    }
  }
}

torch::Tensor unit_last_stride(const torch::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

}  // namespace

torch::Tensor attention_inference(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v_in,
                                  const torch::Tensor& key_padding_mask, bool causal) {
  RECORD_FUNCTION("thor::attention_inference", std::vector<c10::IValue>());
  TORCH_CHECK(q_in.device().is_cpu() && q_in.scalar_type() == torch::kFloat && q_in.dim() == 4,
              "attention_inference: expected float32 CPU q [B, H, T, Dh]");
  auto q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), Dh = q.size(3), S = k.size(2);
  TORCH_CHECK(k.size(0) == B && k.size(1) == H && k.size(3) == Dh && v.sizes() == k.sizes(),
              "attention_inference: k/v shapes do not match q");
  torch::Tensor mask;
  if (key_padding_mask.defined()) {
    mask = key_padding_mask.to(torch::kBool).contiguous();
    TORCH_CHECK(mask.dim() == 2 && mask.size(0) == B && mask.size(1) == S, "attention_inference: mask [B, S]");
  }
  auto out = torch::empty({B, T, H, Dh}, q.options());
  const float* pq = q.data_ptr<float>();
  const float* pk = k.data_ptr<float>();
  const float* pv = v.data_ptr<float>();
  const bool* pm = mask.defined() ? mask.data_ptr<bool>() : nullptr;
  float* po = out.data_ptr<float>();
  const int64_t qs0 = q.stride(0), qs1 = q.stride(1), qs2 = q.stride(2);
  const int64_t ks0 = k.stride(0), ks1 = k.stride(1), ks2 = k.stride(2);
  const int64_t vs0 = v.stride(0), vs1 = v.stride(1), vs2 = v.stride(2);
  Problem pr{pq, pk, pv, pm, po, H, T, Dh, S, qs0, qs1, qs2, ks0, ks1, ks2, vs0, vs1, vs2, causal};
  at::parallel_for(0, B * H, 4, [&](int64_t bh0, int64_t bh1) { attend_range(pr, bh0, bh1); });
  return out.view({B, T, H * Dh});
}

torch::Tensor attention_paged(const torch::Tensor& q_in, const torch::Tensor& k_buf, const torch::Tensor& v_buf,
                              const torch::Tensor& history, int64_t len, const torch::Tensor& first) {
  RECORD_FUNCTION("thor::attention_paged", std::vector<c10::IValue>());
  TORCH_CHECK(q_in.device().is_cpu() && q_in.scalar_type() == torch::kFloat && q_in.dim() == 4 && q_in.size(2) == 1,
              "attention_paged: expected float32 CPU q [N, H, 1, Dh]");
  TORCH_CHECK(k_buf.is_contiguous() && v_buf.is_contiguous() && k_buf.sizes() == v_buf.sizes() && k_buf.dim() == 4,
              "attention_paged: k/v buffers [rows, capacity, H, Dh], contiguous");
  TORCH_CHECK(history.scalar_type() == torch::kLong && history.is_contiguous() && history.dim() == 2,
              "attention_paged: history int64 [N, capacity]");
  auto q = unit_last_stride(q_in);
  const int64_t N = q.size(0), H = q.size(1), Dh = q.size(3);
  TORCH_CHECK(history.size(0) == N && history.size(1) >= len && k_buf.size(1) >= len && k_buf.size(2) == H &&
                  k_buf.size(3) == Dh,
              "attention_paged: shapes do not match");
  TORCH_CHECK(!first.defined() || (first.scalar_type() == torch::kLong && first.is_contiguous() && first.dim() == 1 &&
                                   first.size(0) == N),
              "attention_paged: first int64 [N], contiguous");
  if (first.defined())
    for (const int64_t* f = first.data_ptr<int64_t>(); f != first.data_ptr<int64_t>() + N; ++f)
      TORCH_CHECK(*f >= 0 && *f < len, "attention_paged: a row's first key outside [0, len)");
  auto out = torch::empty({N, 1, H, Dh}, q.options());
  Problem pr{q.data_ptr<float>(), k_buf.data_ptr<float>(), v_buf.data_ptr<float>(), nullptr, out.data_ptr<float>(),
             H, 1, Dh, len, q.stride(0), q.stride(1), q.stride(2),
             k_buf.stride(0), k_buf.stride(2), k_buf.stride(1), v_buf.stride(0), v_buf.stride(2), v_buf.stride(1),
             false, history.data_ptr<int64_t>(), history.size(1), first.defined() ? first.data_ptr<int64_t>() : nullptr};
  at::parallel_for(0, N * H, 4, [&](int64_t bh0, int64_t bh1) { attend_range(pr, bh0, bh1); });
  return out.view({N, 1, H * Dh});
}

}  // namespace thor
