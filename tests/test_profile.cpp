// The operation-class profile: classification of operator names, and the accounting
// identity (class times add up to the wall time of the profiled span); resident size;
// parallel workers and per-thread generators.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>

#include "fixtures.h"

#include <ATen/CPUGeneratorImpl.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>

#include "thor/common/op_profile.h"
#include "thor/common/progress.h"
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

TEST(Runtime, RunWorkersRunsEveryTaskAtOnceAndRethrows) {
  at::set_num_threads(2);
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::vector<int> ran(3, 0);
  std::atomic<int> arrived{0};
  thor::runtime::run_workers(3, [&](int64_t w) {
    {
      std::lock_guard<std::mutex> lock(mu);
      threads.insert(std::this_thread::get_id());
      ++ran[static_cast<size_t>(w)];
    }
    EXPECT_EQ(at::get_num_threads(), 1);  // max(1, 2 / 3) intra-op threads each
    ++arrived;
    while (arrived < 3) std::this_thread::yield();  // returns only if all three run at once
  });
  EXPECT_EQ(ran, (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(threads.size(), 3u);
  EXPECT_TRUE(threads.count(std::this_thread::get_id()));  // task 0 on the caller
  EXPECT_EQ(at::get_num_threads(), 2);                      // restored
  std::atomic<int> finished{0};
  EXPECT_THROW(thor::runtime::run_workers(2,
                                          [&](int64_t w) {
                                            if (w == 1) throw std::runtime_error("worker 1 failed");
                                            ++finished;
                                          }),
               std::runtime_error);
  EXPECT_EQ(finished, 1);  // the other worker still ran to its end
  EXPECT_EQ(at::get_num_threads(), 2);
  at::set_num_threads(1);
}

TEST(Runtime, GeneratorScopeGivesEachThreadItsOwnDraws) {
  auto x = torch::ones({97, 31});
  auto masks = [&](uint64_t seed) {
    thor::runtime::GeneratorScope rng(at::detail::createCPUGenerator(seed));
    return std::make_pair(thor::dropout(x, 0.3, true), thor::dropout(x, 0.3, true));
  };
  torch::manual_seed(1);
  auto a = masks(42);
  torch::manual_seed(2);  // the global generator plays no part inside the scope
  std::pair<torch::Tensor, torch::Tensor> b;
  std::thread([&] { b = masks(42); }).join();
  EXPECT_TRUE(torch::equal(a.first, b.first));
  EXPECT_TRUE(torch::equal(a.second, b.second));
  EXPECT_FALSE(torch::equal(a.first, a.second));
  EXPECT_FALSE(torch::equal(masks(43).first, a.first));
  // outside any scope the global generator is back
  EXPECT_FALSE(thor::runtime::thread_generator().has_value());
  torch::manual_seed(3);
  auto c = thor::dropout(x, 0.3, true);
  torch::manual_seed(3);
  EXPECT_TRUE(torch::equal(c, thor::dropout(x, 0.3, true)));
}

}  // namespace

// The terminal progress line: percentage, rate, elapsed, ETA and the caller's extra text;
// nothing at all when disabled (stderr not a terminal).
TEST(Progress, DrawsPercentRateElapsedEtaAndNothingWhenOff) {
  EXPECT_EQ(thor::Progress::clock(65), "1:05");
  EXPECT_EQ(thor::Progress::clock(3725), "1:02:05");
  auto dir = thor::testing::temp_dir("progress");
  const auto path = (dir / "stderr.txt").string();
  auto capture = [&](const std::function<void()>& fn) {
    std::fflush(stderr);
    const int saved = ::dup(2);
    FILE* f = std::fopen(path.c_str(), "w");
    ::dup2(::fileno(f), 2);
    fn();
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    std::fclose(f);
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto on = capture([] {
    thor::Progress p("work", 10, "items", true);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    p.update(5, "loss 1.5");
    p.finish();
  });
  EXPECT_NE(on.find("[work]  50% 5/10 items"), std::string::npos) << on;
  EXPECT_NE(on.find(" items/s | 0:00 elapsed | ETA 0:00 | loss 1.5"), std::string::npos) << on;
  EXPECT_EQ(on.back(), '\n');
  auto off = capture([] {
    thor::Progress p("work", 10, "items", false);
    p.update(5, "loss 1.5");
  });
  EXPECT_TRUE(off.empty()) << off;
}
