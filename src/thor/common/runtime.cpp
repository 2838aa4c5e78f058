// See runtime.h.
#include "thor/common/runtime.h"

#include <ATen/CPUGeneratorImpl.h>
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

std::string& log_prefix() {
  static std::string prefix;
  return prefix;
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
  // One arena for every thread: another thread's arena cannot hold a tensor above 64 MB and
  // maps it apart (M_MMAP_MAX does not apply there), unmapping it again when freed.
  mallopt(M_ARENA_MAX, 1);
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

namespace {
thread_local c10::optional<at::Generator> current_generator;
}

c10::optional<at::Generator> thread_generator() { return current_generator; }

uint64_t draw_seed() {
  at::Generator gen = current_generator.value_or(at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen.mutex());
  return at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
}

c10::optional<at::Generator> generator_for(const torch::Tensor& x) {
  return x.device().is_cpu() ? current_generator : c10::nullopt;
}

GeneratorScope::GeneratorScope(at::Generator gen) : previous_(current_generator) {
  current_generator = std::move(gen);
}

GeneratorScope::~GeneratorScope() { current_generator = previous_; }

void run_workers(int64_t workers, const std::function<void(int64_t)>& fn) {
  if (workers <= 1) {
    fn(0);
    return;
  }
  const int threads = at::get_num_threads();
  const int per_worker = std::max(1, threads / static_cast<int>(workers));
  const bool grad = torch::GradMode::is_enabled();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  auto run = [&](int64_t w) {
    try {
      at::set_num_threads(per_worker);
      torch::AutoGradMode mode(grad);
      fn(w);
    } catch (...) {
      errors[static_cast<size_t>(w)] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int64_t w = 1; w < workers; ++w) pool.emplace_back(run, w);
  run(0);
  for (auto& t : pool) t.join();
  at::set_num_threads(threads);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
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
