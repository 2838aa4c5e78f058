// `thor info`: what this build runs on and how fast its matrix products are.
#include <cstdio>

#include <torch/torch.h>
#include <torch/version.h>

#include "cli/commands.h"
#include "thor/common/runtime.h"
#include "thor/ops/gemm.h"

namespace thor::cli {

void add_info(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("info", "LibTorch version, device, threads, BLAS core, matmul GFLOP/s");
  static int64_t n = 2048;
  static std::string device = "auto";
  cmd->add_option("--size", n, "matmul size n for the n^3 measurement")->check(CLI::Range(16, 16384));
  cmd->add_option("--device", device, "auto, cpu or cuda[:N]");
  cmd->callback([&common] {
    apply_common(common);
    auto dev = runtime::parse_device(device);
    std::printf("libtorch: %s\n", TORCH_VERSION);
    std::printf("device: %s%s\n", dev.str().c_str(),
                torch::cuda::is_available() ? " (cuda available)" : " (no cuda)");
    std::printf("threads: %d\n", at::get_num_threads());
    std::printf("blas core: %s\n", runtime::blas_core().c_str());
    std::printf("matmul %lldx%lldx%lld: %.1f GFLOP/s\n", static_cast<long long>(n),
                static_cast<long long>(n), static_cast<long long>(n),
                runtime::measure_matmul_gflops(n, 5, dev));
    if (dev.is_cpu())
      std::printf("model gemm (%s) %lldx%lldx%lld: %.1f GFLOP/s\n", gemm_backend().c_str(), static_cast<long long>(n),
                  static_cast<long long>(n), static_cast<long long>(n), measure_gemm_gflops(n, 5));
  });
}

}  // namespace thor::cli
