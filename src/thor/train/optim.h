// Adam with decoupled weight decay as fairseq's FairseqAdam, and the inverse-sqrt
// schedule with linear warm-up. Written here (not torch::optim) so the state is ours to
// checkpoint exactly and to fuse later.
#pragma once
#include <vector>

#include <torch/torch.h>

namespace thor {

struct AdamOptions {
  double beta1 = 0.9, beta2 = 0.98, eps = 1e-8, weight_decay = 0.0;
};

class Adam {
 public:
  // with_state false: no moment tensors are allocated (the caller sets them with exp_avg(i) =
  // ..., as a checkpoint's whole-model view of sharded state does).
  Adam(std::vector<torch::Tensor> params, AdamOptions opt, bool with_state = true);
  void step(double lr);  // one update from the accumulated .grad
  // Drops the gradients, as fairseq's zero_grad (grad = None): a parameter that no batch of
  // the next update reaches (an expert no pass drew) then gets no step at all — no momentum,
  // no weight decay — instead of a step with a zero gradient; and the next update's first
  // gradient is stored, not added to zeros.
  void zero_grad();
  int64_t steps() const { return steps_; }
  void save(torch::serialize::OutputArchive& ar) const;
  void load(torch::serialize::InputArchive& ar);
  const std::vector<torch::Tensor>& params() const { return params_; }
  // Parameter i's moment estimates and the step count (expert-parallel checkpoints gather
  // and slice them).
  torch::Tensor& exp_avg(size_t i) { return exp_avg_[i]; }
  torch::Tensor& exp_avg_sq(size_t i) { return exp_avg_sq_[i]; }
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  std::vector<torch::Tensor> params_, exp_avg_, exp_avg_sq_;
  AdamOptions opt_;
  int64_t steps_ = 0;
};

struct InverseSqrtSchedule {
  double lr = 5e-4, warmup_init_lr = 1e-7;
  int64_t warmup = 4000;
  // Learning rate for the update after `num_updates` completed updates.
  double at(int64_t num_updates) const;
};

}  // namespace thor
