// Process-level setup that users must never have to think about:
//  * fast OpenBLAS kernels (OpenBLAS misdetects AVX-512 VMs as "Prescott"; the core type
//    must be in the environment before libopenblas loads, so we re-exec once),
//  * glibc keeping freed memory instead of returning each large tensor to the kernel,
//  * intra-op threads (LibTorch reports 1 here by default),
//  * the compute device.
#pragma once
#include <functional>
#include <string>
#include <torch/torch.h>

namespace thor::runtime {

// Called first thing in main(): if OPENBLAS_CORETYPE is unset and the CPU has AVX-512
// (or AVX2), sets it and re-executes the program so OpenBLAS loads its fast kernels.
// Set THOR_NO_REEXEC=1 to disable. Returns normally when no re-exec is needed.
void ensure_fast_blas(int argc, char** argv);

// mallopt: no mmap per large tensor, keep freed memory (avoids page-fault storms).
void tune_allocator();

// threads <= 0 means all cores.
void set_threads(int threads);

// "auto" picks CUDA when available, else CPU. Throws thor::Error on an unknown name.
torch::Device parse_device(const std::string& name);

// The OpenBLAS core name in use ("SkylakeX", "Haswell", "Prescott", ...), or "unknown".
std::string blas_core();

// State of the global CPU generator (dropout, random experts), for checkpoints and for
// code that must not shift the training RNG stream.
torch::Tensor cpu_rng_state();
void set_cpu_rng_state(const torch::Tensor& state);

// Random draws of this thread (dropout masks, router draws): the generator of the innermost
// GeneratorScope alive on this thread, or nullopt for the device's global generator. Parallel
// workers give each task its own seeded generator, so results do not depend on scheduling.
c10::optional<at::Generator> thread_generator();
// 64 random bits from thread_generator(), or the global CPU generator when none is set.
uint64_t draw_seed();
// thread_generator() where it can draw tensors like x (CPU), else nullopt (x's device's own).
c10::optional<at::Generator> generator_for(const torch::Tensor& x);
class GeneratorScope {
 public:
  explicit GeneratorScope(at::Generator gen);
  ~GeneratorScope();
  GeneratorScope(const GeneratorScope&) = delete;
  GeneratorScope& operator=(const GeneratorScope&) = delete;

 private:
  c10::optional<at::Generator> previous_;
};

// Runs fn(0) .. fn(workers - 1) at once, fn(0) on the calling thread, each with
// max(1, threads / workers) intra-op threads (restored afterwards); rethrows the first
// worker's exception after all have finished. Grad mode is per thread: workers start
// with the caller's.
void run_workers(int64_t workers, const std::function<void(int64_t)>& fn);

// Resident set size of this process now, in MB (/proc/self/statm; 0 where unavailable).
double current_rss_mb();

// Median GFLOP/s of `reps` timed calls of fn, each doing `flops` floating-point operations
// (one untimed warm-up call first; CUDA synchronised around each call when cuda).
double median_gflops(const std::function<void()>& fn, double flops, int reps, bool cuda = false);

// Median GFLOP/s of an n^3 float matmul on the device.
double measure_matmul_gflops(int64_t n, int reps, torch::Device device);

}  // namespace thor::runtime
