// The feed-forward block of every layer, as a bank of E experts:
//   w1 [E, d, f], b1 [E, f], w2 [E, f, d], b2 [E, d]
// E == 1 is the dense Transformer FFN (one addmm each way, no routing, no overhead).
// With E > 1 a router picks experts per token and only the selected experts are
// computed: tokens are gathered per expert, multiplied, and scattered back with their
// combine weights (or, for whole-group draws, each group runs one dense product).
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

#include "thor/common/config.h"
#include "thor/moe/router.h"
#include "thor/ops/derived_cache.h"

namespace thor {

// How stochastic-expert layers pick experts outside training (THOR paper, Sec. 3.3).
enum class ExpertSelect { Token, Sentence, Fixed, Ensemble, Merge };
ExpertSelect parse_expert_select(const std::string& s, int64_t* fixed_k);  // "fixed:K" sets *fixed_k

struct ExpertStats {
  torch::Tensor share;                       // [E] share of the layer's non-pad tokens per expert
  double valid = 0;                          // non-pad tokens the share is over
  std::map<std::string, torch::Tensor> aux;  // scaled auxiliary losses (part of the objective)
};

struct RoutingContext {
  int64_t groups = 1;  // rows split into equal groups with their own draws (stacked THOR passes)
  ExpertSelect select = ExpertSelect::Sentence;
  int64_t fixed_expert = 0;
  torch::Tensor row_experts;  // [B, n_expert_layers] per-row choice kept across decoding steps
  // Optional: pinned[l] = the expert of each row group at expert layer l, overriding the
  // random draw of stochastic routers (reproducing or analysing one expert path).
  std::vector<std::vector<int64_t>> pinned;
  // Optional: stats[l] receives expert layer l's statistics of this forward (one sink per
  // caller, so parallel forwards never share one); none are computed when null.
  std::vector<ExpertStats>* stats = nullptr;
};

class ExpertFFNImpl : public torch::nn::Module {
 public:
  // moe_index: position among the model's expert layers (column of row_experts).
  ExpertFFNImpl(const ModelConfig& c, int64_t experts, int64_t moe_index);

  // x [B, T, d], tokens [B, T] ids (padding = pad id) -> [B, T, d]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& tokens, const RoutingContext& ctx);

  int64_t experts() const { return experts_; }  // of the model (this process may hold fewer)
  int64_t first_local_expert() const { return first_; }
  int64_t local_experts() const { return w1.size(0); }
  int64_t moe_index() const { return moe_index_; }
  bool stochastic() const { return router && router->stochastic(); }
  // Whether, in this context, a token's output depends on that token (and its row's expert
  // draw) alone: then the block may run on a batch's packed tokens, one row per token
  // (ctx.row_experts spread onto them). Not with gated routers (capacity and balance depend on
  // the whole batch), per-token random draws, pinned paths or remote experts.
  bool position_wise(const RoutingContext& ctx) const;

  torch::Tensor w1, b1, w2, b2;
  std::shared_ptr<RouterImpl> router;  // null when E == 1

  // One expert (or merged weights when e < 0) applied densely to x2 [n, d].
  torch::Tensor expert_forward(const torch::Tensor& x2, int64_t e);
  // Sparse dispatch of x2 [N, d] by a routing decision.
  torch::Tensor dispatch(const torch::Tensor& x2, const Routing& r);
  // Expert parallel with a gated router: the experts of other ranks are reached through
  // `ex` (tokens sent to their expert's rank and back, forward and backward); null = all here.
  void set_exchange(TokenExchange* ex) { exchange_ = ex; }
  // Every expert held here becomes a copy of the first (--expert-init copy).
  void copy_first_expert();

 private:
  // tokens of experts held elsewhere: to their rank, through the expert, back ([N, d] out)
  torch::Tensor dispatch_remote(const torch::Tensor& x2, const Routing& r);
  TokenExchange* exchange_ = nullptr;
  DerivedCache merged_;  // the averaged expert for --expert-select merge, without autograd
  int64_t experts_ = 1, first_ = 0;  // the model's experts; the first one held here
  int64_t moe_index_;
  int64_t pad_;
  double activation_dropout_;
};
TORCH_MODULE(ExpertFFN);

}  // namespace thor
