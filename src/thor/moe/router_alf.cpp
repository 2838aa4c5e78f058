// See router_alf.h.
#include "thor/moe/router_alf.h"

#include "thor/common/error.h"

namespace thor {

AlfRouterImpl::AlfRouterImpl(const ModelConfig& c) : experts_(c.num_experts), top_k_(c.alf_top_k), rate_(c.alf_update_rate) {
  if (top_k_ < 1 || top_k_ > experts_) throw Error("--alf-top-k must be between 1 and --num-experts");
  gate = register_module("gate", torch::nn::Linear(torch::nn::LinearOptions(c.d_model, c.num_experts).bias(false)));
  bias = register_buffer("bias", torch::zeros({c.num_experts}));
  load = register_buffer("load", torch::zeros({c.num_experts}));
}

Routing AlfRouterImpl::route(const RouterInput& in) {
  auto scores = torch::softmax(gate(in.x).to(torch::kFloat), -1);  // [N, E]
  torch::Tensor sel;
  {
    torch::NoGradGuard ng;
    sel = std::get<1>((scores + bias).topk(top_k_, -1));  // [N, k] chosen with the bias
  }
  auto g = scores.gather(1, sel);  // unbiased gate values
  if (top_k_ > 1) g = g / g.sum(-1, true).clamp_min(1e-9);
  Routing r;
  r.expert = sel.masked_fill(in.valid.logical_not().unsqueeze(1), -1);
  r.weight = g.to(in.x.dtype());
  if (is_training()) {
    torch::NoGradGuard ng;
    auto flat = r.expert.reshape({-1});
    flat = flat.masked_select(flat >= 0);
    load.add_(torch::bincount(flat, {}, experts_).to(load.dtype()));
  }
  return r;
}

void AlfRouterImpl::after_update() {
  torch::NoGradGuard ng;
  if (load.sum().item<double>() == 0) return;
  bias.add_(rate_ * torch::sign(load.mean() - load));
  load.zero_();
}

}  // namespace thor
