// Routers and the expert bank: routing invariants (capacity, <= k experts, combine
// weights, dropped tokens keep the residual), sparse dispatch against a naive per-token
// loop (forward and backward), hash and ALF rules, and the consistency loss formula.
#include <cmath>

#include <gtest/gtest.h>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/moe/expert_ffn.h"
#include "thor/moe/router_alf.h"
#include "thor/moe/router_hash.h"
#include "thor/moe/router_random.h"
#include "thor/moe/router_switch.h"
#include "thor/train/loss.h"

namespace {

thor::ModelConfig moe_config(const std::string& router, int64_t experts) {
  auto c = thor::testing::small_model_config(8, 2, 0.0);  // layer-level tests: width 8, FFN 16
  c.vocab_size = 50;
  c.num_experts = experts;
  c.router = router;
  return c;
}

thor::RouterInput input(int64_t B, int64_t T, int64_t d, int64_t pad_tail = 0) {
  thor::RouterInput in;
  in.x = torch::randn({B * T, d});
  in.tokens = torch::randint(4, 50, {B * T}, torch::kLong);
  if (pad_tail > 0) in.tokens.view({B, T}).narrow(1, T - pad_tail, pad_tail).fill_(0);
  in.valid = in.tokens.ne(0);
  in.rows = B;
  return in;
}

// y_n = sum over kept slots of w * FFN_e(x_n), one token at a time.
torch::Tensor naive_moe(thor::ExpertFFNImpl& f, const torch::Tensor& x2, const thor::Routing& r) {
  std::vector<torch::Tensor> rows;
  for (int64_t n = 0; n < x2.size(0); ++n) {
    auto y = torch::zeros({x2.size(1)});
    for (int64_t s = 0; s < r.expert.size(1); ++s) {
      int64_t e = r.expert[n][s].item<int64_t>();
      if (e < 0) continue;
      auto h = torch::relu(torch::matmul(x2[n], f.w1[e]) + f.b1[e]);
      y = y + r.weight[n][s] * (torch::matmul(h, f.w2[e]) + f.b2[e]);
    }
    rows.push_back(y);
  }
  return torch::stack(rows);
}

class DispatchTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DispatchTest, SparseDispatchEqualsNaiveLoopForwardAndBackward) {
  torch::manual_seed(7);
  auto cfg = moe_config(GetParam(), 4);
  cfg.capacity_factor = 0.75;  // forces drops for the gated routers
  thor::ExpertFFN f(cfg, 4, 0);
  f->train();
  auto in = input(3, 5, 8, 1);
  auto x = in.x.clone().requires_grad_(true);
  in.x = x;
  auto r = f->router->route(in);
  if (!r.group_expert.empty()) {  // expand whole-group draws for the naive loop
    r.expert = torch::full({15, 1}, r.group_expert[0], torch::kLong);
    r.weight = torch::ones({15, 1});
    r.group_expert.clear();
  }
  auto fast = f->dispatch(x, r);
  auto slow = naive_moe(*f, x, r);
  thor::testing::expect_close(fast, slow, 1e-5, 1e-5);
  auto probe = torch::randn_like(fast);
  auto params = f->parameters();
  params.push_back(x);
  auto g_fast = torch::autograd::grad({(fast * probe).sum()}, params, {}, true, false, true);
  auto g_slow = torch::autograd::grad({(slow * probe).sum()}, params, {}, true, false, true);
  for (size_t i = 0; i < params.size(); ++i) {
    if (!g_fast[i].defined() && !g_slow[i].defined()) continue;
    ASSERT_TRUE(g_fast[i].defined() && g_slow[i].defined()) << i;
    thor::testing::expect_close(g_fast[i], g_slow[i], 1e-5, 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Routers, DispatchTest,
                         ::testing::Values("thor", "random", "switch", "gshard", "hash", "alf"));

TEST(Routing, SwitchRespectsCapacityAndTopOne) {
  torch::manual_seed(1);
  auto cfg = moe_config("switch", 4);
  cfg.capacity_factor = 1.0;
  auto router = thor::make_router(cfg);
  router->train();
  auto in = input(8, 10, 8, 3);
  auto r = router->route(in);
  ASSERT_EQ(r.expert.size(1), 1);
  int64_t n_valid = in.valid.sum().item<int64_t>();
  int64_t cap = thor::expert_capacity(1.0, n_valid, 1, 4);
  auto e = r.expert.squeeze(1);
  for (int64_t k = 0; k < 4; ++k) EXPECT_LE((e == k).sum().item<int64_t>(), cap);
  EXPECT_TRUE((e.masked_select(in.valid.logical_not()) == -1).all().item<bool>());  // padding skipped
  // combine weight = the gate's top-1 probability
  auto probs = torch::softmax(static_cast<thor::SwitchRouterImpl&>(*router).gate(in.x), -1);
  thor::testing::expect_close(r.weight.squeeze(1), std::get<0>(probs.max(-1)), 1e-6, 1e-5);
  // balance loss = alpha * E * sum f_i P_i
  auto top = std::get<1>(probs.max(-1));
  auto m = in.valid.to(torch::kFloat);
  auto f = torch::one_hot(top, 4).to(torch::kFloat).mul(m.unsqueeze(1)).sum(0) / m.sum();
  auto P = probs.mul(m.unsqueeze(1)).sum(0) / m.sum();
  EXPECT_NEAR(r.aux.at("balance").item<double>(), 0.01 * 4 * (f * P).sum().item<double>(), 1e-6);
  EXPECT_TRUE(r.aux.count("z"));
}

TEST(Routing, GShardTopTwoRenormalisedWithCapacity) {
  torch::manual_seed(2);
  auto cfg = moe_config("gshard", 4);
  cfg.second_expert_policy = "all";
  cfg.capacity_factor = 0.5;
  auto router = thor::make_router(cfg);
  router->train();
  auto in = input(6, 10, 8);
  auto r = router->route(in);
  ASSERT_EQ(r.expert.size(1), 2);
  thor::testing::expect_close(r.weight.sum(1), torch::ones({60}), 1e-6, 1e-6);
  auto kept = r.expert.ge(0);
  EXPECT_TRUE(((r.expert.select(1, 0) != r.expert.select(1, 1)) | kept.select(1, 1).logical_not()).all().item<bool>());
  int64_t cap = thor::expert_capacity(0.5, 60, 2, 4);
  for (int64_t k = 0; k < 4; ++k) EXPECT_LE((r.expert == k).sum().item<int64_t>(), cap);
  EXPECT_GT((r.expert == -1).sum().item<int64_t>(), 0);  // capacity 0.5 must drop some
}

TEST(Routing, DroppedTokensKeepOnlyTheResidual) {
  torch::manual_seed(3);
  auto cfg = moe_config("switch", 4);
  cfg.capacity_factor = 0.25;
  thor::ExpertFFN f(cfg, 4, 0);
  f->train();
  auto in = input(4, 6, 8);
  auto r = f->router->route(in);
  auto out = f->dispatch(in.x, r);
  auto dropped = (r.expert.squeeze(1) == -1);
  ASSERT_GT(dropped.sum().item<int64_t>(), 0);
  // the FFN contributes exactly zero for dropped tokens, so the layer keeps x + 0
  EXPECT_EQ(out.index({dropped}).abs().max().item<float>(), 0.0f);
}

TEST(Routing, RandomRouterGranularity) {
  auto cfg = moe_config("thor", 4);
  thor::RandomRouterImpl router(cfg);
  auto in = input(6, 5, 8);
  in.groups = 2;
  auto batch = router.route_at(in, thor::RouteLevel::Batch);
  ASSERT_EQ(batch.group_expert.size(), 2u);
  auto e = batch.expert.view({2, -1});
  for (int g = 0; g < 2; ++g) EXPECT_TRUE((e[g] == batch.group_expert[g]).all().item<bool>());
  auto sent = router.route_at(in, thor::RouteLevel::Sentence).expert.view({6, 5});
  for (int b = 0; b < 6; ++b) EXPECT_TRUE((sent[b] == sent[b][0]).all().item<bool>());
  torch::manual_seed(4);
  auto tok = router.route_at(input(20, 10, 8), thor::RouteLevel::Token).expert;
  EXPECT_EQ(std::get<0>(at::_unique(tok)).numel(), 4);  // every expert drawn among 200 tokens
}

TEST(Routing, HashIsDeterministicAndBalanced) {
  auto cfg = moe_config("hash", 4);
  cfg.vocab_size = 103;
  thor::HashRouterImpl a(cfg), b(cfg);
  EXPECT_TRUE(torch::equal(a.table, b.table));
  auto counts = torch::bincount(a.table, {}, 4);
  EXPECT_LE((counts.max() - counts.min()).item<int64_t>(), 1);
  cfg.hash_seed = 2;
  thor::HashRouterImpl c(cfg);
  EXPECT_FALSE(torch::equal(a.table, c.table));
  auto in = input(3, 4, 8);
  auto r1 = a.route(in), r2 = a.route(in);
  EXPECT_TRUE(torch::equal(r1.expert, r2.expert));
  EXPECT_TRUE(torch::equal(r1.expert.squeeze(1), a.table.index_select(0, in.tokens)));
}

TEST(Routing, AlfBiasSteersSelectionButNotWeightsAndFollowsUpdateRule) {
  torch::manual_seed(5);
  auto cfg = moe_config("alf", 4);
  cfg.alf_update_rate = 0.01;
  thor::AlfRouterImpl router(cfg);
  router.train();
  auto in = input(5, 4, 8);
  router.bias.copy_(torch::tensor({0.f, 10.f, 0.f, 0.f}));
  auto r = router.route(in);
  EXPECT_TRUE((r.expert == 1).all().item<bool>());  // the bias decides the selection ...
  auto scores = torch::softmax(router.gate(in.x), -1);
  thor::testing::expect_close(r.weight.squeeze(1), scores.select(1, 1), 1e-6, 1e-5);  // ... not the weight
  // loads [0, 20, 0, 0]: mean 5 -> b += u * sign(5 - load)
  router.after_update();
  auto expect = torch::tensor({0.01f, 10.f - 0.01f, 0.01f, 0.01f});
  thor::testing::expect_close(router.bias, expect, 1e-6, 1e-6);
  EXPECT_EQ(router.load.sum().item<float>(), 0.f);
}

TEST(Loss, ConsistencyMatchesDirectFormula) {
  torch::manual_seed(6);
  auto lp = torch::log_softmax(torch::randn({4, 6}), -1), lq = torch::log_softmax(torch::randn({4, 6}), -1);
  auto keep = torch::tensor({true, true, false, true});
  double expect = 0;
  for (int n = 0; n < 4; ++n) {
    if (!keep[n].item<bool>()) continue;
    for (int v = 0; v < 6; ++v) {
      double p = std::exp(lp[n][v].item<double>()), q = std::exp(lq[n][v].item<double>());
      expect += 0.5 * (p - q) * (std::log(p) - std::log(q));
    }
  }
  EXPECT_NEAR(thor::consistency_loss(lp, lq, keep).item<double>(), expect, 1e-6);
  // Symmetric, zero for equal distributions, and finite when a probability underflows.
  EXPECT_NEAR(thor::consistency_loss(lq, lp, keep).item<double>(), expect, 1e-6);
  EXPECT_NEAR(thor::consistency_loss(lp, lp, keep).item<double>(), 0.0, 1e-9);
  auto extreme = torch::log_softmax(torch::tensor({{200.f, 0.f, -200.f}}), -1);
  auto flat = torch::log_softmax(torch::zeros({1, 3}), -1);
  EXPECT_TRUE(std::isfinite(thor::consistency_loss(extreme, flat, torch::tensor({true})).item<double>()));
}

TEST(Config, UnknownRouterAndSelectAreErrors) {
  EXPECT_THROW(thor::make_router(moe_config("nosuch", 2)), thor::Error);
  int64_t k = 0;
  EXPECT_THROW(thor::parse_expert_select("fixed:x", &k), thor::Error);
  EXPECT_EQ(thor::parse_expert_select("fixed:3", &k), thor::ExpertSelect::Fixed);
  EXPECT_EQ(k, 3);
}

}  // namespace
