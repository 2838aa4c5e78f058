// Paired bootstrap resampling against a naive implementation (each sample's sentences
// materialised and scored with corpus_bleu), and the interval and p-value formulas on
// hand-made sample scores.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/eval/metrics.h"
#include "thor/eval/significance.h"

namespace {

std::vector<std::string> refs() {
  return {"the cat sat on the mat .", "a dog runs in the park", "two men stand on the shore", "she said hello and left",
          "it costs twenty dollars", "short .", "an unrelated reference sentence here", "the red car is fast",
          "children play with a ball", "water flows under the bridge"};
}
std::vector<std::string> sys_a() {
  return {"the cat is on the mat .", "a dog runs in a park", "two men stand at the shore", "she said hello and went",
          "it costs 20 dollars", "short", "nothing matches", "the red car is quick", "kids play with a ball",
          "water flows under a bridge"};
}
std::vector<std::string> sys_b() {
  return {"the cat sat on the mat .", "a dog runs in the park", "two men stand on a shore", "she said hello",
          "it costs twenty dollars", "short .", "an unrelated sentence", "the red car is fast",
          "children play with the ball", "the water flows under the bridge"};
}

TEST(Significance, SentenceStatisticsAddUpToTheCorpusScore) {
  auto st = thor::sentence_stats(sys_a(), refs());
  thor::BleuStats sum;
  for (auto& s : st) sum += s;
  EXPECT_DOUBLE_EQ(thor::bleu_from_stats(sum).score, thor::corpus_bleu(sys_a(), refs()).score);
  auto v = sum.to_vector();
  EXPECT_EQ(thor::BleuStats::from_vector(v).to_vector(), v);
}

TEST(Significance, PairedBootstrapEqualsANaiveResampling) {
  const int n = 200;
  auto idx = thor::bootstrap_indices(refs().size(), n, 12345);
  ASSERT_EQ(idx.size(), static_cast<size_t>(n));
  std::vector<std::vector<std::string>> systems = {sys_a(), sys_b()};
  std::vector<std::vector<thor::BleuStats>> stats;
  for (auto& s : systems) stats.push_back(thor::sentence_stats(s, refs()));
  auto res = thor::paired_bootstrap(stats, idx);
  ASSERT_EQ(res.size(), 2u);
  // naive: materialise every sample and score it from scratch
  std::vector<std::vector<double>> scores(2);
  for (size_t s = 0; s < 2; ++s)
    for (auto& sample : idx) {
      std::vector<std::string> h, r;
      for (auto i : sample) h.push_back(systems[s][i]), r.push_back(refs()[i]);
      scores[s].push_back(thor::corpus_bleu(h, r).score);
    }
  for (size_t s = 0; s < 2; ++s) {
    EXPECT_DOUBLE_EQ(res[s].score, thor::corpus_bleu(systems[s], refs()).score);
    double mean = 0;
    for (double x : scores[s]) mean += x;
    EXPECT_NEAR(res[s].mean, mean / n, 1e-9);
    auto sorted = scores[s];
    std::sort(sorted.begin(), sorted.end());
    EXPECT_NEAR(res[s].ci, 0.5 * (sorted[n - n / 40 - 1] - sorted[n / 40]), 1e-9);  // 5th and 194th of 200
  }
  double observed = std::abs(res[1].score - res[0].score), dmean = 0;
  std::vector<double> d;
  for (int k = 0; k < n; ++k) d.push_back(std::abs(scores[1][k] - scores[0][k])), dmean += d.back();
  dmean /= n;
  int c = 0;
  for (double x : d) c += x - dmean > observed;
  EXPECT_DOUBLE_EQ(res[1].p_value, (c + 1.0) / (n + 1.0));
  EXPECT_EQ(res[0].p_value, -1);
  // b is much better than a on these sentences: a small p-value
  EXPECT_GT(res[1].score, res[0].score + 10);
  EXPECT_LT(res[1].p_value, 0.05);
}

// sacreBLEU's convention (strict '>', from multeval): a zero difference is not put down to
// chance, so a system scored against itself gets the smallest p-value, 1 / (n + 1), not 1.
// The p-value is read together with the difference it tests.
TEST(Significance, ASystemAgainstItselfGetsTheSmallestPValueAsInSacreBleu) {
  const std::vector<std::string> hyp = {"a b c d", "e f g", "a c", "b d e f g"};
  const std::vector<std::string> ref = {"a b c e", "e f g", "a d", "b d e f"};
  const auto st = thor::sentence_stats(hyp, ref);
  const int n = 100;
  const auto res = thor::paired_bootstrap({st, st}, thor::bootstrap_indices(hyp.size(), n, 7));
  EXPECT_DOUBLE_EQ(res[1].score, res[0].score);
  EXPECT_DOUBLE_EQ(res[1].p_value, 1.0 / (n + 1));
}

TEST(Significance, SameSeedSameSamplesAndBadInputRefused) {
  EXPECT_EQ(thor::bootstrap_indices(7, 3, 1), thor::bootstrap_indices(7, 3, 1));
  EXPECT_NE(thor::bootstrap_indices(7, 3, 1), thor::bootstrap_indices(7, 3, 2));
  for (auto& row : thor::bootstrap_indices(7, 50, 3))
    for (auto i : row) EXPECT_LT(i, 7u);
  EXPECT_THROW(thor::bootstrap_indices(0, 10, 1), thor::Error);
  EXPECT_THROW(thor::sentence_stats({"a"}, {"a", "b"}), thor::Error);
}

}  // namespace
