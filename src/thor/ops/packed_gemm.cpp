// See packed_gemm.h.
#include "thor/ops/packed_gemm.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace thor {

namespace {

constexpr int64_t NR = kPanelWidth;

// Rows [0, MR) of c (columns [0, ncols) of one panel) = a op(W) + bias: 2 x MR accumulators
// of 8 floats, one broadcast of a per row and two loads of the panel per k.
template <int MR>
__attribute__((target("avx2,fma"))) inline void micro_kernel(const float* a, int64_t lda, const float* panel,
                                                              int64_t K, const float* bias, float* c, int64_t ldc,
                                                              int64_t ncols) {
  const __m256 z = _mm256_setzero_ps();
  __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
  const float* a0 = a;
  const float* a1 = a + lda;
  const float* a2 = a + 2 * lda;
  const float* a3 = a + 3 * lda;
  const float* a4 = a + 4 * lda;
  const float* a5 = a + 5 * lda;
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_loadu_ps(panel + k * NR), b1 = _mm256_loadu_ps(panel + k * NR + 8);
    __m256 av;
    // named accumulators (not an array) so that they stay in registers
#define THOR_ROW(i)                                   \
  if constexpr (MR > i) {                             \
    av = _mm256_broadcast_ss(a##i + k);               \
    c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);       \
    c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);       \
  }
    THOR_ROW(0) THOR_ROW(1) THOR_ROW(2) THOR_ROW(3) THOR_ROW(4) THOR_ROW(5)
#undef THOR_ROW
  }
  if (ncols == NR) {
    const __m256 bb0 = bias ? _mm256_loadu_ps(bias) : z, bb1 = bias ? _mm256_loadu_ps(bias + 8) : z;
#define THOR_OUT(i)                                                          \
  if constexpr (MR > i) {                                                    \
    _mm256_storeu_ps(c + i * ldc, _mm256_add_ps(c##i##0, bb0));              \
    _mm256_storeu_ps(c + i * ldc + 8, _mm256_add_ps(c##i##1, bb1));          \
  }
    THOR_OUT(0) THOR_OUT(1) THOR_OUT(2) THOR_OUT(3) THOR_OUT(4) THOR_OUT(5)
#undef THOR_OUT
    return;
  }
  alignas(32) float t[6][NR];
#define THOR_OUT(i)                         \
  if constexpr (MR > i) {                   \
    _mm256_store_ps(t[i], c##i##0);         \
    _mm256_store_ps(t[i] + 8, c##i##1);     \
  }
  THOR_OUT(0) THOR_OUT(1) THOR_OUT(2) THOR_OUT(3) THOR_OUT(4) THOR_OUT(5)
#undef THOR_OUT
  for (int i = 0; i < MR; ++i)
    for (int64_t j = 0; j < ncols; ++j) c[i * ldc + j] = t[i][j] + (bias ? bias[j] : 0.0f);
}

// Rows [0, M) of one panel's columns, 6 rows at a time.
__attribute__((target("avx2,fma"))) void panel_rows(const float* a, int64_t M, int64_t K, int64_t lda,
                                                     const float* panel, const float* bias, float* c, int64_t ldc,
                                                     int64_t ncols) {
  int64_t m = 0;
  for (; m + 6 <= M; m += 6) micro_kernel<6>(a + m * lda, lda, panel, K, bias, c + m * ldc, ldc, ncols);
  const float* ar = a + m * lda;
  float* cr = c + m * ldc;
  switch (M - m) {
    case 1: micro_kernel<1>(ar, lda, panel, K, bias, cr, ldc, ncols); break;
    case 2: micro_kernel<2>(ar, lda, panel, K, bias, cr, ldc, ncols); break;
    case 3: micro_kernel<3>(ar, lda, panel, K, bias, cr, ldc, ncols); break;
    case 4: micro_kernel<4>(ar, lda, panel, K, bias, cr, ldc, ncols); break;
    case 5: micro_kernel<5>(ar, lda, panel, K, bias, cr, ldc, ncols); break;
    default: break;
  }
}

}  // namespace

torch::Tensor pack_weight_panels(const torch::Tensor& w, bool w_out_in) {
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == torch::kFloat && w.device().is_cpu(),
              "pack_weight_panels: a 2-d float32 CPU weight");
  auto op = (w_out_in ? w.t() : w).contiguous();  // [K, N]
  const int64_t K = op.size(0), N = op.size(1), P = (N + NR - 1) / NR;
  auto panels = torch::zeros({P, K, NR}, w.options().requires_grad(false));
  const float* src = op.data_ptr<float>();
  float* dst = panels.data_ptr<float>();
  at::parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * NR, nc = std::min(NR, N - n0);
      for (int64_t k = 0; k < K; ++k) std::memcpy(dst + (p * K + k) * NR, src + k * N + n0, nc * sizeof(float));
    }
  });
  return panels;
}

void packed_gemm(const float* a, int64_t M, int64_t K, int64_t lda, const torch::Tensor& panels, int64_t N,
                 const float* bias, float* c, int64_t ldc) {
  TORCH_CHECK(packed_gemm_supported(), "packed_gemm: this CPU lacks AVX2 / FMA");
  TORCH_CHECK(panels.dim() == 3 && panels.size(1) == K && panels.size(2) == NR &&
                  panels.size(0) == (N + NR - 1) / NR && panels.is_contiguous(),
              "packed_gemm: panels do not match K = ", K, ", N = ", N);
  if (M == 0 || N == 0) return;
  const float* pw = panels.data_ptr<float>();
  const int64_t P = panels.size(0);
  // Row blocks of about 128 KB of a, so that a block stays in L2 while the panels pass.
  const int64_t mc = std::max<int64_t>(6, (32768 / std::max<int64_t>(K, 1)) / 6 * 6);
  at::parallel_for(0, P, 4, [&](int64_t p0, int64_t p1) {
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
      const int64_t rows = std::min(mc, M - m0);
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t n0 = p * NR;
        panel_rows(a + m0 * lda, rows, K, lda, pw + p * K * NR, bias ? bias + n0 : nullptr, c + m0 * ldc + n0, ldc,
                   std::min(NR, N - n0));
      }
    }
  });
}

bool packed_gemm_supported() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

bool packed_gemm_preferred() {
  static const bool preferred = [] {
    const char* env = std::getenv("THOR_PACKED_GEMM");
    if (env && std::strcmp(env, "0") == 0) return false;
    return packed_gemm_supported() && !__builtin_cpu_supports("avx512f");
  }();
  return preferred;
}

}  // namespace thor
