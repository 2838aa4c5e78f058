// See runtime.h.
#include "thor/common/runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "thor/common/error.h"
#include "thor/common/log.h"

namespace thor {

int& log_level() {
  static int level = 1;
  return level;
}

namespace runtime {

void ensure_fast_blas(int argc, char** argv) {
  (void)argc;
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("THOR_NO_REEXEC")) return;
  const char* core = nullptr;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    core = "SkylakeX";
  else if (__builtin_cpu_supports("avx2"))
    core = "Haswell";
#endif
  if (!core) return;
  setenv("OPENBLAS_CORETYPE", core, 0);
  setenv("THOR_NO_REEXEC", "1", 1);  // never loop
  execv("/proc/self/exe", argv);
  // execv only returns on failure: carry on with whatever kernels OpenBLAS picked.
}

void tune_allocator() {
  // Keep freed memory: large tensors come from the heap (no mmap per allocation) and the
  // heap is never trimmed (-1). A THOR update frees well over 1 GB at once, so any finite
  // threshold below that still hands it back and faults it in again at the next update.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, -1);
  mallopt(M_TOP_PAD, 64 << 20);
}

void set_threads(int threads) {
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(threads);
}

torch::Device parse_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? torch::kCUDA : torch::kCPU;
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) throw Error("--device " + name + ": CUDA is not available");
    return torch::Device(name);
  }
  throw Error("--device: unknown device '" + name + "' (expected auto, cpu or cuda[:N])");
}

std::string blas_core() {
  using Fn = char* (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!fn) return "unknown (not OpenBLAS)";
  const char* name = fn();
  return name ? std::string(name) : "unknown";
}

torch::Tensor cpu_rng_state() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_rng_state(const torch::Tensor& state) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

double current_rss_mb() {
  std::ifstream statm("/proc/self/statm");
  long long pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0.0;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

double median_gflops(const std::function<void()>& fn, double flops, int reps, bool cuda) {
  fn();  // warm-up
  std::vector<double> rates;
  for (int i = 0; i < reps; ++i) {
    if (cuda) torch::cuda::synchronize();
    auto t0 = std::chrono::steady_clock::now();
    fn();
    if (cuda) torch::cuda::synchronize();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(flops / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

double measure_matmul_gflops(int64_t n, int reps, torch::Device device) {
  torch::NoGradGuard ng;
  auto a = torch::randn({n, n}, torch::TensorOptions().device(device));
  auto b = torch::randn({n, n}, torch::TensorOptions().device(device));
  auto c = torch::empty({n, n}, a.options());
  return median_gflops([&] { torch::mm_out(c, a, b); }, 2.0 * n * n * n, reps, device.is_cuda());
}

}  // namespace runtime
}  // namespace thor
