// The model's matrix products (oneDNN sgemm when present) against LibTorch's linear and
// addmm (outputs and the gradients of input, weight and bias); dropout against its definition.
#include <functional>
#include <limits>

#include <gtest/gtest.h>

#include "fixtures.h"
#include "thor/ops/attention_kernel.h"
#include "thor/ops/derived_cache.h"
#include "thor/ops/dropout.h"
#include "thor/common/error.h"
#include "thor/ops/gemm.h"
#include "thor/ops/packed_gemm.h"
#include "thor/ops/simd.h"

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

// The counter hash behaves as independent draws: two calls, and neighbouring elements of
// one call, are kept together as often as (1 - p)^2 predicts.
TEST(Dropout, MasksAreIndependentAcrossCallsAndNeighbours) {
  torch::manual_seed(11);
  auto x = torch::ones({1 << 20});
  auto a = thor::dropout(x, 0.3, true).ne(0).to(torch::kDouble);
  auto b = thor::dropout(x, 0.3, true).ne(0).to(torch::kDouble);
  const double both = 0.7 * 0.7;  // 1M pairs: sd ~5e-4
  EXPECT_NEAR((a * b).mean().item<double>(), both, 0.003);
  EXPECT_NEAR((a.narrow(0, 0, (1 << 20) - 1) * a.narrow(0, 1, (1 << 20) - 1)).mean().item<double>(), both, 0.003);
  EXPECT_NEAR((a.narrow(0, 0, (1 << 20) - 16) * a.narrow(0, 16, (1 << 20) - 16)).mean().item<double>(), both, 0.003);
}

