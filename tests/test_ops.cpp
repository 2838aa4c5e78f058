// The model's matrix products (oneDNN sgemm when present) against LibTorch's linear and
// addmm (outputs and the gradients of input, weight and bias); dropout against its definition.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "thor/ops/dropout.h"
#include "thor/ops/gemm.h"

namespace {

void check(bool out_in, bool bias, std::vector<int64_t> x_shape) {
  torch::manual_seed(6);
  const int64_t in = x_shape.back(), out = 19;
  auto x = torch::randn(x_shape, torch::requires_grad());
  auto w = (out_in ? torch::randn({out, in}) : torch::randn({in, out})).requires_grad_();
  auto b = bias ? torch::randn({out}, torch::requires_grad()) : torch::Tensor();
  auto gy = torch::randn({x.numel() / in, out});
  auto y = out_in ? thor::linear(x, w, b) : thor::linear_in_out(x, w, b);
  (y.reshape({-1, out}) * gy).sum().backward();
  auto gx = x.grad().clone(), gw = w.grad().clone();
  auto gb = bias ? b.grad().clone() : torch::Tensor();
  x.mutable_grad().zero_(), w.mutable_grad().zero_();
  if (bias) b.mutable_grad().zero_();
  auto ref = out_in ? torch::nn::functional::linear(x, w, b) : (bias ? torch::addmm(b, x, w) : torch::mm(x, w));
  (ref.reshape({-1, out}) * gy).sum().backward();
  thor::testing::expect_close(y, ref, 1e-4, 1e-4);
  thor::testing::expect_close(gx, x.grad(), 1e-4, 1e-4);
  thor::testing::expect_close(gw, w.grad(), 1e-3, 1e-4);
  if (bias) thor::testing::expect_close(gb, b.grad(), 1e-4, 1e-4);
}

TEST(Gemm, LinearEqualsLibTorch) {
  check(true, true, {3, 5, 37});
  check(true, false, {11, 37});
}

TEST(Gemm, InOutLayoutEqualsAddmm) {
  check(false, true, {13, 37});
  check(false, false, {13, 37});
}

TEST(Gemm, SliceOfAWeightBankGetsItsGradient) {
  // Expert banks pass w1[e]: the gradient must land in that slice only.
  torch::manual_seed(7);
  auto bank = torch::randn({3, 8, 5}, torch::requires_grad());
  auto x = torch::randn({4, 8});
  thor::linear_in_out(x, bank[1], torch::Tensor()).sum().backward();
  EXPECT_EQ(bank.grad()[0].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(bank.grad()[2].abs().sum().item<double>(), 0.0);
  thor::testing::expect_close(bank.grad()[1], x.t().matmul(torch::ones({4, 5})), 1e-4, 1e-4);
}

}  // namespace

namespace {

TEST(Dropout, KeepsTheRightShareScaledAndIsIdentityInEval) {
  torch::manual_seed(8);
  auto x = torch::randn({1000, 1000}, torch::requires_grad());
  for (double p : {0.1, 0.3, 0.5}) {
    auto y = thor::dropout(x, p, true);
    auto kept = y.ne(0);
    double share = kept.to(torch::kDouble).mean().item<double>();
    EXPECT_NEAR(share, 1.0 - p, 0.005) << p;  // 1e6 draws: sd 5e-4
    // kept values are x / (1 - p), exactly as LibTorch scales them
    thor::testing::expect_close(y.masked_select(kept), x.masked_select(kept) / (1.0 - p), 1e-6, 1e-6);
    // gradient: the same mask and scale
    auto gy = torch::randn_like(x);
    auto gx = torch::autograd::grad({y}, {x}, {gy})[0];
    thor::testing::expect_close(gx, gy * kept.to(torch::kFloat) / (1.0 - p), 1e-6, 1e-6);
  }
  EXPECT_TRUE(thor::dropout(x, 0.3, false).is_same(x));
}

TEST(Dropout, ReproducibleFromTheGlobalSeedAndFreshEachCall) {
  auto x = torch::ones({257, 33});
  torch::manual_seed(9);
  auto a = thor::dropout(x, 0.3, true), b = thor::dropout(x, 0.3, true);
  torch::manual_seed(9);
  auto c = thor::dropout(x, 0.3, true);
  EXPECT_TRUE(torch::equal(a, c));
  EXPECT_FALSE(torch::equal(a, b));
  // independent of the number of threads
  at::set_num_threads(2);
  torch::manual_seed(9);
  auto d = thor::dropout(x, 0.3, true);
  at::set_num_threads(1);
  EXPECT_TRUE(torch::equal(a, d));
}

}  // namespace
