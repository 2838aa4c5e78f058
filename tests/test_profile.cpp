// The operation-class profile: classification of operator names, and the accounting
// identity (class times add up to the wall time of the profiled span); resident size.
#include <gtest/gtest.h>

#include "thor/common/op_profile.h"
#include "thor/common/runtime.h"
#include "thor/ops/dropout.h"
#include "thor/ops/gemm.h"

namespace {

TEST(OpProfile, ClassifiesOperatorNames) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"aten::addmm", "matmul"},
      {"AddmmBackward0", "matmul"},
      {"thor::gemm_backward", "matmul"},
      {"aten::bmm", "matmul"},
      {"thor::batched_matmul_backward", "matmul"},
      {"aten::_softmax", "attention softmax/mask"},
      {"aten::native_layer_norm", "layer norm"},
      {"thor::dropout", "dropout"},
      {"aten::bernoulli_", "dropout"},
      {"thor::loss", "loss"},
      {"thor::optimizer", "optimizer"},
      {"aten::cat", "copies/layout"},
      {"aten::add", "other element-wise"},
      {"aten::cumsum", "other element-wise"},
  };
  for (auto& [name, cls] : cases) EXPECT_EQ(thor::OpProfile::classify(name), cls) << name;
}

TEST(OpProfile, ClassesAddUpToTheWallTime) {
  torch::manual_seed(10);
  auto x = torch::randn({256, 256}, torch::requires_grad());
  thor::OpProfile prof;
  auto y = thor::dropout(thor::linear(x, x, torch::Tensor()), 0.2, true).relu().sum();
  y.backward();
  prof.stop();
  auto classes = prof.by_class();
  double total = 0;
  for (auto& [name, secs] : classes) {
    EXPECT_GE(secs, 0.0) << name;
    total += secs;
  }
  EXPECT_NEAR(total, prof.wall_s(), 1e-6 + 1e-3 * prof.wall_s());
  EXPECT_GT(classes["matmul"], 0.0);
  EXPECT_GT(classes["dropout"], 0.0);
  EXPECT_FALSE(prof.top(3).empty());
}

}  // namespace

namespace {

TEST(Runtime, ResidentSizeFollowsTouchedMemory) {
  double before = thor::runtime::current_rss_mb();
  EXPECT_GT(before, 1.0);
  auto t = torch::ones({64 * 1024 * 1024});  // 256 MB, written
  double after = thor::runtime::current_rss_mb();
  EXPECT_GT(after - before, 200.0);
  EXPECT_EQ(t.sum().item<double>(), 64.0 * 1024 * 1024);
}

}  // namespace
