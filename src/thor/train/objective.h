// The training objective of one batch, shared by the trainer and the tests:
//  dense / gated MoE: label-smoothed CE (+ router auxiliary losses);
//  THOR (Zuo et al. 2022, Eq. 3): the batch stacked twice in one forward, each half with
//  its own expert draws, loss = CE1 + CE2 + alpha * consistency(p, q).
#pragma once
#include <torch/torch.h>

#include "thor/data/dataset.h"
#include "thor/model/transformer.h"
#include "thor/train/loss.h"

namespace thor {

struct ObjectiveOptions {
  double label_smoothing = 0.1;
  double consistency_alpha = 5.0;
  bool two_pass = false;
  Consistency consistency_on = Consistency::Probabilities;
};

struct ObjectiveResult {
  torch::Tensor loss;      // scalar to back-propagate (sums over tokens; aux weighted by ntokens)
  double ce = 0, nll = 0;  // summed label-smoothed CE and NLL (mean of the two passes for THOR)
  double consistency = 0;  // summed consistency term (THOR)
  std::vector<ExpertStats> experts;  // per expert layer: token shares, auxiliary losses
};

// pinned: expert draws to use (Transformer::draw_group_experts), so the shards of one batch
// share them; {} = the model's routing as it is.
ObjectiveResult compute_objective(Transformer& model, const Batch& b, const ObjectiveOptions& o,
                                  const std::vector<std::vector<int64_t>>& pinned = {});

}  // namespace thor
