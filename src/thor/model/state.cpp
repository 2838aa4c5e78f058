// See state.h.
#include "thor/model/state.h"

#include <algorithm>
#include <cstring>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

namespace thor {

namespace {

// buf [rows, capacity, tail...] with room for position t and at least `rows` rows: allocated
// at the first use (capacity: the hint, at least t + 1 and 16), capacity doubled when full,
// rows widened when asked; positions [0, t) of the existing rows are kept.
void make_room(torch::Tensor& buf, int64_t rows, int64_t t, int64_t capacity_hint, std::vector<int64_t> tail,
               const torch::TensorOptions& options) {
  const bool more_rows = buf.defined() && buf.size(0) < rows;
  if (buf.defined() && buf.size(1) > t && !more_rows) return;
  const int64_t cap = !buf.defined()      ? std::max({capacity_hint, t + 1, int64_t{16}})
                      : buf.size(1) <= t ? std::max(t + 1, 2 * buf.size(1))
                                         : buf.size(1);
  std::vector<int64_t> shape = {buf.defined() ? std::max(buf.size(0), rows) : rows, cap};
  shape.insert(shape.end(), tail.begin(), tail.end());
  auto grown = torch::empty(shape, options);
  if (buf.defined() && t > 0) grown.narrow(0, 0, buf.size(0)).narrow(1, 0, t).copy_(buf.narrow(1, 0, t));
  buf = grown;
}

// The cache buffer of `name` with x written at position st.filled of rows [0, x's rows).
// Reordered caches keep exactly the step's rows; a paged cache also widens (step 0 runs one
// row per sentence, later steps a beam) and keeps the rows of finished sentences.
torch::Tensor& cache_buffer(DecoderState& st, const std::string& name, const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(2) == 1, "cache_append: expected [rows, heads, 1, head_dim]");
  auto& c = st.caches[name];  // [rows, capacity, heads, head_dim]: a row's history is one block
  make_room(c, st.paged || !c.defined() ? x.size(0) : c.size(0), st.filled, st.capacity, {x.size(1), x.size(3)},
            x.options());
  const bool rows_ok = st.paged ? c.size(0) >= x.size(0) : c.size(0) == x.size(0);
  TORCH_CHECK(rows_ok, "cache_append: ", name, " has ", c.size(0), " rows, the step ", x.size(0));
  c.narrow(0, 0, x.size(0)).narrow(1, st.filled, 1).copy_(x.transpose(1, 2));
  return c;
}

}  // namespace

torch::Tensor cache_append(DecoderState& st, const std::string& name, const torch::Tensor& x) {
  TORCH_CHECK(!st.paged, "cache_append: a paged state is read through its history (cache_write)");
  auto& c = cache_buffer(st, name, x);
  return c.narrow(1, 0, st.filled + 1).transpose(1, 2);  // [rows, heads, t + 1, head_dim], strided
}

torch::Tensor cache_write(DecoderState& st, const std::string& name, const torch::Tensor& x) {
  TORCH_CHECK(st.paged, "cache_write: only for a paged state");
  return cache_buffer(st, name, x);
}

const torch::Tensor& history_step(DecoderState& st, int64_t rows) {
  TORCH_CHECK(st.paged, "history_step: only for a paged state");
  auto& h = st.rows[kHistory];
  make_room(h, rows, st.filled, st.capacity, {}, torch::kLong);
  TORCH_CHECK(h.size(0) == rows, "history_step: ", h.size(0), " rows in the history, the step has ", rows);
  h.select(1, st.filled).copy_(torch::arange(rows, torch::kLong));
  return h;
}

namespace {

// out[i] = c[index[i]] over the filled time positions only (the rest stays unset).
torch::Tensor select_filled(const torch::Tensor& c, const torch::Tensor& index, int64_t filled) {
  if (!c.device().is_cpu() || !c.is_contiguous()) return c.index_select(0, index.to(c.device()));
  const int64_t n = index.numel();
  auto sizes = c.sizes().vec();
  sizes[0] = n;
  auto out = torch::empty(sizes, c.options());
  const int64_t block = c.stride(0) * static_cast<int64_t>(c.element_size());  // one row
  const int64_t bytes = filled * c.stride(1) * static_cast<int64_t>(c.element_size());
  const char* src = static_cast<const char*>(c.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  const int64_t* ix = index.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) TORCH_CHECK(ix[i] >= 0 && ix[i] < c.size(0), "reorder_state: row out of range");
  at::parallel_for(0, n, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(dst + i * block, src + ix[i] * block, static_cast<size_t>(bytes));
  });
  return out;
}

bool is_identity(const torch::Tensor& idx, int64_t n) {
  return idx.numel() == n && torch::equal(idx, torch::arange(n, idx.options()));
}

}  // namespace

int64_t state_rows(const DecoderState& st) {
  if (st.sentences.empty()) return 0;
  const int64_t n = st.sentences.begin()->second.size(0);
  return (n - st.joining) * st.beam + st.joining;
}

torch::Tensor sentence_rows(const DecoderState& st, const torch::Tensor& per_sentence) {
  if (st.beam == 1) return per_sentence;
  const int64_t stepped = per_sentence.size(0) - st.joining;
  auto beams = per_sentence.narrow(0, 0, stepped).repeat_interleave(st.beam, 0);
  return st.joining == 0 ? beams : torch::cat({beams, per_sentence.narrow(0, stepped, st.joining)}, 0);
}

