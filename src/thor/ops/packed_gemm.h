// Float32 products against a weight packed once (inference): y = x op(W) + b with op(W)
// [K, N] stored as panels of 16 columns, each panel K rows of 16 contiguous floats. oneDNN's
// sgemm packs its B operand again on every call, which at the few rows of a decoding step
// (a server's batch of ~10 sentences x beam) costs as much as the product itself; reading a
// panel packed at load time leaves only the product (AVX2 + FMA micro-kernel, 6 rows x 16
// columns). Every output element is one in-order sum over K, so a row's result does not
// depend on the other rows, the batch size or the thread count.
#pragma once
#include <cstdint>

#include <torch/torch.h>

namespace thor {

constexpr int64_t kPanelWidth = 16;

// W [out, in] (w_out_in) or [in, out] -> float32 [ceil(N / 16), K, 16], N = out, K = in,
// the last panel's missing columns zero.
torch::Tensor pack_weight_panels(const torch::Tensor& w, bool w_out_in);

// c [M, ldc] (first N columns written) = a [M, K] (row stride lda) op(W) + bias (bias [N]
// or nullptr), panels from pack_weight_panels. Parallel over panels (at::parallel_for).
// Requires packed_gemm_supported().
void packed_gemm(const float* a, int64_t M, int64_t K, int64_t lda, const torch::Tensor& panels, int64_t N,
                 const float* bias, float* c, int64_t ldc);

// The CPU has AVX2 and FMA (the kernel's instructions).
bool packed_gemm_supported();
// linear()'s float32 products without autograd take this path: supported, not an AVX-512
// CPU (there oneDNN's wider kernels stay ahead), and THOR_PACKED_GEMM is not 0.
bool packed_gemm_preferred();

}  // namespace thor
