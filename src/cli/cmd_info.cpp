// `thor info`: what this build runs on and how fast its matrix products are;
// `thor info --model P`: a checkpoint checked and summarised (its parameter digest included).
#include <algorithm>
#include <cstdio>

#include <torch/torch.h>
#include <torch/version.h>

#include "cli/commands.h"
#include "thor/common/runtime.h"
#include "thor/ops/gemm.h"
#include "thor/train/checkpoint.h"

namespace thor::cli {

void add_info(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("info", "LibTorch version, device, threads, BLAS core, matmul GFLOP/s");
  static int64_t n = 2048;
  static std::string device = "auto";
  cmd->add_option("--size", n, "matmul size n for the n^3 measurement")->check(CLI::Range(16, 16384));
  cmd->add_option("--device", device, "auto, cpu or cuda[:N]");
  static std::string model_path;
  cmd->add_option("--model", model_path,
                  "a checkpoint instead: check it (format, checksum, expert shards) and print what it holds");
  cmd->callback([&common] {
    apply_common(common);
    if (!model_path.empty()) {
      auto lm = load_model(model_path, torch::kCPU);
      int64_t params = 0;
      for (auto& p : lm.model->parameters()) params += p.numel();
      const auto& pos = lm.train_state.value("position", nlohmann::json::object());
      const auto& meta = lm.train_state.value("meta", nlohmann::json::object());
      std::printf("checkpoint: %s\n", model_path.c_str());
      std::printf("updates: %lld\n", static_cast<long long>(pos.value("num_updates", int64_t{0})));
      std::printf("model: %s, %lld parameters, %lld experts (router %s)\n", lm.config.arch.c_str(),
                  static_cast<long long>(params), static_cast<long long>(lm.config.num_experts),
                  lm.config.router.c_str());
      std::printf("languages: %s -> %s\n", meta.value("src_lang", std::string("?")).c_str(),
                  meta.value("tgt_lang", std::string("?")).c_str());
      std::printf("parameter digest: %08x\n", parameter_digest(lm.model));
      return;
    }
    auto dev = runtime::parse_device(device);
    std::printf("libtorch: %s\n", TORCH_VERSION);
    std::printf("device: %s%s\n", dev.str().c_str(),
                torch::cuda::is_available() ? " (cuda available)" : " (no cuda)");
    std::printf("threads: %d\n", at::get_num_threads());
    std::printf("blas core: %s\n", runtime::blas_core().c_str());
    std::printf("matmul %lldx%lldx%lld: %.1f GFLOP/s\n", static_cast<long long>(n),
                static_cast<long long>(n), static_cast<long long>(n),
                runtime::measure_matmul_gflops(n, 5, dev));
    if (!dev.is_cpu()) return;
    std::printf("model gemm (%s) %lldx%lldx%lld: %.1f GFLOP/s\n", gemm_backend().c_str(), static_cast<long long>(n),
                static_cast<long long>(n), static_cast<long long>(n), measure_gemm_gflops(n, 5));
    // the --precision choices on this CPU, each measured through the model's own products
    const int64_t m = std::min<int64_t>(n, 1024);
    for (auto p : {Precision::Float32, Precision::BFloat16, Precision::Int8}) {
      const auto name = precision_name(p);
      if (!precision_available(p)) {
        std::printf("precision %s: not available (oneDNN has no %s product for this CPU)\n", name.c_str(), name.c_str());
        continue;
      }
      PrecisionGuard guard(p);
      const double rate = measure_gemm_gflops(m, 5);
      const char* how = p == Precision::Float32                             ? "native"
                        : p == Precision::BFloat16 && cpu_has_native_bf16() ? "native (AVX512-BF16)"
                        : p == Precision::BFloat16                          ? "emulated: slower than float32 here"
                        : cpu_has_native_int8()                             ? "native (VNNI)"
                                                                            : "no VNNI: operands within +-63";
      std::printf("precision %s %lldx%lldx%lld: %.1f GFLOP/s (%s)\n", name.c_str(), static_cast<long long>(m),
                  static_cast<long long>(m), static_cast<long long>(m), rate, how);
    }
    std::printf("precision auto: %s\n", precision_name(auto_precision(dev)).c_str());
  });
}

}  // namespace thor::cli
