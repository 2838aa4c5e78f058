// Beam search against a scripted fake decoder whose next-token probabilities depend only
// on the prefix, so every hypothesis and score below is computed by hand.
#include <cmath>
#include <map>

#include <gtest/gtest.h>

#include "thor/common/error.h"
#include "thor/decode/candidates.h"
#include "thor/decode/search.h"

namespace {

constexpr int64_t kPad = 0, kBos = 2, kEos = 3, kA = 4, kB = 5, kV = 6;

// Table per sentence: prefix ("" / "a" / "ab" ...) -> {p(eos), p(a), p(b)}.
using Table = std::map<std::string, std::array<double, 3>>;

class ScriptedModel : public thor::StepModel {
 public:
  explicit ScriptedModel(std::vector<Table> tables) : tables_(std::move(tables)) {}
  thor::DecoderState start(const torch::Tensor& src) override {
    // The sentence id travels as a per-sentence entry and the history as a per-row one, so
    // beam reordering, widening after step 0 and dropping finished sentences are exercised.
    thor::DecoderState st;
    st.sentences["sent"] = src.select(1, 0).clone();
    st.rows["hist"] = torch::zeros({src.size(0), 0}, torch::kLong);
    return st;
  }
  torch::Tensor step(const torch::Tensor& last, int64_t t, thor::DecoderState& st) override {
    auto& hist = st.rows["hist"];
    if (t > 0) hist = torch::cat({hist, last.view({-1, 1})}, 1);
    auto N = last.size(0);
    EXPECT_EQ(N, st.sentences["sent"].size(0) * st.beam);
    auto sent = st.sentences["sent"].repeat_interleave(st.beam);
    auto out = torch::full({N, kV}, -std::numeric_limits<float>::infinity());
    for (int64_t r = 0; r < N; ++r) {
      std::string prefix;
      for (int64_t k = 0; k < hist.size(1); ++k) prefix += hist[r][k].item<int64_t>() == kA ? "a" : "b";
      const auto& table = tables_.at(sent[r].item<int64_t>() - 10);
      auto it = table.find(prefix);
      std::array<double, 3> p = it == table.end() ? std::array<double, 3>{1, 0, 0} : it->second;
      out[r][kEos] = std::log(p[0]);
      out[r][kA] = std::log(p[1]);
      out[r][kB] = std::log(p[2]);
    }
    return out;
  }

 private:
  std::vector<Table> tables_;
};

// Sentence 0 prefers a short output; sentence 1 a longer one (eos only wins at step 2).
const Table kShort = {{"", {0.1, 0.6, 0.3}}, {"a", {0.5, 0.1, 0.4}}, {"b", {0.9, 0.05, 0.05}}};
const Table kLong = {{"", {0.1, 0.5, 0.4}}, {"a", {0.2, 0.7, 0.1}}, {"b", {0.3, 0.6, 0.1}}};

torch::Tensor two_sources() {
  // Sentence ids 10 and 11 in the first column; sentence 1 is padded.
  return torch::tensor(std::vector<int64_t>{10, 7, 7, kEos, 11, 7, kEos, kPad}).view({2, 4});
}

thor::SearchOptions opts(int64_t beam, double lenpen = 1.0) {
  thor::SearchOptions o;
  o.beam = beam;
  o.nbest = beam;
  o.lenpen = lenpen;
  o.max_len_a = 0;
  o.max_len_b = 10;
  o.pad = kPad, o.bos = kBos, o.eos = kEos;
  return o;
}

TEST(BeamSearch, ExactHypothesesAndScoresBeam2) {
  ScriptedModel m({kShort, kLong});
  auto out = thor::beam_search(m, two_sources(), opts(2));
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out[0].size(), 2u);
  // Sentence 0, step 1: "a eos" = .6*.5 = .30 and "b eos" = .3*.9 = .27 both rank < beam.
  EXPECT_EQ(out[0][0].tokens, (std::vector<int64_t>{kA, kEos}));
  EXPECT_NEAR(out[0][0].score, std::log(0.30) / 2, 1e-6);
  EXPECT_EQ(out[0][1].tokens, (std::vector<int64_t>{kB, kEos}));
  EXPECT_NEAR(out[0][1].score, std::log(0.27) / 2, 1e-6);
  // Sentence 1: at step 1 "aa" (.35) and "ba" (.24) outrank both eos candidates (.12, .10),
  // so eos is taken only at step 2.
  ASSERT_EQ(out[1].size(), 2u);
  EXPECT_EQ(out[1][0].tokens, (std::vector<int64_t>{kA, kA, kEos}));
  EXPECT_NEAR(out[1][0].score, std::log(0.35) / 3, 1e-6);
  EXPECT_EQ(out[1][1].tokens, (std::vector<int64_t>{kB, kA, kEos}));
  EXPECT_NEAR(out[1][1].score, std::log(0.24) / 3, 1e-6);
  // Positional scores add up to the unnormalised score.
  double sum = 0;
  for (float p : out[1][1].positional_scores) sum += p;
  EXPECT_NEAR(sum, std::log(0.24), 1e-5);
}

