// See optim.h.
#include "thor/train/optim.h"

#include <cmath>

#include "thor/common/error.h"

namespace thor {

Adam::Adam(std::vector<torch::Tensor> params, AdamOptions opt, bool with_state) : params_(std::move(params)), opt_(opt) {
  for (auto& p : params_) {
    exp_avg_.push_back(with_state ? torch::zeros_like(p) : torch::Tensor());
    exp_avg_sq_.push_back(with_state ? torch::zeros_like(p) : torch::Tensor());
  }
}

void Adam::zero_grad() {
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

void Adam::step(double lr) {
  torch::NoGradGuard ng;
  ++steps_;
  double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(steps_));
  double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(steps_));
  double step_size = lr * std::sqrt(bc2) / bc1;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    const auto& g = p.grad();
    exp_avg_[i].mul_(opt_.beta1).add_(g, 1.0 - opt_.beta1);
    exp_avg_sq_[i].mul_(opt_.beta2).addcmul_(g, g, 1.0 - opt_.beta2);
    auto denom = exp_avg_sq_[i].sqrt().add_(opt_.eps);
    if (opt_.weight_decay != 0) p.mul_(1.0 - opt_.weight_decay * lr);
    p.addcdiv_(exp_avg_[i], denom, -step_size);
  }
}

void Adam::save(torch::serialize::OutputArchive& ar) const {
  ar.write("steps", torch::tensor(steps_));
  for (size_t i = 0; i < params_.size(); ++i) {
    ar.write("exp_avg." + std::to_string(i), exp_avg_[i]);
    ar.write("exp_avg_sq." + std::to_string(i), exp_avg_sq_[i]);
  }
}

void Adam::load(torch::serialize::InputArchive& ar) {
  torch::Tensor t;
  ar.read("steps", t);
  steps_ = t.item<int64_t>();
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor a, b;
    ar.read("exp_avg." + std::to_string(i), a);
    ar.read("exp_avg_sq." + std::to_string(i), b);
    if (!a.sizes().equals(params_[i].sizes()))
      throw Error("optimizer state does not match the model (parameter " + std::to_string(i) + ")");
    exp_avg_[i] = a.to(params_[i].device());
    exp_avg_sq_[i] = b.to(params_[i].device());
  }
}

double InverseSqrtSchedule::at(int64_t num_updates) const {
  if (num_updates < warmup)
    return warmup_init_lr + (lr - warmup_init_lr) * static_cast<double>(num_updates) / static_cast<double>(warmup);
  return lr * std::sqrt(static_cast<double>(warmup)) / std::sqrt(static_cast<double>(std::max<int64_t>(1, num_updates)));
}

}  // namespace thor
