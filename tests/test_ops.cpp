// The model's matrix products (oneDNN sgemm when present) against LibTorch's linear and
// addmm: outputs and the gradients of input, weight and bias.
#include <gtest/gtest.h>

#include "fixtures.h"
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
