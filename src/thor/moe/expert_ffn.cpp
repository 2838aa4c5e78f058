// See expert_ffn.h.
#include "thor/moe/expert_ffn.h"

#include <cmath>

#include "thor/common/error.h"
#include "thor/common/runtime.h"
#include "thor/ops/dropout.h"
#include "thor/ops/gemm.h"
#include "thor/moe/router_random.h"

namespace thor {

ExpertSelect parse_expert_select(const std::string& s, int64_t* fixed_k) {
  if (s == "token") return ExpertSelect::Token;
  if (s == "sentence") return ExpertSelect::Sentence;
  if (s == "ensemble") return ExpertSelect::Ensemble;
  if (s == "merge") return ExpertSelect::Merge;
  if (s.rfind("fixed:", 0) == 0) {
    try {
      size_t used = 0;
      int64_t k = std::stoll(s.substr(6), &used);
      if (used == s.size() - 6 && k >= 0) {
        if (fixed_k) *fixed_k = k;
        return ExpertSelect::Fixed;
      }
    } catch (const std::exception&) {
    }
  }
  throw Error("--expert-select: expected token, sentence, fixed:K, ensemble or merge, got '" + s + "'");
}

ExpertFFNImpl::ExpertFFNImpl(const ModelConfig& c, int64_t experts, int64_t moe_index)
    : experts_(experts), moe_index_(moe_index), pad_(c.pad_id), activation_dropout_(c.activation_dropout) {
  const int64_t d = c.d_model, f = c.ffn_dim;
  // fairseq's Linear init per expert: xavier_uniform weights, zero biases. An expert-parallel
  // shard initialises the whole bank and keeps its slice: the same values as one process.
  double a1 = std::sqrt(6.0 / static_cast<double>(d + f));
  int64_t local = experts;
  if (experts > 1 && c.expert_shards > 1) {
    if (experts % c.expert_shards != 0)
      throw Error("--expert-parallel: " + std::to_string(experts) + " experts do not split over " +
                  std::to_string(c.expert_shards) + " ranks (--num-experts must be a multiple of the ranks)");
    local = c.local_experts();
    first_ = c.first_local_expert();
  }
  auto keep = [&](torch::Tensor t) { return local == experts ? t : t.narrow(0, first_, local).clone(); };
  w1 = register_parameter("w1", keep(torch::empty({experts, d, f}).uniform_(-a1, a1)));
  b1 = register_parameter("b1", keep(torch::zeros({experts, f})));
  w2 = register_parameter("w2", keep(torch::empty({experts, f, d}).uniform_(-a1, a1)));
  b2 = register_parameter("b2", keep(torch::zeros({experts, d})));
  if (experts > 1) router = register_module("router", make_router(c));
}

torch::Tensor ExpertFFNImpl::expert_forward(const torch::Tensor& x2, int64_t e) {
  torch::Tensor W1, B1, W2, B2;
  if (e >= 0) {
    const int64_t i = e - first_;  // held here?
    TORCH_CHECK(i >= 0 && i < local_experts(), "expert ", e, " is not held by this process (experts ", first_,
                "..", first_ + local_experts() - 1, ")");
    W1 = w1[i], B1 = b1[i], W2 = w2[i], B2 = b2[i];
  } else {  // merged: the average expert (THOR paper's "merge" inference)
    auto make = [&] { return std::vector<torch::Tensor>{w1.mean(0), b1.mean(0), w2.mean(0), b2.mean(0)}; };
    auto m = torch::GradMode::is_enabled() ? make() : merged_.get({w1, b1, w2, b2}, make);
    W1 = m[0], B1 = m[1], W2 = m[2], B2 = m[3];
  }
  auto h = torch::relu(linear_in_out(x2, W1, B1));  // [n, f]
  h = thor::dropout(h, activation_dropout_, is_training());
  return linear_in_out(h, W2, B2);  // [n, d]
}

torch::Tensor ExpertFFNImpl::dispatch(const torch::Tensor& x2, const Routing& r) {
  const int64_t N = x2.size(0), E = experts();
  if (!r.group_expert.empty()) {
    // Whole groups of rows share one expert. Runs of consecutive groups with the same
    // expert are contiguous slices (THOR's two passes often draw the same one: then one
    // product over all rows, no split, no concatenation); when the runs outnumber the
    // experts (a draw per sentence), rows are gathered per expert instead, one product
    // each, and copied back in place.
    const auto groups = static_cast<int64_t>(r.group_expert.size());
    const int64_t n = N / groups;
    std::vector<std::pair<int64_t, int64_t>> runs;  // [first group, end group)
    for (int64_t g = 0; g < groups;) {
      int64_t end = g + 1;
      while (end < groups && r.group_expert[end] == r.group_expert[g]) ++end;
      runs.emplace_back(g, end);
      g = end;
    }
    if (static_cast<int64_t>(runs.size()) <= std::max<int64_t>(E, 1)) {
      std::vector<torch::Tensor> parts;
      for (auto [g0, g1] : runs) parts.push_back(expert_forward(x2.narrow(0, g0 * n, (g1 - g0) * n), r.group_expert[g0]));
      return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
    }
    std::vector<std::vector<int64_t>> rows_of(static_cast<size_t>(E));
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t e = r.group_expert[g];
      TORCH_CHECK(e >= 0 && e < E, "group expert ", e, " out of range");
      for (int64_t i = g * n; i < (g + 1) * n; ++i) rows_of[e].push_back(i);
    }
    auto out = torch::empty_like(x2);
    for (int64_t e = 0; e < E; ++e) {
      if (rows_of[e].empty()) continue;
      auto idx = torch::tensor(rows_of[e], torch::kLong).to(x2.device());
      out.index_copy_(0, idx, expert_forward(x2.index_select(0, idx), e));
    }
    return out;
  }
  if (exchange_ && exchange_->ranks() > 1) return dispatch_remote(x2, r);
  const int64_t k = r.expert.size(1);
  auto flat_e = r.expert.reshape({-1});                                                   // [N*k]
  auto flat_w = r.weight.reshape({-1});                                                   // [N*k]
  auto token = torch::arange(N, flat_e.options()).repeat_interleave(k);                   // [N*k]
  auto out = torch::zeros_like(x2);
  for (int64_t e = 0; e < E; ++e) {
    auto sel = (flat_e == e).nonzero().squeeze(1);
    if (sel.numel() == 0) continue;
    auto tok = token.index_select(0, sel);
    auto y = expert_forward(x2.index_select(0, tok), e) * flat_w.index_select(0, sel).unsqueeze(1);
    out = out.index_add(0, tok, y);
  }
  return out;
}

