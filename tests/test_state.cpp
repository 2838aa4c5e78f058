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
