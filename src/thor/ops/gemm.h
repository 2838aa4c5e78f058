// Dense products of the model (projections, FFN / expert banks, output layer) through one
// function, so the matrix-multiply backend is chosen in one place. On the CPU, float32,
// contiguous operands go to oneDNN's sgemm when the process has it (Debian's LibTorch
// loads libdnnl.so.2; found with dlsym, no build dependency): on this machine kind it runs
// the model's shapes 10-70 % faster than the OpenBLAS that at::mm uses. Everything else
// (CUDA, half precision, no oneDNN, THOR_GEMM=aten) takes at::linear / at::addmm.
#pragma once
#include <string>

#include <torch/torch.h>

namespace thor {

// y = x W^T + b with W [out, in] (torch Linear layout); x [..., in]; b [out] or undefined.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

// y = x W + b with W [in, out] (expert bank layout); x [n, in]; b [out] or undefined.
torch::Tensor linear_in_out(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

// c[i] = a[i] b[i] over the leading (batch) dimensions, a [..., M, K], b [..., K, N] with the
// same batch shape (attention scores and weighted sums). Each matrix may be a strided or
// transposed view (no copies); on the fast path the batch runs in parallel, one sgemm per
// matrix, instead of LibTorch 1.13's serial per-batch loop for small matrices.
torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b);

// "onednn" or "aten": the backend the CPU float path uses in this process.
std::string gemm_backend();

}  // namespace thor

namespace thor {

// Median GFLOP/s of an n^3 product through linear_in_out (the model's own path) on the CPU.
double measure_gemm_gflops(int64_t n, int reps);

}  // namespace thor