TEST(BeamSearch, LengthPenaltyZeroRanksByTotalLogProb) {
  ScriptedModel m({kShort, kLong});
  auto out = thor::beam_search(m, two_sources(), opts(2, 0.0));
  EXPECT_NEAR(out[0][0].score, std::log(0.30), 1e-6);
  EXPECT_NEAR(out[1][0].score, std::log(0.35), 1e-6);
}

TEST(BeamSearch, BeamOneIsGreedy) {
  ScriptedModel m({kShort, kLong});
  auto o = opts(1);
  auto out = thor::beam_search(m, two_sources(), o);
  ASSERT_EQ(out[0].size(), 1u);
  EXPECT_EQ(out[0][0].tokens, (std::vector<int64_t>{kA, kEos}));  // a (.6), then eos (.5)
  EXPECT_NEAR(out[0][0].score, std::log(0.30) / 2, 1e-6);
  EXPECT_EQ(out[1][0].tokens, (std::vector<int64_t>{kA, kA, kEos}));  // a, a (.7), eos
  EXPECT_NEAR(out[1][0].score, std::log(0.35) / 3, 1e-6);
}

TEST(BeamSearch, MaxLengthForcesEos) {
  ScriptedModel m({kShort, kLong});
  auto o = opts(2);
  o.max_len_b = 1;  // one token, then eos
  auto out = thor::beam_search(m, two_sources(), o);
  // Sentence 1 at step 1 may only end: "b eos" = .4*.3 = .12 beats "a eos" = .5*.2 = .10.
  EXPECT_EQ(out[1][0].tokens, (std::vector<int64_t>{kB, kEos}));
  EXPECT_NEAR(out[1][0].score, std::log(0.12) / 2, 1e-6);
  EXPECT_EQ(out[1][1].tokens, (std::vector<int64_t>{kA, kEos}));
  EXPECT_NEAR(out[1][1].score, std::log(0.10) / 2, 1e-6);
}

TEST(BeamSearch, NbestMustFitBeam) {
  ScriptedModel m({kShort, kLong});
  auto o = opts(2);
  o.nbest = 3;
  EXPECT_THROW(thor::beam_search(m, two_sources(), o), thor::Error);
}

}  // namespace

namespace {

// The one-pass candidate selection against the tensor definition it replaces:
// (lp + score) over each sentence's rows x V, topk. Scores equal exactly (the same float
// sums); indices equal wherever the score is not tied, and ties go to the lower index.
TEST(Candidates, EqualTopkOfTheSummedScores) {
  torch::manual_seed(31);
  for (int64_t V : {5, 16, 37, 1000}) {
    for (int64_t w : {1, 3}) {
      const int64_t n = 4, rows = n * w + 2, first = 1, k = std::min<int64_t>(7, w * V);
      auto lp = torch::log_softmax(torch::randn({rows, V}) * 3, 1);
      lp.index_put_({1, torch::indexing::Slice(0, V / 2)}, -std::numeric_limits<float>::infinity());
      lp[2].fill_(-std::numeric_limits<float>::infinity());  // a dead row
      if (V > 8) lp[3].narrow(0, 0, 8).fill_(-0.5f);           // ties
      auto scores = torch::randn({rows}) * 2;
      scores[3] = 0.0f;
      std::vector<float> sc(scores.data_ptr<float>(), scores.data_ptr<float>() + rows);
      auto s = torch::empty({n, k}), idx = torch::empty({n, k}, torch::kLong);
      thor::top_candidates(lp.data_ptr<float>(), V, sc.data(), first, n, w, k, s.data_ptr<float>(),
                           idx.data_ptr<int64_t>());
      auto cum = (lp + scores.unsqueeze(1)).narrow(0, first, n * w).reshape({n, w * V});
      auto [ts, ti] = cum.topk(k, 1);
      EXPECT_TRUE(torch::equal(s, ts)) << "V " << V << " w " << w;
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t c = 0; c < k; ++c) {
          const float v = s[i][c].item<float>();
          const int64_t j = idx[i][c].item<int64_t>();
          EXPECT_EQ(cum[i][j].item<float>(), v);  // the index points at its score
          const bool tied = cum[i].eq(v).sum().item<int64_t>() > 1;
          if (!tied) {
            EXPECT_EQ(j, ti[i][c].item<int64_t>());
          }
          if (c > 0 && s[i][c - 1].item<float>() == v) {
            EXPECT_LT(idx[i][c - 1].item<int64_t>(), j);
          }
        }
      }
    }
  }
}

}  // namespace
