// Routers decide which experts see which tokens (fairseq's MOELayer(gate, experts) idea:
// routing is a swappable strategy). A router returns, per token, up to k expert ids and
// combine weights; -1 marks a slot that is skipped (padding or over capacity), so the
// token keeps only its residual there.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "thor/common/config.h"
#include "thor/moe/exchange.h"

namespace thor {

struct RouterInput {
  torch::Tensor x;       // [N, d] tokens, rows of a [B, T] batch flattened row-major
  torch::Tensor tokens;  // [N] token ids (hash routing)
  torch::Tensor valid;   // [N] bool, false for padding
  int64_t rows = 1;      // B
  int64_t groups = 1;    // rows split into equal groups with independent draws (THOR's 2 passes)
  // Expert parallel: the other ranks' tokens of the same step. Capacity and the balance
  // loss's statistics are then those of the global batch (every rank's tokens, rank order).
  TokenExchange* exchange = nullptr;
};

struct Routing {
  torch::Tensor expert;  // [N, k] int64, -1 = skipped
  torch::Tensor weight;  // [N, k] float combine weights
  // Set when every token of group g (N / groups consecutive rows: a pass of THOR's stacked
  // batch, or one sentence) goes to expert group_expert[g] (weight 1, -1 = the merged
  // expert): dispatch then needs no per-token routing (see ExpertFFNImpl::dispatch).
  std::vector<int64_t> group_expert;
  std::map<std::string, torch::Tensor> aux;  // scalar losses, already scaled ("balance", "z")
};

class RouterImpl : public torch::nn::Module {
 public:
  ~RouterImpl() override = default;
  virtual Routing route(const RouterInput& in) = 0;
  // Random experts without a gate (thor, random): inference may pick experts per
  // sentence / fixed / ensemble / merge instead of routing.
  virtual bool stochastic() const { return false; }
  // THOR: train with two stochastic passes and a consistency loss.
  virtual bool two_pass() const { return false; }
  // The expert of each of `groups` row groups when this router draws one per group
  // without looking at the tokens (random routing per batch), drawn now from the thread's
  // generator; {} otherwise. Lets forwards over parts of one batch share one draw.
  virtual std::vector<int64_t> draw_groups(int64_t groups) const {
    (void)groups;
    return {};
  }
  // Called after every optimizer update (auxiliary-loss-free bias balancing).
  virtual void after_update() {}
  // Statistics after_update() reads that must be summed over data-parallel ranks first
  // (tensors updated in place), so every rank's router stays the same.
  virtual std::vector<torch::Tensor> update_statistics() { return {}; }
};

// Builds the router named by cfg.router for a layer of dimension d (throws thor::Error on
// an unknown name). The registry lives in router_registry.cpp, one line per router.
std::shared_ptr<RouterImpl> make_router(const ModelConfig& cfg);
std::vector<std::string> router_names();

// Shared by the gated routers: keeps the first `capacity` tokens (in order) of each
// expert in slot column `slot`, marking the rest -1. `used` [E] counts slots already
// taken by earlier columns and is updated.
void apply_capacity(torch::Tensor& expert, int64_t slot, int64_t capacity, std::vector<int64_t>& used);

// Capacity over the global batch of an expert-parallel step, slot by slot as in one process
// over all ranks' tokens in rank order: `factor`, top-k `k`, valid tokens of this rank.
// Without an exchange (or alone) the single-process capacity of this batch.
void apply_global_capacity(torch::Tensor& expert, double factor, int64_t k, int64_t experts,
                           int64_t n_valid, TokenExchange* ex);

// Switch's load-balancing loss alpha * E * sum_e f_e P_e; with an exchange f and the
// normaliser come from the global batch and this rank's share of P carries the gradient
// (the ranks' parts sum to the global loss; each part is scaled by global / local tokens,
// as the objective weights it by this rank's tokens).
torch::Tensor load_balancing_loss(const torch::Tensor& probs, const torch::Tensor& top1, const torch::Tensor& valid,
                                  int64_t experts, double alpha, TokenExchange* ex = nullptr);

// Mean over valid tokens of logsumexp(logits)^2 (ST-MoE router z-loss).
torch::Tensor router_z_loss(const torch::Tensor& logits, const torch::Tensor& valid);

// Capacity per expert for n tokens: ceil(factor * n * k / E).
int64_t expert_capacity(double factor, int64_t n, int64_t k, int64_t experts);

}  // namespace thor
