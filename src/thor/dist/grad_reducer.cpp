// See grad_reducer.h.
#include "thor/dist/grad_reducer.h"

#include <algorithm>

namespace thor::dist {

using Clock = std::chrono::steady_clock;

GradientReducer::GradientReducer(Communicator& comm, std::vector<torch::Tensor> params, int64_t bucket_bytes,
                                 int64_t first_bucket_bytes)
    : comm_(comm), params_(std::move(params)) {
  if (comm_.size() == 1) return;  // alone: nothing to reduce, no hooks on the backward pass
  where_.resize(params_.size());
  seen_.assign(params_.size(), false);
  // backward produces the last layers' gradients first: buckets fill from the end of the list
  Bucket cur;
  auto close = [&] {
    if (cur.params.empty()) return;
    buckets_.push_back(std::move(cur));
    cur = Bucket();
  };
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    where_[k] = {buckets_.size(), cur.params.size()};
    cur.params.push_back(k);
    cur.offset.push_back(cur.numel);
    cur.numel += p.numel();
    const int64_t cap = buckets_.empty() ? std::min(first_bucket_bytes, bucket_bytes) : bucket_bytes;
    if (cur.numel * static_cast<int64_t>(p.element_size()) >= cap) close();
  }
  close();
  for (auto& b : buckets_) {
    auto opts = params_[b.params.front()].options().requires_grad(false);
    const auto nparams = static_cast<int64_t>(b.params.size());
    b.flat = torch::zeros({b.numel + nparams}, opts);
    b.used = b.flat.narrow(0, b.numel, nparams);
  }
  for (size_t k = 0; k < params_.size(); ++k)
    params_[k].register_hook([this, k](torch::Tensor g) {
      if (armed_) hook(k, g);
      return torch::Tensor();  // unchanged
    });
}

void GradientReducer::arm_overlap() {
  if (comm_.size() == 1) return;
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = true;
}

void GradientReducer::hook(size_t k, const torch::Tensor& incoming) {
  std::lock_guard<std::mutex> lock(mu_);
  if (seen_[k]) return;  // (a parameter's gradient arrives once per backward)
  seen_[k] = true;
  auto [bi, slot] = where_[k];
  Bucket& b = buckets_[bi];
  auto dst = b.flat.narrow(0, b.offset[slot], params_[k].numel());
  const auto& prev = params_[k].grad();
  if (prev.defined()) torch::add_out(dst, prev.reshape(-1), incoming.reshape(-1));
  else dst.copy_(incoming.reshape(-1));
  b.used[static_cast<int64_t>(slot)] = 1;
  if (++b.ready == b.params.size()) start(b);
}

void GradientReducer::start(Bucket& b) {
  b.started = Clock::now();
  b.pending = comm_.allreduce_sum_async(b.flat);
}

void GradientReducer::finish() {
  if (comm_.size() == 1) return;
  auto t0 = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
    // buckets the backward did not complete: their gradients as they stand now
    for (auto& b : buckets_) {
      if (b.pending) continue;
      for (size_t slot = 0; slot < b.params.size(); ++slot) {
        size_t k = b.params[slot];
        if (seen_[k]) continue;
        auto dst = b.flat.narrow(0, b.offset[slot], params_[k].numel());
        const auto& g = params_[k].grad();
        if (g.defined()) dst.copy_(g.reshape(-1)), b.used[static_cast<int64_t>(slot)] = 1;
        else dst.zero_(), b.used[static_cast<int64_t>(slot)] = 0;
      }
      start(b);
    }
  }
  for (auto& b : buckets_) {
    b.pending->wait();
    b.pending.reset();
    comm_s_ += std::chrono::duration<double>(Clock::now() - b.started).count();
    auto used_host = b.used.to(torch::kCPU, torch::kFloat).contiguous();
    const float* used = used_host.data_ptr<float>();
    for (size_t slot = 0; slot < b.params.size(); ++slot) {
      size_t k = b.params[slot];
      auto& grad = params_[k].mutable_grad();
      if (used[slot] == 0) {
        grad = torch::Tensor();
      } else {
        auto src = b.flat.narrow(0, b.offset[slot], params_[k].numel()).view(params_[k].sizes());
        if (grad.defined()) grad.copy_(src);
        else grad = src.clone();
      }
      seen_[k] = false;
    }
    b.ready = 0;
    b.used.zero_();
  }
  exposed_s_ += std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace thor::dist