void reorder_state(DecoderState& st, const torch::Tensor& index, int64_t beam) {
  RECORD_FUNCTION("thor::reorder_state", std::vector<c10::IValue>());
  TORCH_CHECK(beam >= 1 && index.numel() % beam == 0, "reorder_state: rows must come in blocks of beam");
  auto rows = index.to(torch::kCPU).contiguous();
  if (!st.sentences.empty()) {
    // the sentence of each kept block: beams first, then the joining sentences' one row each
    auto first = rows.view({-1, beam}).select(1, 0);
    const int64_t stepped = st.sentences.begin()->second.size(0) - st.joining, beams = stepped * st.beam;
    auto sent = st.joining == 0 ? first.div(st.beam, "floor")
                                : torch::where(first < beams, first.div(st.beam, "floor"), first - beams + stepped);
    if (!is_identity(sent, st.sentences.begin()->second.size(0)))
      for (auto& kv : st.sentences) kv.second = kv.second.index_select(0, sent.to(kv.second.device()));
  }
  // Greedy search keeps every row in place until a sentence finishes: no copy then.
  const int64_t n = !st.rows.empty() ? st.rows.begin()->second.size(0)
                    : !st.caches.empty() ? st.caches.begin()->second.size(0) : -1;
  if (n >= 0 && !is_identity(rows, n)) {
    // a paged state's history is a row entry: its caches stay where they are
    for (auto& kv : st.rows) kv.second = kv.second.index_select(0, rows.to(kv.second.device()));
    if (!st.paged)
      for (auto& kv : st.caches) kv.second = select_filled(kv.second, rows, st.filled);
  }
  st.beam = beam;
  st.joining = 0;
}

namespace {

// t padded at the end of every dimension but the first to `sizes` with `value`.
torch::Tensor pad_to(const torch::Tensor& t, const std::vector<int64_t>& sizes, double value) {
  if (t.sizes().vec() == sizes) return t;
  auto out = torch::full(sizes, value, t.options());
  auto view = out;
  for (int64_t d = 1; d < t.dim(); ++d) view = view.narrow(d, 0, t.size(d));
  view.copy_(t);
  return out;
}

}  // namespace

void admit_state(DecoderState& st, DecoderState add) {
  RECORD_FUNCTION("thor::admit_state", std::vector<c10::IValue>());
  TORCH_CHECK(!st.vocab.defined() && !add.vocab.defined() && st.batch.empty() && add.batch.empty(),
              "admit_state: a batch with a restricted output vocabulary (a shortlist) cannot take new sentences");
  TORCH_CHECK(st.paged == add.paged, "admit_state: a paged and an unpaged state");
  TORCH_CHECK(add.rows.empty() && add.caches.empty() && add.filled == 0, "admit_state: new sentences must be fresh");
  TORCH_CHECK(!st.sentences.empty() && st.sentences.size() == add.sentences.size(),
              "admit_state: the states hold different sentence entries");
  const int64_t old_rows = state_rows(st);
  const int64_t new_rows = add.sentences.begin()->second.size(0);  // one each until the next reorder
  for (auto& [name, t] : st.sentences) {
    auto it = add.sentences.find(name);
    TORCH_CHECK(it != add.sentences.end() && it->second.dim() == t.dim(), "admit_state: sentence entry ", name,
                " differs");
    const auto& u = it->second;
    auto sizes = t.sizes().vec();
    for (int64_t d = 1; d < t.dim(); ++d) sizes[d] = std::max(t.size(d), u.size(d));
    const double fill = t.scalar_type() == torch::kBool ? 1.0 : 0.0;
    auto sizes_u = sizes;
    sizes_u[0] = u.size(0);
    t = torch::cat({pad_to(t, sizes, fill), pad_to(u.to(t.device()), sizes_u, fill)}, 0);
  }
  for (auto& [name, r] : st.rows) {
    if (name == kStart) continue;
    TORCH_CHECK(name == kHistory, "admit_state: cannot extend row entry ", name);
    // a row's history before its start is never read
    auto sizes = r.sizes().vec();
    sizes[0] = new_rows;
    r = torch::cat({r, torch::zeros(sizes, r.options())}, 0);
  }
  auto& start = st.rows[kStart];
  if (!start.defined()) start = torch::zeros({old_rows}, torch::kLong);
  start = torch::cat({start, torch::full({new_rows}, st.filled, torch::kLong)}, 0);
  if (!st.paged)  // row-aligned caches: the new rows' positions before their start stay masked
    for (auto& [name, c] : st.caches) {
      auto sizes = c.sizes().vec();
      sizes[0] = new_rows;
      c = torch::cat({c, torch::zeros(sizes, c.options())}, 0);
    }
  if (st.beam > 1) st.joining += new_rows;
}

void shift_state(DecoderState& st, int64_t m) {
  if (m <= 0) return;
  auto it = st.rows.find(kStart);
  TORCH_CHECK(it != st.rows.end() && m <= st.filled && it->second.min().item<int64_t>() >= m,
              "shift_state: a row starts before position ", m);
  it->second = it->second - m;
  const int64_t keep = st.filled - m;
  auto shift = [&](torch::Tensor& buf) {  // [rows, capacity, ...]: positions [m, filled) -> [0, keep)
    if (buf.defined() && keep > 0) buf.narrow(1, 0, keep).copy_(buf.narrow(1, m, keep).clone());
  };
  for (auto& kv : st.caches) shift(kv.second);
  if (st.paged)
    if (auto h = st.rows.find(kHistory); h != st.rows.end()) shift(h->second);
  st.filled = keep;
}

}  // namespace thor