TEST(Dropout, FusedResidualAddEqualsAddingTheDroppedTensor) {
  auto r = torch::randn({37, 19}, torch::requires_grad()), x = torch::randn({37, 19}, torch::requires_grad());
  auto g = torch::randn({37, 19});
  torch::manual_seed(10);
  auto fused = thor::dropout_add(r, x, 0.25, true);
  (fused * g).sum().backward();
  auto gr = r.grad().clone(), gx = x.grad().clone();
  r.mutable_grad().zero_(), x.mutable_grad().zero_();
  torch::manual_seed(10);  // the same mask
  auto ref = r + thor::dropout(x, 0.25, true);
  (ref * g).sum().backward();
  EXPECT_TRUE(torch::equal(fused, ref));
  EXPECT_TRUE(torch::equal(gr, r.grad()));
  EXPECT_TRUE(torch::equal(gx, x.grad()));
  EXPECT_FALSE(torch::equal(fused, r + x));  // something was dropped
  EXPECT_TRUE(torch::equal(thor::dropout_add(r, x, 0.25, false), r + x));
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

namespace {

torch::Tensor bf16_round(const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kFloat); }

// Reference of the int8 scheme: rows of x and output channels of w quantised symmetrically
// (max |.| / q, q = 127, or 63 where the CPU's int8 product would saturate), integer products
// exact, rescaled; computed in float64.
torch::Tensor int8_reference(const torch::Tensor& x, const torch::Tensor& w_out_in, const torch::Tensor& b) {
  const double q = thor::int8_quant_max();
  auto xd = x.to(torch::kDouble), wd = w_out_in.to(torch::kDouble);
  auto sx = xd.abs().amax(1, true) / q, sw = wd.abs().amax(1, true) / q;
  auto xq = (xd / sx).round(), wq = (wd / sw).round();
  auto y = xq.matmul(wq.t()) * sx * sw.t();
  if (b.defined()) y = y + b.to(torch::kDouble);
  return y.to(torch::kFloat);
}

TEST(Gemm, Bf16ProductsAreExactProductsOfRoundedOperands) {
  if (!thor::precision_available(thor::Precision::BFloat16)) GTEST_SKIP() << "no oneDNN bf16 gemm in this process";
  for (bool out_in : {true, false}) {
    torch::manual_seed(11);
    const int64_t in = 70, out = 23;
    auto x = torch::randn({3, 9, in}, torch::requires_grad());
    auto w = (out_in ? torch::randn({out, in}) : torch::randn({in, out})).requires_grad_();
    auto b = torch::randn({out}, torch::requires_grad());
    auto gy = torch::randn({27, out});
    torch::Tensor y, y_nograd;
    {
      thor::PrecisionGuard bf16(thor::Precision::BFloat16);
      y = out_in ? thor::linear(x, w, b) : thor::linear_in_out(x.reshape({-1, in}), w, b);
      (y.reshape({-1, out}) * gy).sum().backward();
      torch::NoGradGuard ng;  // the inference path (cached bf16 weight) gives the same products
      y_nograd = out_in ? thor::linear(x, w, b) : thor::linear_in_out(x.reshape({-1, in}), w, b);
    }
    // The same products in float32 on rounded operands (forward: x, W; backward: gy too).
    auto xr = bf16_round(x.detach()).reshape({-1, in});
    auto wr = bf16_round(w.detach());
    auto w_oi = out_in ? wr : wr.t();  // [out, in]
    auto gyr = bf16_round(gy);
    auto ref = xr.matmul(w_oi.t()) + b.detach();
    thor::testing::expect_close(y.reshape({-1, out}), ref, 1e-4, 1e-4);
    thor::testing::expect_close(y_nograd.reshape({-1, out}), ref, 1e-4, 1e-4);
    thor::testing::expect_close(x.grad().reshape({-1, in}), gyr.matmul(w_oi), 1e-4, 1e-4);
    auto gw_oi = gyr.t().matmul(xr);
    thor::testing::expect_close(w.grad(), out_in ? gw_oi : gw_oi.t(), 1e-3, 1e-4);
    thor::testing::expect_close(b.grad(), gy.sum(0), 1e-4, 1e-4);
    // and within bf16's rounding of the exact float32 product
    auto exact = x.detach().reshape({-1, in}).matmul(out_in ? w.detach().t() : w.detach()) + b.detach();
    EXPECT_LT((y.reshape({-1, out}) - exact).abs().max().item<double>(), 0.02 * exact.abs().max().item<double>());
  }
}

TEST(Gemm, Int8ProductFollowsThePerRowPerChannelScheme) {
  if (!thor::precision_available(thor::Precision::Int8)) GTEST_SKIP() << "no oneDNN int8 gemm in this process";
  torch::NoGradGuard ng;
  thor::PrecisionGuard int8(thor::Precision::Int8);
  torch::manual_seed(12);
  const int64_t in = 96, out = 37;
  auto x = torch::randn({2, 11, in});
  x[0][3] *= 50;  // rows of very different ranges: each has its own scale
  auto w = torch::randn({out, in}), b = torch::randn({out});
  auto x2 = x.reshape({-1, in});
  auto ref = int8_reference(x2, w, b);
  thor::testing::expect_close(thor::linear(x, w, b).reshape({-1, out}), ref, 1e-4, 1e-4);
  thor::testing::expect_close(thor::linear_in_out(x2, w.t().contiguous(), b), ref, 1e-4, 1e-4);
  thor::testing::expect_close(thor::linear_in_out(x2, w.t().contiguous(), torch::Tensor()), int8_reference(x2, w, {}),
                              1e-4, 1e-4);
  // close to the float32 product
  auto exact = x2.matmul(w.t()) + b;
  auto err = (thor::linear(x2, w, b) - exact).abs() / exact.abs().amax(1, true);
  EXPECT_LT(err.max().item<double>(), 0.03);
}

TEST(Gemm, Int8HasNoBackward) {
  if (!thor::precision_available(thor::Precision::Int8)) GTEST_SKIP() << "no oneDNN int8 gemm in this process";
  thor::PrecisionGuard int8(thor::Precision::Int8);
  auto x = torch::randn({4, 8}), w = torch::randn({5, 8}, torch::requires_grad());
  EXPECT_THROW(thor::linear(x, w, torch::Tensor()), c10::Error);
}

TEST(Gemm, CachedLowPrecisionWeightsFollowTheWeight) {
  if (!thor::precision_available(thor::Precision::Int8)) GTEST_SKIP() << "no oneDNN int8 gemm in this process";
  torch::NoGradGuard ng;
  torch::manual_seed(13);
  auto x = torch::randn({6, 16}), w = torch::randn({9, 16});
  for (auto p : {thor::Precision::BFloat16, thor::Precision::Int8}) {
    if (!thor::precision_available(p)) continue;  // bf16: oneDNN has no bf16 gemm for CPUs before AVX-512
    thor::PrecisionGuard guard(p);
    auto before = thor::linear(x, w, torch::Tensor());
    thor::testing::expect_close(thor::linear(x, w, torch::Tensor()), before, 0, 0);  // cache hit: same result
    w.mul_(-2);  // an in-place update (optimizer step, checkpoint load) bumps the version
    auto after = thor::linear(x, w, torch::Tensor());
    thor::testing::expect_close(after, before * -2, 1e-2, 1e-2);
    auto w2 = w[3];  // a slice of the same storage has its own entry
    thor::testing::expect_close(thor::linear(x, w2.unsqueeze(0), torch::Tensor()), after.narrow(1, 3, 1), 1e-5, 1e-5);
    w.div_(-2);
  }
  // Every update makes a new version: it replaces the old copy instead of adding one.
  thor::PrecisionGuard guard(thor::precision_available(thor::Precision::BFloat16) ? thor::Precision::BFloat16
                                                                               : thor::Precision::Int8);
  thor::linear(x, w, torch::Tensor());
  const auto held = thor::low_precision_cache_bytes();
  for (int i = 0; i < 5; ++i) {
    w.add_(0.5);
    thor::linear(x, w, torch::Tensor());
  }
  EXPECT_EQ(thor::low_precision_cache_bytes(), held);
}

// The packed float32 kernel against a double-precision naive product: every row-block and
// panel remainder (M and N not multiples of 6 and 16), both weight layouts, with and without
// a bias, rows read with a stride larger than K.
TEST(PackedGemm, EqualsTheNaiveProduct) {
  if (!thor::packed_gemm_supported()) GTEST_SKIP() << "the CPU has no AVX2 / FMA";
  torch::manual_seed(21);
  for (int64_t M : {1, 5, 6, 7, 13, 55}) {
    for (int64_t K : {1, 3, 17, 256}) {
      for (int64_t N : {1, 15, 16, 17, 40}) {
        for (bool out_in : {true, false}) {
          auto x = torch::randn({M, K + 3}).narrow(1, 0, K);  // row stride K + 3
          auto w = out_in ? torch::randn({N, K}) : torch::randn({K, N});
          auto b = torch::randn({N});
          auto panels = thor::pack_weight_panels(w, out_in);
          ASSERT_EQ(panels.size(0), (N + 15) / 16);
          auto ref = torch::matmul(x.to(torch::kDouble), (out_in ? w.t() : w).to(torch::kDouble));
          for (bool bias : {false, true}) {
            auto y = torch::full({M, N + 2}, 7.0f);  // ldc N + 2: the two extra columns stay untouched
            thor::packed_gemm(x.data_ptr<float>(), M, K, x.stride(0), panels, N, bias ? b.data_ptr<float>() : nullptr,
                              y.data_ptr<float>(), N + 2);
            auto want = bias ? ref + b.to(torch::kDouble) : ref;
            EXPECT_LT((y.narrow(1, 0, N).to(torch::kDouble) - want).abs().max().item<double>(), 1e-4 * (1 + K / 16.0))
                << "M " << M << " K " << K << " N " << N << " out_in " << out_in << " bias " << bias;
            EXPECT_TRUE(y.narrow(1, N, 2).eq(7.0f).all().item<bool>());
          }
        }
      }
    }
  }
}

// Every output element is one in-order sum over K: a row's result is the same bits whatever
// the other rows and the thread count (so a sentence decodes the same in any batch).
TEST(PackedGemm, RowsDoNotDependOnTheBatchOrTheThreads) {
  if (!thor::packed_gemm_supported()) GTEST_SKIP() << "the CPU has no AVX2 / FMA";
  torch::manual_seed(22);
  const int64_t M = 37, K = 300, N = 70;
  auto x = torch::randn({M, K}), w = torch::randn({N, K}), b = torch::randn({N});
  auto panels = thor::pack_weight_panels(w, true);
  auto run = [&](const torch::Tensor& rows) {
    auto y = torch::empty({rows.size(0), N});
    thor::packed_gemm(rows.data_ptr<float>(), rows.size(0), K, K, panels, N, b.data_ptr<float>(), y.data_ptr<float>(), N);
    return y;
  };
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  auto all = run(x);
  at::set_num_threads(2);
  EXPECT_TRUE(torch::equal(run(x), all));
  at::set_num_threads(threads);
  for (int64_t m : {0, 5, 36}) EXPECT_TRUE(torch::equal(run(x.narrow(0, m, 1).contiguous()), all.narrow(0, m, 1))) << m;
  EXPECT_TRUE(torch::equal(run(x.narrow(0, 7, 20).contiguous()), all.narrow(0, 7, 20)));
}

// Without autograd, linear() reads the weight's cached panels where the kernel is preferred:
// equal to the autograd path, and a weight updated in place is packed again.
TEST(PackedGemm, LinearWithoutAutogradFollowsTheWeight) {
  torch::manual_seed(23);
  auto x = torch::randn({11, 48}), w = torch::randn({33, 48}), b = torch::randn({33}), wio = torch::randn({48, 20});
  auto with_grad = thor::linear(x, w.clone().requires_grad_(), b).detach();
  auto in_out_grad = thor::linear_in_out(x, wio.clone().requires_grad_(), torch::Tensor()).detach();
  torch::NoGradGuard ng;
  thor::testing::expect_close(thor::linear(x, w, b), with_grad, 1e-5, 1e-5);
  thor::testing::expect_close(thor::linear_in_out(x, wio, torch::Tensor()), in_out_grad, 1e-5, 1e-5);
  w.mul_(-2);
  thor::testing::expect_close(thor::linear(x, w, torch::Tensor()), (with_grad - b) * -2, 1e-4, 1e-4);
  // a row alone equals its row in the batch, bit for bit, on either path
  EXPECT_TRUE(torch::equal(thor::linear(x.narrow(0, 4, 1), w, b), thor::linear(x, w, b).narrow(0, 4, 1)) ||
              !thor::packed_gemm_preferred());
}

TEST(Gemm, PrecisionOptionIsChecked) {
  EXPECT_THROW(thor::parse_precision("fp16"), thor::Error);
  EXPECT_EQ(thor::parse_precision("bf16"), thor::Precision::BFloat16);
  EXPECT_THROW(thor::use_precision("int8", torch::kCPU, /*training=*/true), thor::Error);
  EXPECT_THROW(thor::use_precision("bf16", torch::Device("cuda:0"), /*training=*/true), thor::Error);
  EXPECT_EQ(thor::use_precision("float32", torch::kCPU, true), thor::Precision::Float32);
  EXPECT_EQ(thor::matmul_precision(), thor::Precision::Float32);
}

}  // namespace

