// The model's matrix products (oneDNN sgemm when present) against LibTorch's linear and
// addmm (outputs and the gradients of input, weight and bias); dropout against its definition.
#include <functional>

#include <gtest/gtest.h>

#include "fixtures.h"
#include "thor/ops/derived_cache.h"
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

namespace {

// Attention's batched products on the views attention really passes: heads selected out of
// a fused projection (strided rows), keys transposed, single query rows (decoding).
void check_batched(const torch::Tensor& a_base, const torch::Tensor& b_base,
                   const std::function<torch::Tensor(const torch::Tensor&)>& view_a,
                   const std::function<torch::Tensor(const torch::Tensor&)>& view_b) {
  auto a1 = a_base.clone().requires_grad_(), b1 = b_base.clone().requires_grad_();
  auto a2 = a_base.clone().requires_grad_(), b2 = b_base.clone().requires_grad_();
  auto c1 = thor::batched_matmul(view_a(a1), view_b(b1));
  auto c2 = torch::matmul(view_a(a2), view_b(b2));
  thor::testing::expect_close(c1, c2, 1e-4, 1e-4);
  auto g = torch::randn_like(c2);
  (c1 * g).sum().backward();
  (c2 * g).sum().backward();
  thor::testing::expect_close(a1.grad(), a2.grad(), 1e-4, 1e-4);
  thor::testing::expect_close(b1.grad(), b2.grad(), 1e-4, 1e-4);
}

TEST(Gemm, BatchedMatmulEqualsMatmulOnAttentionViews) {
  torch::manual_seed(11);
  auto id = [](const torch::Tensor& t) { return t; };
  // contiguous [B, H, M, K] x [B, H, K, N]
  check_batched(torch::randn({2, 3, 5, 8}), torch::randn({2, 3, 8, 4}), id, id);
  // q . k^T with q, k heads of fused [B, T, 3, H, Dh] projections
  auto heads = [](int64_t i) {
    return [i](const torch::Tensor& y) { return y.select(2, i).transpose(1, 2); };  // [B, H, T, Dh]
  };
  auto keys_t = [](const torch::Tensor& y) { return y.select(2, 1).transpose(1, 2).transpose(-1, -2); };
  check_batched(torch::randn({2, 7, 3, 4, 8}), torch::randn({2, 6, 3, 4, 8}), heads(0), keys_t);
  // probs [B, H, T, S] . v (strided)
  check_batched(torch::randn({2, 4, 7, 6}), torch::randn({2, 6, 3, 4, 8}), id, heads(2));
  // one query row per sentence (decoding)
  check_batched(torch::randn({3, 4, 1, 8}), torch::randn({3, 4, 8, 9}), id, id);
}

}  // namespace

namespace {

// Derived tensors are reused while their parameters are unchanged and remade after an
// in-place change (version counter) or when a parameter is replaced (storage).
TEST(Ops, DerivedCacheFollowsParameters) {
  thor::DerivedCache cache;
  auto a = torch::ones({3}), b = torch::full({3}, 2.0);
  int made = 0;
  auto make = [&] {
    ++made;
    return std::vector<torch::Tensor>{a + b};
  };
  auto first = cache.get({a, b}, make)[0];
  EXPECT_EQ(cache.get({a, b}, make)[0].data_ptr(), first.data_ptr());
  EXPECT_EQ(made, 1);
  {
    torch::NoGradGuard ng;
    a.mul_(4);
  }
  EXPECT_TRUE(torch::equal(cache.get({a, b}, make)[0], torch::full({3}, 6.0)));
  EXPECT_EQ(made, 2);
  b = torch::zeros({3});
  EXPECT_TRUE(torch::equal(cache.get({a, b}, make)[0], torch::full({3}, 4.0)));
  EXPECT_EQ(made, 3);
}

}  // namespace
