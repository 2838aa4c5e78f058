// Decoder time caches (written in place, reordered over their filled part) against the
// plain construction: concatenate each step's slice, index_select the rows on reorder.
#include <random>

#include <gtest/gtest.h>

#include "thor/model/state.h"

namespace {

void run(int64_t capacity) {
  torch::manual_seed(3);
  const int64_t H = 3, Dh = 5;
  int64_t rows = 4;
  thor::DecoderState st;
  st.capacity = capacity;
  st.rows["tag"] = torch::arange(rows);  // a plain row entry reorders alongside
  torch::Tensor ref;                     // [rows, H, t, Dh]
  for (int64_t t = 0; t < 11; ++t) {
    auto x = torch::randn({rows, H, 1, Dh});
    ref = ref.defined() ? torch::cat({ref, x}, 2) : x;
    auto view = thor::cache_append(st, "k", x);
    st.filled = t + 1;
    ASSERT_EQ(view.sizes(), ref.sizes());
    EXPECT_TRUE(torch::equal(view, ref)) << "step " << t;
    // reorder: beam 2 over rows/2 sentences; at t == 4 the first sentence finishes
    const int64_t beam = 2, sentences = t == 4 ? rows / beam - 1 : rows / beam;
    std::vector<int64_t> idx;
    for (int64_t s = 0; s < sentences; ++s) {
      const int64_t from = t == 4 ? s + 1 : s;  // old sentence this one comes from
      for (int64_t k = 0; k < beam; ++k) idx.push_back(from * beam + (t + k) % beam);
    }
    auto index = torch::tensor(idx, torch::kLong);
    auto tag = st.rows["tag"].index_select(0, index);
    thor::reorder_state(st, index, beam);
    ref = ref.index_select(0, index);
    rows = index.numel();
    EXPECT_TRUE(torch::equal(st.rows["tag"], tag));
    EXPECT_EQ(st.caches["k"].size(0), rows);
  }
  EXPECT_TRUE(torch::equal(st.caches["k"].narrow(1, 0, st.filled).transpose(1, 2), ref));
}

TEST(DecoderState, CacheSizedOnceMatchesConcatenation) { run(12); }
TEST(DecoderState, CacheGrowsPastTooSmallCapacity) { run(2); }
TEST(DecoderState, CacheWithoutCapacityHint) { run(0); }

TEST(DecoderState, AppendRejectsWrongRowCount) {
  thor::DecoderState st;
  thor::cache_append(st, "k", torch::zeros({4, 2, 1, 3}));
  st.filled = 1;
  EXPECT_THROW(thor::cache_append(st, "k", torch::zeros({3, 2, 1, 3})), c10::Error);
}

}  // namespace

namespace {

// The in-place reorder against index_select under random beam choices: duplicated parents,
// rows overwritten after being read, cycles, and sentences dropped.
TEST(DecoderState, InPlaceReorderMatchesIndexSelectForRandomBeams) {
  torch::manual_seed(4);
  std::mt19937 rng(4);
  const int64_t H = 2, Dh = 3, beam = 3;
  int64_t sentences = 4;
  thor::DecoderState st;
  st.capacity = 8;
  torch::Tensor ref;
  for (int64_t t = 0; t < 12; ++t) {
    auto x = torch::randn({sentences * beam, H, 1, Dh});
    ref = ref.defined() ? torch::cat({ref, x}, 2) : x;
    thor::cache_append(st, "v", x);
    st.filled = t + 1;
    const int64_t keep = (t == 5 || t == 9) ? sentences - 1 : sentences;  // drop the last sentence twice
    std::vector<int64_t> idx;
    for (int64_t s = 0; s < keep; ++s)
      for (int64_t k = 0; k < beam; ++k) idx.push_back(s * beam + static_cast<int64_t>(rng() % beam));
    auto index = torch::tensor(idx, torch::kLong);
    thor::reorder_state(st, index, beam);
    ref = ref.index_select(0, index);
    sentences = keep;
    EXPECT_TRUE(torch::equal(st.caches["v"].narrow(1, 0, st.filled).transpose(1, 2), ref)) << "step " << t;
  }
}

}  // namespace

