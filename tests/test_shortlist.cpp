// Vocabulary shortlist: built from co-occurrence as defined (Dice, frequency), saved and
// loaded exactly, bad files named by line, and decoding over a shortlist equal to decoding
// over the whole vocabulary with every other token masked out.
#include <algorithm>
#include <limits>
#include <set>

#include <gtest/gtest.h>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/data/dataset.h"
#include "thor/decode/shortlist.h"
#include "thor/decode/translator.h"

namespace {

// Source 10/11/12 translate as target 20/21/22; source 5 and target 6 are in every pair.
thor::Dataset corpus() {
  thor::Dataset ds;
  for (int i = 0; i < 99; ++i) ds.add({10 + i % 3, 5}, {20 + i % 3, 6, 20 + i % 3}, i + 1);
  return ds;
}

TEST(Shortlist, BuildRanksByDiceAndKeepsFrequent) {
  auto sl = thor::Shortlist::build(corpus(), 30, 2, 1);
  ASSERT_EQ(sl.candidates.size(), 30u);
  // Dice(10, 20) = 2*33/(33+33) = 1; Dice(10, 6) = 2*33/(33+99) = 0.5; 21 and 22 never co-occur.
  EXPECT_EQ(sl.candidates[10], (std::vector<int32_t>{20, 6}));
  EXPECT_EQ(sl.candidates[12], (std::vector<int32_t>{22, 6}));
  // Dice(5, 6) = 1; Dice(5, 20..22) = 2*33/(99+33) = 0.5 each: ties by id.
  EXPECT_EQ(sl.candidates[5], (std::vector<int32_t>{6, 20}));
  EXPECT_TRUE(sl.candidates[7].empty());
  EXPECT_EQ(sl.frequent, std::vector<int32_t>{6});
  EXPECT_THROW(thor::Shortlist::build(corpus(), 15, 2, 1), thor::Error);  // ids beyond the vocabulary
}

TEST(Shortlist, SaveLoadRoundTripAndSelect) {
  auto dir = thor::testing::temp_dir("shortlist");
  auto sl = thor::Shortlist::build(corpus(), 30, 2, 1);
  sl.save((dir / "sl.txt").string());
  auto back = thor::Shortlist::load((dir / "sl.txt").string());
  EXPECT_EQ(back.vocab_size, 30);
  EXPECT_EQ(back.frequent, sl.frequent);
  EXPECT_EQ(back.candidates, sl.candidates);
  auto ids = back.select(torch::tensor({{10, 5, 0}, {11, 0, 0}}, torch::kLong), {3, 1});
  std::vector<int64_t> got(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
  EXPECT_EQ(got, (std::vector<int64_t>{1, 3, 6, 20, 21}));
}

TEST(Shortlist, BadFileNamesTheLine) {
  auto dir = thor::testing::temp_dir("shortlist_bad");
  auto expect_error = [&](const std::vector<std::string>& lines, const std::string& where) {
    thor::testing::write_file(dir / "bad.txt", lines);
    try {
      thor::Shortlist::load((dir / "bad.txt").string());
      ADD_FAILURE() << "no error for " << where;
    } catch (const thor::Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.txt" + where), std::string::npos) << e.what();
    }
  };
  expect_error({"something else"}, ":1:");
  expect_error({"thor-shortlist 1 30", "frequent 6", "10 20 31"}, ":3:");
  expect_error({"thor-shortlist 1 30", "frequent 6", "x 20"}, ":3:");
  expect_error({"thor-shortlist 1 30", "10 20"}, ": no 'frequent' line");
}

// The reference: the whole vocabulary, every token outside `keep` masked before log-softmax.
class MaskedStepModel : public thor::StepModel {
 public:
  MaskedStepModel(thor::Transformer m, torch::Tensor keep) : m_(std::move(m)), keep_(std::move(keep)) {}
  thor::DecoderState start(const torch::Tensor& src) override { return m_->init_state(src); }
  torch::Tensor step(const torch::Tensor& last, int64_t t, thor::DecoderState& st) override {
    auto logits = m_->step(last, t, st);
    auto masked = torch::full_like(logits, -std::numeric_limits<float>::infinity());
    masked.index_copy_(1, keep_, logits.index_select(1, keep_));
    return torch::log_softmax(masked, -1);
  }

 private:
  thor::Transformer m_;
  torch::Tensor keep_;
};

TEST(Shortlist, DecodingEqualsMaskedFullVocabulary) {
  torch::manual_seed(8);
  auto cfg = thor::testing::small_model_config(32, 4, 0.0);
  thor::Transformer m(cfg);
  m->eval();
  // every source token may produce 3 targets; 12 frequent ones; eos and unk always
  thor::Shortlist sl;
  sl.vocab_size = cfg.vocab_size;
  sl.candidates.resize(cfg.vocab_size);
  for (int32_t s = 0; s < cfg.vocab_size; ++s)
    for (int32_t k = 0; k < 3; ++k) sl.candidates[s].push_back((s * 7 + k * 11) % cfg.vocab_size);
  for (int32_t t = 4; t < 16; ++t) sl.frequent.push_back(t);
  auto src = torch::randint(4, cfg.vocab_size, {3, 6}, torch::kLong);
  src[2][5] = cfg.pad_id;
  auto keep = sl.select(src, {cfg.eos_id, cfg.unk_id});
  ASSERT_LT(keep.numel(), cfg.vocab_size);

  thor::SearchOptions o;
  o.beam = 3, o.nbest = 2, o.max_len_a = 1.0, o.max_len_b = 2;
  o.pad = cfg.pad_id, o.bos = cfg.bos_id, o.eos = cfg.eos_id;
  thor::TransformerStepModel with_list(m, &sl);
  MaskedStepModel masked(m, keep);
  auto a = thor::beam_search(with_list, src, o), b = thor::beam_search(masked, src, o);
  std::set<int64_t> allowed(keep.data_ptr<int64_t>(), keep.data_ptr<int64_t>() + keep.numel());
  for (size_t s = 0; s < a.size(); ++s) {
    ASSERT_EQ(a[s].size(), b[s].size());
    for (size_t h = 0; h < a[s].size(); ++h) {
      EXPECT_EQ(a[s][h].tokens, b[s][h].tokens) << "sentence " << s << " hypothesis " << h;
      EXPECT_NEAR(a[s][h].score, b[s][h].score, 1e-4);
      for (auto t : a[s][h].tokens) EXPECT_TRUE(allowed.count(t)) << "token " << t << " not in the shortlist";
    }
  }
}

}  // namespace
