// Explicit FLOP count of the Transformer (docs/PERFORMANCE.md writes the formula out), for
// the achieved GFLOP/s the trainer logs and the benchmark reports. Counts the matrix
// products actually executed on a padded batch: projections, attention scores and
// weighted sums, the FFN (or the k experts a token goes to) and the output projection;
// element-wise work (softmax, layer norm, dropout, the loss) is not counted.
#pragma once
#include <cstdint>

#include "thor/common/config.h"

namespace thor {

// Multiply-accumulates of one forward pass over a batch of `rows` sentences padded to S
// source and T target positions.
double forward_macs(const ModelConfig& c, int64_t rows, int64_t S, int64_t T);

// Training FLOPs of that batch: 2 FLOPs per MAC, backward twice the forward (gradients
// with respect to inputs and weights), times two for THOR's two passes.
double training_flops(const ModelConfig& c, int64_t rows, int64_t S, int64_t T, bool two_pass);

}  // namespace thor
