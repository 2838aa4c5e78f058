// Tensors derived from parameters (concatenated q/k/v weights, averaged experts), made once
// and reused while the parameters are unchanged: same storage and same version counter (an
// optimizer step or a checkpoint load bumps it). Only for calls without autograd: with
// autograd the derivation must be part of the graph, so callers recompute it then.
// Thread-safe (parallel decoding workers share the model): the value is returned by value.
#pragma once
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace thor {

class DerivedCache {
 public:
  std::vector<torch::Tensor> get(const std::vector<torch::Tensor>& params,
                                 const std::function<std::vector<torch::Tensor>()>& make) {
    std::lock_guard<std::mutex> lock(*mu_);
    std::vector<std::pair<const void*, int64_t>> stamp;
    stamp.reserve(params.size());
    for (auto& p : params) stamp.emplace_back(p.data_ptr(), p._version());
    if (stamp != stamp_ || value_.empty()) {
      value_ = make();
      stamp_ = std::move(stamp);
    }
    return value_;
  }

 private:
  std::shared_ptr<std::mutex> mu_ = std::make_shared<std::mutex>();
  std::vector<std::pair<const void*, int64_t>> stamp_;
  std::vector<torch::Tensor> value_;
};

}  // namespace thor
