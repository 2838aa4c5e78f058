// Label-smoothed cross entropy against a hand computation; Adam and the inverse-sqrt
// schedule against their formulas.
#include <cmath>

#include <gtest/gtest.h>

#include "fixtures.h"
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

TEST(Optim, InverseSqrtSchedule) {
  thor::InverseSqrtSchedule s{1e-3, 1e-7, 100};
  EXPECT_NEAR(s.at(0), 1e-7, 1e-12);
  EXPECT_NEAR(s.at(50), 1e-7 + (1e-3 - 1e-7) * 0.5, 1e-12);
  EXPECT_NEAR(s.at(100), 1e-3, 1e-12);
  EXPECT_NEAR(s.at(400), 1e-3 * std::sqrt(100.0 / 400.0), 1e-12);
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