torch::Tensor ExpertFFNImpl::dispatch_remote(const torch::Tensor& x2, const Routing& r) {
  const int64_t N = x2.size(0), k = r.expert.size(1), L = local_experts();
  const int W = exchange_->ranks();
  auto flat_e = r.expert.reshape({-1}).to(torch::kCPU);                        // [N*k]
  auto token = torch::arange(N, torch::kLong).repeat_interleave(k);            // [N*k]
  auto kept = (flat_e >= 0).nonzero().squeeze(1);                              // slots routed somewhere
  // by expert id: the experts of rank r are the r-th run of L ids, so this also groups by rank
  auto order = std::get<1>(flat_e.index_select(0, kept).sort(/*stable=*/true, 0, false));
  auto slots = kept.index_select(0, order);                                    // [S]
  auto expert_of = flat_e.index_select(0, slots);                              // [S]
  std::vector<int64_t> send(static_cast<size_t>(W), 0);
  {
    auto* e = expert_of.data_ptr<int64_t>();
    for (int64_t i = 0; i < expert_of.numel(); ++i) ++send[static_cast<size_t>(e[i] / L)];
  }
  auto recv = exchange_counts(*exchange_, send);
  auto tok = token.index_select(0, slots).to(x2.device());
  auto x_recv = alltoall_rows(*exchange_, x2.index_select(0, tok), send, recv);  // [R, d] for my experts
  auto e_recv = exchange_->alltoall(expert_of.view({-1, 1}), send, recv).view({-1});
  auto y_recv = torch::zeros_like(x_recv);
  for (int64_t le = 0; le < L; ++le) {
    auto rows = (e_recv == first_ + le).nonzero().squeeze(1).to(x2.device());
    if (rows.numel() == 0) continue;
    y_recv = y_recv.index_add(0, rows, expert_forward(x_recv.index_select(0, rows), first_ + le));
  }
  auto y = alltoall_rows(*exchange_, y_recv, recv, send);                      // [S, d], in the order sent
  auto w = r.weight.reshape({-1}).index_select(0, slots.to(r.weight.device())).unsqueeze(1);
  return torch::zeros_like(x2).index_add(0, tok, y * w);
}

void ExpertFFNImpl::copy_first_expert() {
  torch::NoGradGuard ng;
  for (auto* t : {&w1, &b1, &w2, &b2}) t->copy_(t->narrow(0, 0, 1).clone().expand_as(*t));
}

