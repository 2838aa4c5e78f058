// Label-smoothed cross entropy against a hand computation; Adam and the inverse-sqrt
// schedule against their formulas.
#include <cmath>

#include <gtest/gtest.h>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/train/loss.h"
#include "thor/train/optim.h"

namespace {

TEST(Loss, LabelSmoothedMatchesHandComputation) {
  auto logits = torch::tensor({1.0, 2.0, 0.5, -1.0, 0.0, 0.3, 0.3, 2.0, -2.0, 1.0, 0.1, 0.2}).view({3, 4});
  auto target = torch::tensor({1, 3, 0}, torch::kLong);  // last row is pad (id 0)
  double eps = 0.1;
  auto r = thor::label_smoothed_nll(logits, target, eps, /*pad=*/0);
  double loss = 0, nll = 0;
  for (int i = 0; i < 2; ++i) {
    double z = 0;
    for (int v = 0; v < 4; ++v) z += std::exp(logits[i][v].item<double>());
    double sum_neg_lp = 0;
    for (int v = 0; v < 4; ++v) sum_neg_lp += -(logits[i][v].item<double>() - std::log(z));
    double n = -(logits[i][target[i].item<int64_t>()].item<double>() - std::log(z));
    double eps_i = eps / 3;
    nll += n;
    loss += (1 - eps - eps_i) * n + eps_i * sum_neg_lp;
  }
  EXPECT_NEAR(r.nll.item<double>(), nll, 1e-5);
  EXPECT_NEAR(r.loss.item<double>(), loss, 1e-5);
}

TEST(Loss, NoSmoothingIsCrossEntropy) {
  torch::manual_seed(0);
  auto logits = torch::randn({5, 7});
  auto target = torch::tensor({1, 2, 3, 4, 5}, torch::kLong);
  auto r = thor::label_smoothed_nll(logits, target, 0.0, 0);
  auto ce = torch::nn::functional::cross_entropy(logits, target,
                                                 torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  EXPECT_NEAR(r.loss.item<double>(), ce.item<double>(), 1e-4);
}

// The fused sweep against autograd through the composite formulas: loss, statistics and the
// gradient of every logit, one pass (dense) and two passes (THOR), pad rows included, with
// more rows than one block so several blocks (and threads) share the work; the consistency
// on the probabilities (the paper) or on the logits.
void check_fused_against_composite(int64_t groups, double alpha, int64_t V = 5000,
                                   thor::Consistency on = thor::Consistency::Probabilities) {
  torch::manual_seed(3);
  const int64_t N = 37, pad = 0;
  auto target = torch::randint(1, V, {N}, torch::kLong);
  target.index_put_({torch::tensor({4, 17, 36})}, pad);
  auto logits = (torch::randn({groups * N, V}) * 3).requires_grad_();
  auto weight = torch::rand({});  // a non-unit upstream gradient
  auto fused = thor::fused_translation_loss(logits, target, groups, 0.1, alpha, pad, on);
  (fused.loss * weight).backward();
  auto g_fused = logits.grad().clone();
  logits.grad().zero_();

  auto lprobs = torch::log_softmax(logits, -1).view({groups, N, V});
  auto loss = torch::zeros({});
  double ce = 0, nll = 0;
  for (int64_t g = 0; g < groups; ++g) {
    auto r = thor::label_smoothed_nll_lprobs(lprobs[g], target, 0.1, pad);
    loss = loss + r.loss;
    ce += r.loss.item<double>() / static_cast<double>(groups);
    nll += r.nll.item<double>() / static_cast<double>(groups);
  }
  double cons = 0;
  if (groups == 2) {
    auto z = logits.view({groups, N, V});
    auto c = on == thor::Consistency::Logits ? thor::consistency_logits_loss(z[0], z[1], target.ne(pad))
                                             : thor::consistency_loss(lprobs[0], lprobs[1], target.ne(pad));
    cons = c.item<double>();
    loss = loss + alpha * c;
  }
  (loss * weight).backward();
  EXPECT_NEAR(fused.loss.item<double>(), loss.item<double>(), 1e-3 * std::abs(loss.item<double>()));
  EXPECT_NEAR(fused.ce, ce, 1e-4 * ce);
  EXPECT_NEAR(fused.nll, nll, 1e-4 * nll);
  EXPECT_NEAR(fused.consistency, cons, 1e-4 * std::max(1.0, cons));
  if (groups == 2) {
    EXPECT_GT(fused.consistency, 1.0);  // the two passes really differ
  }
  EXPECT_TRUE(torch::allclose(g_fused, logits.grad(), 1e-4, 1e-6))
      << "max |diff| " << (g_fused - logits.grad()).abs().max().item<double>();
  // pad rows get no gradient
  EXPECT_EQ(g_fused[17].abs().sum().item<double>(), 0.0);
}

TEST(Loss, FusedEqualsCompositeOnePass) { check_fused_against_composite(1, 0.0); }
TEST(Loss, FusedEqualsCompositeTwoPasses) { check_fused_against_composite(2, 5.0); }
TEST(Loss, FusedEqualsCompositeConsistencyOnLogits) {
  check_fused_against_composite(2, 5.0, 5000, thor::Consistency::Logits);
  check_fused_against_composite(2, 5.0, 13, thor::Consistency::Logits);  // the loops' scalar tails
  EXPECT_THROW(thor::parse_consistency("kl"), thor::Error);
}
// fewer logits than one vector of partial sums: only the loops' scalar tails run
TEST(Loss, FusedEqualsCompositeSmallVocabulary) {
  check_fused_against_composite(1, 0.0, 13);
  check_fused_against_composite(2, 5.0, 13);
}

TEST(Optim, InverseSqrtSchedule) {
  thor::InverseSqrtSchedule s{1e-3, 1e-7, 100};
  EXPECT_NEAR(s.at(0), 1e-7, 1e-12);
  EXPECT_NEAR(s.at(50), 1e-7 + (1e-3 - 1e-7) * 0.5, 1e-12);
  EXPECT_NEAR(s.at(100), 1e-3, 1e-12);
  EXPECT_NEAR(s.at(400), 1e-3 * std::sqrt(100.0 / 400.0), 1e-12);
}

// As fairseq: after zero_grad a parameter no backward reached (an expert nobody drew) keeps
// its value and its Adam state — no step with a zero gradient, no weight decay.
TEST(Optim, ParameterWithoutGradientIsLeftAlone) {
  auto used = torch::tensor({1.0f}).requires_grad_(true), unused = torch::tensor({2.0f}).requires_grad_(true);
  thor::Adam adam({used, unused}, {0.9, 0.98, 1e-8, 0.01});
  used.mutable_grad() = torch::tensor({0.5f});
  unused.mutable_grad() = torch::tensor({0.5f});
  adam.step(0.1);  // both move once, both have momentum
  const float unused_after = unused.item<float>();
  adam.zero_grad();
  EXPECT_FALSE(used.grad().defined());
  EXPECT_FALSE(unused.grad().defined());
  used.mutable_grad() = torch::tensor({0.5f});
  const float used_before = used.item<float>();
  adam.step(0.1);
  EXPECT_EQ(unused.item<float>(), unused_after);
  EXPECT_NE(used.item<float>(), used_before);
}

TEST(Optim, AdamMatchesFormulaWithDecoupledWeightDecay) {
  auto p = torch::tensor({1.0f, -2.0f}).requires_grad_(true);
  thor::Adam adam({p}, {0.9, 0.98, 1e-8, 0.01});
  std::vector<std::vector<double>> grads = {{0.5, -1.0}, {0.1, 0.3}};
  double w[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
  double lr = 0.1;
  for (int t = 1; t <= 2; ++t) {
    p.mutable_grad() = torch::tensor({static_cast<float>(grads[t - 1][0]), static_cast<float>(grads[t - 1][1])});
    adam.step(lr);
    for (int i = 0; i < 2; ++i) {
      double g = grads[t - 1][i];
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.98 * v[i] + 0.02 * g * g;
      double step = lr * std::sqrt(1 - std::pow(0.98, t)) / (1 - std::pow(0.9, t));
      w[i] *= 1 - 0.01 * lr;
      w[i] -= step * m[i] / (std::sqrt(v[i]) + 1e-8);
    }
  }
  EXPECT_NEAR(p[0].item<double>(), w[0], 1e-5);
  EXPECT_NEAR(p[1].item<double>(), w[1], 1e-5);
}

}  // namespace