namespace {

// The composite definition: softmax(q k^T + mask) v, heads merged into [B, T, H * Dh].
torch::Tensor attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& kpm, bool causal) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), S = k.size(2);
  auto scores = q.matmul(k.transpose(-1, -2));
  if (causal) scores.masked_fill_(torch::ones({T, S}, torch::kBool).triu(S - T + 1), -INFINITY);
  if (kpm.defined()) scores.masked_fill_(kpm.view({B, 1, 1, S}), -INFINITY);
  return torch::softmax(scores, -1).matmul(v).transpose(1, 2).reshape({B, T, H * q.size(3)});
}

TEST(AttentionKernel, EqualsTheCompositeDefinition) {
  torch::NoGradGuard ng;
  torch::manual_seed(21);
  const int64_t B = 3, H = 4, Dh = 20, S = 9;
  auto kpm = torch::zeros({B, S}, torch::kBool);
  kpm[0].narrow(0, 6, 3).fill_(true);
  kpm[2][0] = true;
  for (int64_t T : {1, 5, 9}) {
    // q, k, v as the model has them: heads split out of [B, len, H, Dh] (strided views)
    auto q = torch::randn({B, T, H, Dh}).transpose(1, 2);
    auto k = torch::randn({B, S, H, Dh}).transpose(1, 2), v = torch::randn({B, S, H, Dh}).transpose(1, 2);
    thor::testing::expect_close(thor::attention_inference(q, k, v, kpm, false),
                                attention_reference(q, k, v, kpm, false), 1e-5, 1e-5);
    thor::testing::expect_close(thor::attention_inference(q, k, v, torch::Tensor(), true),
                                attention_reference(q, k, v, torch::Tensor(), true), 1e-5, 1e-5);
    // a transposed last dimension (stride != 1) is copied first
    auto kt = k.contiguous().transpose(-1, -2).contiguous().transpose(-1, -2);
    thor::testing::expect_close(thor::attention_inference(q, kt, v, kpm, false),
                                attention_reference(q, k, v, kpm, false), 1e-5, 1e-5);
  }
  // every key masked: zeros instead of NaN
  auto all = torch::ones({1, 4}, torch::kBool);
  auto z = thor::attention_inference(torch::randn({1, 2, 3, 8}), torch::randn({1, 2, 4, 8}), torch::randn({1, 2, 4, 8}),
                                     all, false);
  EXPECT_EQ(z.abs().sum().item<double>(), 0.0);
}

}  // namespace