bool ExpertFFNImpl::position_wise(const RoutingContext& ctx) const {
  if (experts_ == 1) return true;
  if (is_training() || !stochastic() || !ctx.pinned.empty() || exchange_) return false;
  switch (ctx.select) {
    case ExpertSelect::Fixed:
    case ExpertSelect::Merge:
    case ExpertSelect::Ensemble:
      return true;
    case ExpertSelect::Sentence:
      return ctx.row_experts.defined();
    case ExpertSelect::Token:
      return false;
  }
  return false;
}

torch::Tensor ExpertFFNImpl::forward(const torch::Tensor& x, const torch::Tensor& tokens, const RoutingContext& ctx) {
  const int64_t B = x.size(0), T = x.size(1), d = x.size(2), E = experts();
  auto x2 = x.reshape({B * T, d});
  if (E == 1) return expert_forward(x2, 0).view({B, T, d});

  RouterInput in;
  in.exchange = exchange_;
  in.x = x2;
  in.tokens = tokens.reshape({-1});
  in.valid = in.tokens.ne(pad_);
  in.rows = B;
  in.groups = ctx.groups;
  Routing r;
  bool inference_select = !is_training() && router->stochastic();
  if (!ctx.pinned.empty() && router->stochastic()) {
    r.group_expert = ctx.pinned.at(moe_index_);
    if (static_cast<int64_t>(r.group_expert.size()) != ctx.groups)
      throw Error("pinned experts: expected one expert per row group");
    for (auto e : r.group_expert)
      if (e < 0 || e >= E) throw Error("pinned experts: expert " + std::to_string(e) + " out of range");
  } else if (inference_select) {
    switch (ctx.select) {
      case ExpertSelect::Fixed:
        if (ctx.fixed_expert >= E) throw Error("--expert-select fixed:" + std::to_string(ctx.fixed_expert) +
                                               ": the model has " + std::to_string(E) + " experts");
        r.group_expert = {ctx.fixed_expert};
        break;
      case ExpertSelect::Merge:
        r.group_expert = {-1};
        break;
      case ExpertSelect::Ensemble: {
        auto y = expert_forward(x2, 0);
        for (int64_t e = 1; e < E; ++e) y = y + expert_forward(x2, e);
        return (y / static_cast<double>(E)).view({B, T, d});
      }
      case ExpertSelect::Token:
        r = static_cast<RandomRouterImpl&>(*router).route_at(in, RouteLevel::Token);
        break;
      case ExpertSelect::Sentence: {
        // one group per row (sentence x beam), its draw kept in the decoder state
        auto row = (ctx.row_experts.defined() ? ctx.row_experts.select(1, moe_index_)
                                              : torch::randint(local_experts(), {B}, runtime::thread_generator(),
                                                               torch::TensorOptions().dtype(torch::kLong)) + first_)
                       .to(torch::kCPU)
                       .contiguous();
        r.group_expert.assign(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + B);
        break;
      }
    }
  } else {
    r = router->route(in);
  }
  if (ctx.stats) {
    torch::NoGradGuard ng;
    ExpertStats st;
    st.aux = r.aux;
    if (!r.group_expert.empty()) {
      // whole-group routing: every valid token of group g went to group_expert[g]
      // (the valid-token counts come to the host once, not one sync per group)
      auto G = static_cast<int64_t>(r.group_expert.size());
      auto v = in.valid.view({G, -1}).sum(1).to(torch::kCPU).to(torch::kDouble).contiguous();
      const double* vg = v.data_ptr<double>();
      std::vector<double> share(static_cast<size_t>(E), 0.0);
      for (int64_t g = 0; g < G; ++g) st.valid += vg[g];
      const double total = std::max(1.0, st.valid);
      for (int64_t g = 0; g < G; ++g) {
        const int64_t e = r.group_expert[g];
        if (e >= 0) share[e] += vg[g] / total;
        else for (auto& sh : share) sh += vg[g] / total / static_cast<double>(E);  // merged: every expert equally
      }
      st.share = torch::tensor(share, torch::kDouble).to(torch::kFloat);
    } else {
      auto e = r.expert.reshape({-1});
      auto kept = e.masked_select(e >= 0);
      st.valid = in.valid.sum().item<double>();
      st.share = torch::bincount(kept.to(torch::kCPU), {}, E).to(torch::kFloat) / std::max(1.0, st.valid);
    }
    auto& sink = *ctx.stats;
    if (static_cast<int64_t>(sink.size()) <= moe_index_) sink.resize(static_cast<size_t>(moe_index_ + 1));
    sink[static_cast<size_t>(moe_index_)] = std::move(st);
  }
  return dispatch(x2, r).view({B, T, d});
}

}  // namespace thor