// Continuous batching: new sentences join a running state. Sentence entries of different
// sizes are padded (a bool mask with true, anything else with zeros), each new sentence
// gets one row starting at the state's position (joining until the next reorder), and
// shifting forgets positions.
TEST(DecoderState, AdmitPadsSentenceEntriesAndStartsRowsAtThePosition) {
  thor::DecoderState st;
  st.beam = 2;
  st.paged = true;
  st.sentences["mask"] = torch::tensor({false, false, true}).view({1, 3});
  st.sentences["enc"] = torch::ones({1, 3, 2});
  st.rows[thor::kHistory] = torch::arange(8, torch::kLong).view({2, 4});
  st.filled = 3;
  thor::DecoderState add;
  add.paged = true;
  add.sentences["mask"] = torch::zeros({2, 5}, torch::kBool);
  add.sentences["enc"] = torch::full({2, 5, 2}, 2.0);
  thor::admit_state(st, add);
  EXPECT_EQ(st.joining, 2);
  EXPECT_EQ(thor::state_rows(st), 4);
  auto mask = st.sentences.at("mask");
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_TRUE(torch::equal(mask[0], torch::tensor({false, false, true, true, true})));
  EXPECT_FALSE(mask.narrow(0, 1, 2).any().item<bool>());
  auto enc = st.sentences.at("enc");
  ASSERT_EQ(enc.sizes(), (std::vector<int64_t>{3, 5, 2}));
  EXPECT_EQ(enc[0].sum().item<float>(), 6.0f);  // 3 x 2 ones, then zeros
  EXPECT_EQ(enc.narrow(0, 1, 2).sum().item<float>(), 40.0f);
  EXPECT_TRUE(torch::equal(st.rows.at(thor::kStart), torch::tensor(std::vector<int64_t>{0, 0, 3, 3})));
  ASSERT_EQ(st.rows.at(thor::kHistory).size(0), 4);
  EXPECT_TRUE(torch::equal(st.rows.at(thor::kHistory).narrow(0, 0, 2), torch::arange(8, torch::kLong).view({2, 4})));

  // a shortlisted state cannot take sentences
  thor::DecoderState listed = st;
  listed.vocab = torch::arange(4, torch::kLong);
  EXPECT_THROW(thor::admit_state(listed, add), c10::Error);

  // no row starts before 0: nothing to forget before 1
  EXPECT_THROW(thor::shift_state(st, 1), c10::Error);
}

// Sentences joining a state with beam 2: two sentences with two rows each, then three
// joining with one row each. Sentence entries spread onto the rows accordingly, and a
// reorder maps each kept block to the sentence of its first row: a beam row to its
// sentence, a joining row to its own.
TEST(DecoderState, JoiningSentencesHaveOneRowUntilTheReorder) {
  thor::DecoderState st;
  st.beam = 2;
  st.sentences["id"] = torch::tensor(std::vector<int64_t>{10, 11});
  st.filled = 2;
  thor::DecoderState add;
  add.sentences["id"] = torch::tensor(std::vector<int64_t>{12, 13, 14});
  st.rows[thor::kHistory] = torch::zeros({4, 3}, torch::kLong);
  st.paged = add.paged = true;
  thor::admit_state(st, add);
  ASSERT_EQ(thor::state_rows(st), 7);
  EXPECT_TRUE(torch::equal(thor::sentence_rows(st, st.sentences.at("id")),
                           torch::tensor(std::vector<int64_t>{10, 10, 11, 11, 12, 13, 14})));
  EXPECT_TRUE(torch::equal(st.rows.at(thor::kStart), torch::tensor(std::vector<int64_t>{0, 0, 0, 0, 2, 2, 2})));
  // keep sentence 11 (rows 3, 2), drop 10 and 13, widen 14 (row 6) and 12 (row 4), in that order
  thor::reorder_state(st, torch::tensor(std::vector<int64_t>{3, 2, 6, 6, 4, 4}), 2);
  EXPECT_EQ(st.joining, 0);
  EXPECT_TRUE(torch::equal(st.sentences.at("id"), torch::tensor(std::vector<int64_t>{11, 14, 12})));
  EXPECT_TRUE(torch::equal(st.rows.at(thor::kStart), torch::tensor(std::vector<int64_t>{0, 0, 2, 2, 2, 2})));
  EXPECT_TRUE(torch::equal(thor::sentence_rows(st, st.sentences.at("id")),
                           torch::tensor(std::vector<int64_t>{11, 11, 14, 14, 12, 12})));
}

TEST(DecoderState, ShiftMovesCachesAndHistoryDown) {
  thor::DecoderState st;
  st.paged = true;
  st.filled = 5;
  st.rows[thor::kStart] = torch::tensor(std::vector<int64_t>{3, 4});
  st.rows[thor::kHistory] = torch::arange(16, torch::kLong).view({2, 8});
  st.caches["k"] = torch::arange(2 * 8 * 3, torch::kFloat).view({2, 8, 1, 3});
  auto before_cache = st.caches["k"].clone(), before_hist = st.rows[thor::kHistory].clone();
  thor::shift_state(st, 3);
  EXPECT_EQ(st.filled, 2);
  EXPECT_TRUE(torch::equal(st.rows.at(thor::kStart), torch::tensor(std::vector<int64_t>{0, 1})));
  EXPECT_TRUE(torch::equal(st.caches["k"].narrow(1, 0, 2), before_cache.narrow(1, 3, 2)));
  EXPECT_TRUE(torch::equal(st.rows[thor::kHistory].narrow(1, 0, 2), before_hist.narrow(1, 3, 2)));
  EXPECT_THROW(thor::shift_state(st, 1), c10::Error);  // row 0 starts at 0 now
}
