// Dropout with a counter-based generator: LibTorch 1.13's bernoulli_ draws every element
// from the locked global Mersenne Twister on one thread (7 % of a 1-thread training
// update, more with 2 threads). Here a seed drawn from the global CPU generator (so
// manual_seed, checkpointed RNG state and exact resume behave as before) keys a 32-bit
// hash of the element index (simd::hash32, 16 elements per vector): masks are generated in
// parallel, do not depend on the thread count, and are recomputed in the backward pass
// instead of stored. CUDA and non-float inputs use torch::dropout.
#pragma once
#include <torch/torch.h>

namespace thor {

torch::Tensor dropout(const torch::Tensor& x, double p, bool training);

// residual + dropout(x) in one pass (the same mask as dropout(x) would draw): the residual
// connections of every layer. Falls back to the two operations where dropout does.
torch::Tensor dropout_add(const torch::Tensor& residual, const torch::Tensor& x, double p, bool training);

}  // namespace thor
