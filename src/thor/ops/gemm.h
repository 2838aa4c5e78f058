// Dense products of the model (projections, FFN / expert banks, output layer) through one
// function, so the matrix-multiply backend is chosen in one place. On the CPU, float32,
// contiguous operands go to oneDNN's sgemm when the process has it (Debian's LibTorch
// loads libdnnl.so.2; found with dlsym, no build dependency): on this machine kind it runs
// the model's shapes 10-70 % faster than the OpenBLAS that at::mm uses. Everything else
// (CUDA, half precision, no oneDNN, THOR_GEMM=aten) takes at::linear / at::addmm.
#pragma once
#include <string>
#include <utility>

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

// Precision of linear()/linear_in_out() products on the oneDNN path (attention products
// stay float32). Float32: exact sgemm. BFloat16: operands rounded to bfloat16, products
// accumulated and written in float32 (training: mixed precision, parameters and gradients
// float32; 2x sgemm's rate on CPUs with AVX512-BF16). Int8 (inference only): weights
// quantised symmetrically per output channel (cached), activations per row at each call,
// int32 products rescaled to float32 (CTranslate2's int8 scheme; ~4x sgemm with VNNI).
// Without autograd (decoding, validation) bf16/int8 weights are converted once and cached
// while unchanged. Process-wide; set once from the command line.
enum class Precision { Float32, BFloat16, Int8 };
void set_matmul_precision(Precision p);  // throws thor::Error when this process lacks the kernel
Precision matmul_precision();
bool precision_available(Precision p);
// The int8 operands' range, +-int8_quant_max(): 127 where oneDNN's int8 product is exact
// over the full range (VNNI, AMX), 63 where its 16-bit intermediate sums would saturate.
int int8_quant_max();
Precision parse_precision(const std::string& name);  // float32 | bf16 | int8; thor::Error otherwise
std::string precision_name(Precision p);
bool cpu_has_native_bf16();  // AVX512-BF16: without it oneDNN emulates bf16 (slower than float32)
bool cpu_has_native_int8();  // VNNI (AVX512-VNNI or AVX-VNNI): int8 products without 16-bit saturation
// --precision auto: bf16 on a CPU with native bf16 products (AVX512-BF16, AMX) where this
// process has oneDNN's bf16 kernel, float32 elsewhere (emulated bf16 is slower than float32;
// on CUDA the products stay float32).
Precision auto_precision(const torch::Device& device);
// The --precision option (float32 | bf16 | int8 | auto): parses, checks (int8 only when !training, low precisions only on
// the CPU), sets it process-wide and warns when bf16 would be emulated. Throws thor::Error.
Precision use_precision(const std::string& name, const torch::Device& device, bool training);

// g [M, N] float32 -> (its bfloat16 copy, rounded as .to(kBFloat16), and its column sums
// [N] float32 from the unrounded values): one pass where the bf16 backward needed a
// conversion and a separate sum for the bias gradient. with_sums = false: the copy only
// (sums undefined), for products without a bias.
std::pair<torch::Tensor, torch::Tensor> bf16_with_column_sums(const torch::Tensor& g, bool with_sums = true);

// Bytes held by the cache of converted weights (bounded; one entry per weight view).
int64_t low_precision_cache_bytes();

// Sets the precision for a scope (tests).
class PrecisionGuard {
 public:
  explicit PrecisionGuard(Precision p);
  ~PrecisionGuard();
  PrecisionGuard(const PrecisionGuard&) = delete;
  PrecisionGuard& operator=(const PrecisionGuard&) = delete;

 private:
  Precision saved_;
};

}  // namespace thor

namespace thor {

// Median GFLOP/s of an n^3 product through linear_in_out (the model's own path) on the CPU.
double measure_gemm_gflops(int64_t n, int reps);

}  // namespace thor