namespace {

TEST(Simd, VexpMatchesExpToFloatPrecision) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.001) {
    const float xf = static_cast<float>(x);
    const double want = std::exp(static_cast<double>(xf));
    worst = std::max(worst, std::abs(thor::simd::vexp(xf) - want) / want);
  }
  EXPECT_LT(worst, 3e-7);
  // far below the range: a tiny positive number instead of a denormal; exact at 0
  EXPECT_GT(thor::simd::vexp(-1000.0f), 0.0f);
  EXPECT_LT(thor::simd::vexp(-1000.0f), 2e-38f);
  EXPECT_EQ(thor::simd::vexp(0.0f), 1.0f);
}

}  // namespace

namespace {

// The bf16 backward's one pass over a gradient: the same bits as LibTorch's conversion (ties,
// infinities, subnormals included; NaN stays NaN) and the column sums of the unrounded values.
TEST(Gemm, Bf16CopyWithColumnSumsEqualsConversionAndSum) {
  torch::manual_seed(12);
  const int64_t M = 531, N = 37;  // neither a multiple of the row block nor of a vector
  auto g = torch::randn({M, N}) * 3;
  auto flat = g.view({-1});
  const float special[] = {0.0f, -0.0f, 1.0f + 1.0f / 256.0f, 1.0f + 3.0f / 256.0f,  // ties to even
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min(),
                           3.0e38f, -1.0e-40f};
  for (size_t i = 0; i < sizeof special / sizeof special[0]; ++i) flat[static_cast<int64_t>(7 * i + 100)] = special[i];
  auto [b16, sums] = thor::bf16_with_column_sums(g);
  auto want = g.to(torch::kBFloat16);
  ASSERT_EQ(b16.scalar_type(), torch::kBFloat16);
  auto bits = [](const torch::Tensor& t) { return t.contiguous().view(torch::kShort); };
  // NaN stays NaN (its payload differs between LibTorch's scalar and vector conversions)
  auto nan = torch::isnan(g);
  EXPECT_TRUE(torch::equal(torch::isnan(b16.to(torch::kFloat)), nan));
  EXPECT_TRUE(torch::equal(bits(b16).masked_select(nan.logical_not()), bits(want).masked_select(nan.logical_not())));
  // sums: columns without the specials against float64
  auto finite = torch::isfinite(g).all(0);
  auto ref = g.to(torch::kDouble).sum(0).to(torch::kFloat);
  thor::testing::expect_close(sums.masked_select(finite), ref.masked_select(finite), 1e-5, 1e-4);
  // without sums (products with no bias): the same copy, no sums
  auto [copy_only, no_sums] = thor::bf16_with_column_sums(g, false);
  EXPECT_FALSE(no_sums.defined());
  EXPECT_TRUE(torch::equal(bits(copy_only), bits(b16)));
}

}  // namespace
