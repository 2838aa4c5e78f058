// Data-parallel gradient sums: the gradients of a fixed list of parameters summed over the
// ranks in buckets of about `bucket_bytes` (DDP's 25 MB by default, the first 1 MB), always in the list's
// order, each bucket one flat all-reduce. A parameter that no rank gave a gradient in an
// update (an expert nobody drew) keeps no gradient, as in one process, so the optimizer
// skips it there too. With overlap armed, a bucket's all-reduce starts from the backward
// pass (gradient hooks) as soon as all of its gradients are final, and the backward goes on
// while it runs; finish() starts the rest and waits for all.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <torch/torch.h>

#include "thor/dist/communicator.h"

namespace thor::dist {

class GradientReducer {
 public:
  // As DDP: the first bucket (the last layers, whose gradients come first) holds about
  // first_bucket_bytes, so communication starts early; the others bucket_bytes.
  GradientReducer(Communicator& comm, std::vector<torch::Tensor> params, int64_t bucket_bytes = 25 << 20,
                  int64_t first_bucket_bytes = 1 << 20);

  // For the backward pass that completes this update's gradients: from now on each
  // parameter's final gradient (its .grad so far plus what the pass brings) is copied into
  // its bucket as the hook sees it; full buckets start reducing at once.
  void arm_overlap();
  // Reduces every bucket not yet started, waits for all, and leaves each parameter's
  // .grad = the sum over ranks (undefined where no rank had one).
  void finish();

  // Seconds finish() waited for communication (after the backward), and the total time
  // from each bucket's start to its end, summed over buckets; their ratio is the share of
  // communication the backward pass hid.
  double exposed_s() const { return exposed_s_; }
  double comm_s() const { return comm_s_; }
  void reset_timers() { exposed_s_ = comm_s_ = 0; }
  size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    std::vector<int64_t> offset;
    int64_t numel = 0;
    torch::Tensor flat;  // [numel + params]: gradient values, then 1 per parameter this rank had one for
    torch::Tensor used;  // the tail of flat
    size_t ready = 0;
    std::unique_ptr<PendingOp> pending;
    std::chrono::steady_clock::time_point started;
  };
  void hook(size_t param, const torch::Tensor& incoming);
  void start(Bucket& b);

  Communicator& comm_;
  std::vector<torch::Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> where_;  // param -> (bucket, slot)
  std::vector<bool> seen_;
  bool armed_ = false;
  std::mutex mu_;
  double exposed_s_ = 0, comm_s_ = 0;
};

}  // namespace thor::dist
