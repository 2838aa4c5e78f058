// See candidates.h.
#include "thor/decode/candidates.h"

#include <ATen/Parallel.h>

#include <vector>

#include "thor/ops/simd.h"

namespace thor {

namespace {

// The running k best of one sentence: scores descending, a new entry after every equal one
// (entries arrive in flat-index order, so ties keep the lower index first).
struct Best {
  float* s;
  int64_t* idx;
  int64_t k, size = 0;
  void insert(float x, int64_t i) {
    int64_t pos = size < k ? size : k - 1;
    if (size < k) ++size;
    while (pos > 0 && s[pos - 1] < x) {
      s[pos] = s[pos - 1], idx[pos] = idx[pos - 1];
      --pos;
    }
    s[pos] = x, idx[pos] = i;
  }
  bool full() const { return size == k; }
  float worst() const { return s[k - 1]; }
};

// One row into best: every entry beats the current worst only when greater (so an equal
// later one stays out); 16 lanes compared at a time, the rare block with a winner inserted
// one by one.
THOR_VECTOR_CLONES void scan_row(const float* row, int64_t V, float add, int64_t base, Best& best) {
  int64_t v = 0;
  for (; v < V && !best.full(); ++v) best.insert(row[v] + add, base + v);
  for (; v + simd::kLanes <= V; v += simd::kLanes) {
    const simd::f32x16 c = simd::load16(row + v) + add;
    const simd::i32x16 over = c > simd::splat16(best.worst());
    int32_t any = 0;
    for (int j = 0; j < simd::kLanes; ++j) any |= over[j];
    if (!any) continue;
    for (int j = 0; j < simd::kLanes; ++j)
      if (c[j] > best.worst()) best.insert(c[j], base + v + j);
  }
  for (; v < V; ++v) {
    const float c = row[v] + add;
    if (c > best.worst()) best.insert(c, base + v);
  }
}

}  // namespace

void top_candidates(const float* lp, int64_t V, const float* row_scores, int64_t first, int64_t n, int64_t w,
                    int64_t k, float* out_scores, int64_t* out_index) {
  at::parallel_for(0, n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      Best best{out_scores + i * k, out_index + i * k, k};
      for (int64_t r = 0; r < w; ++r) {
        const int64_t row = first + i * w + r;
        scan_row(lp + row * V, V, row_scores[row], r * V, best);
      }
    }
  });
}

}  // namespace thor
