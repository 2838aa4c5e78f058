// The beam search's candidate selection on the CPU in one pass: for each sentence, the k
// best scores lp[r][v] + score[r] over its rows r and the vocabulary v, without writing the
// [rows, V] sums or sorting them (at::topk copies and partially sorts every sentence's
// rows x V entries: ~6 % of a decoding step at beam 5 and 8,000 words).
#pragma once
#include <cstdint>

namespace thor {

// lp: [rows, V] row-major (row stride V); row_scores: [rows]. For sentence i of n, rows
// [first + i * w, first + (i + 1) * w): the k (<= w * V) largest lp + score (added in float,
// as the tensor sum), descending, ties to the lower flat index (row - group start) * V + v.
// out_scores / out_index: [n, k] row-major.
void top_candidates(const float* lp, int64_t V, const float* row_scores, int64_t first, int64_t n, int64_t w,
                    int64_t k, float* out_scores, int64_t* out_index);

}  // namespace thor
