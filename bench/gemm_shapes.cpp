// The model's float32 products without autograd (thor::linear under NoGradGuard, the
// decoding path) on transformer_tiny's shapes at several row counts, one thread: median
// milliseconds and GFLOP/s per shape, one JSON line each. bench/packed_gemm.sh runs it with
// THOR_PACKED_GEMM=0 (oneDNN's sgemm) and without (the packed panels) and compares.
//   gemm_shapes [--cold]   (--cold: 64 MB written between calls, evicting the weights)
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "thor/ops/gemm.h"
#include "thor/ops/packed_gemm.h"

int main(int argc, char** argv) {
  const bool cold = argc > 1 && std::strcmp(argv[1], "--cold") == 0;
  at::set_num_threads(1);
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  std::vector<float> flush(size_t{16} << 20);
  const std::string path = thor::packed_gemm_preferred() ? "packed" : thor::gemm_backend();
  const int64_t shapes[][2] = {{256, 768}, {256, 256}, {256, 1024}, {1024, 256}, {256, 8000}};  // K, N
  for (const auto& s : shapes) {
    const int64_t K = s[0], N = s[1];
    auto w = torch::randn({N, K}), b = torch::randn({N});
    for (int64_t M : {1, 5, 15, 55, 110, 320}) {
      auto x = torch::randn({M, K});
      thor::linear(x, w, b);  // the weight's panels made outside the timing
      std::vector<double> ts;
      for (int r = 0; r < 200; ++r) {
        if (cold)
          for (size_t i = 0; i < flush.size(); i += 16) flush[i] += 1.0f;
        const auto t0 = std::chrono::steady_clock::now();
        auto y = thor::linear(x, w, b);
        ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::nth_element(ts.begin(), ts.begin() + 100, ts.end());
      const double t = ts[100];
      std::printf("{\"path\":\"%s\",\"cold\":%s,\"K\":%lld,\"N\":%lld,\"M\":%lld,\"ms\":%.4f,\"gflops\":%.1f}\n", path.c_str(),
                  cold ? "true" : "false", static_cast<long long>(K), static_cast<long long>(N),
                  static_cast<long long>(M), t * 1e3, 2.0 * M * K * N / t / 1e9);
    }
  }
  return 0;
}
