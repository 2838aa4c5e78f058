// See search.h.
#include "thor/decode/search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "thor/common/error.h"

namespace thor {

std::vector<std::vector<Hypothesis>> beam_search(StepModel& model, const torch::Tensor& src,
                                                 const SearchOptions& opt) {
  torch::NoGradGuard no_grad;
  if (opt.beam < 1) throw Error("--beam must be >= 1");
  if (opt.nbest < 1 || opt.nbest > opt.beam) throw Error("--nbest must be between 1 and --beam");
  const int64_t B = src.size(0), K = opt.beam;
  const float ninf = -std::numeric_limits<float>::infinity();
  auto device = src.device();

  std::vector<int64_t> max_len(B);
  {
    auto lens = src.ne(opt.pad).sum(1).to(torch::kCPU);
    for (int64_t b = 0; b < B; ++b)
      max_len[b] = std::min(opt.max_len_limit,
                            std::max<int64_t>(1, static_cast<int64_t>(opt.max_len_a * lens[b].item<int64_t>()) + opt.max_len_b));
  }

  // Encode once. Step 0 runs one row per sentence (all its beams would be identical), and
  // the first reorder widens each sentence to K rows: row = sentence * width + beam.
  DecoderState state = model.start(src);
  // Columns of the step's output: token ids of a shortlist, or the vocabulary itself.
  std::vector<int64_t> vocab;
  if (state.vocab.defined()) {
    auto v = state.vocab.to(torch::kCPU).contiguous();
    vocab.assign(v.data_ptr<int64_t>(), v.data_ptr<int64_t>() + v.numel());
  }
  auto col_of = [&](int64_t id) -> int64_t {
    if (vocab.empty()) return id;
    auto it = std::lower_bound(vocab.begin(), vocab.end(), id);
    return it != vocab.end() && *it == id ? it - vocab.begin() : -1;
  };
  const int64_t pad_col = col_of(opt.pad), bos_col = col_of(opt.bos), eos_col = col_of(opt.eos);
  if (eos_col < 0) throw Error("beam search: the output vocabulary lacks end-of-sentence");
  // Caches for steps 0..max_len, but no more than 32 positions up front: most outputs end
  // far below the limit, and a longer one grows its caches by doubling.
  if (B > 0) state.capacity = std::min<int64_t>(*std::max_element(max_len.begin(), max_len.end()) + 1, 32);
  int64_t width = 1;

  std::vector<int64_t> active(B);  // sentence id of each active slot
  for (int64_t b = 0; b < B; ++b) active[b] = b;
  std::vector<std::vector<Hypothesis>> finished(B);
  // Per row: tokens so far (without bos), cumulative score, positional scores.
  std::vector<std::vector<int64_t>> tokens(B);
  std::vector<std::vector<float>> pos_scores(B);
  std::vector<float> scores(B, 0.f);
  std::vector<int64_t> last(B, opt.bos);

  for (int64_t t = 0; !active.empty(); ++t) {
    const auto A = static_cast<int64_t>(active.size());
    auto last_t = torch::tensor(last, torch::kLong).to(device);
    auto lprobs = model.step(last_t, t, state).to(torch::kFloat);  // [A*width, V]
    const int64_t V = lprobs.size(1);
    if (pad_col >= 0) lprobs.select(1, pad_col).fill_(ninf);
    if (bos_col >= 0 && opt.bos != opt.eos) lprobs.select(1, bos_col).fill_(ninf);
    // Sentences at their length limit may only end.
    for (int64_t a = 0; a < A; ++a) {
      if (t >= max_len[active[a]]) {
        auto rows = lprobs.narrow(0, a * width, width);
        auto eos_lp = rows.select(1, eos_col).clone();
        rows.fill_(ninf);
        rows.select(1, eos_col).copy_(eos_lp);
      }
    }
    auto cum = lprobs + torch::tensor(scores).to(device).unsqueeze(1);  // [A*width, V]
    int64_t ncand = std::min<int64_t>(2 * K, width * V);
    auto top = cum.view({A, width * V}).topk(ncand, 1);
    auto top_scores = std::get<0>(top).to(torch::kCPU).contiguous();
    auto top_idx = std::get<1>(top).to(torch::kCPU).contiguous();
    auto lp_cpu = lprobs.to(torch::kCPU);
    auto lp = lp_cpu.accessor<float, 2>();
    auto ts = top_scores.accessor<float, 2>();
    auto ti = top_idx.accessor<int64_t, 2>();

    std::vector<int64_t> next_active, keep_rows, next_last;
    std::vector<std::vector<int64_t>> next_tokens;
    std::vector<std::vector<float>> next_pos;
    std::vector<float> next_scores;
    for (int64_t a = 0; a < A; ++a) {
      int64_t sent = active[a];
      auto& fin = finished[sent];
      std::vector<int64_t> chosen;  // candidate ranks that continue
      for (int64_t c = 0; c < ncand; ++c) {
        float s = ts[a][c];
        if (!std::isfinite(s)) continue;
        int64_t beam = ti[a][c] / V, col = ti[a][c] % V;
        int64_t row = a * width + beam;
        if (col == eos_col) {
          if (c < K && static_cast<int64_t>(fin.size()) < K) {
            Hypothesis h;
            h.tokens = tokens[row];
            h.tokens.push_back(opt.eos);
            h.positional_scores = pos_scores[row];
            h.positional_scores.push_back(lp[row][col]);
            h.score = s / std::pow(static_cast<double>(t + 1), opt.lenpen);
            fin.push_back(std::move(h));
          }
        } else if (static_cast<int64_t>(chosen.size()) < K) {
          chosen.push_back(c);
        }
      }
      if (static_cast<int64_t>(fin.size()) >= K || chosen.empty()) continue;  // sentence done
      next_active.push_back(sent);
      for (int64_t k = 0; k < K; ++k) {
        // Fewer than K live candidates (tiny vocabularies): pad with dead rows.
        if (k >= static_cast<int64_t>(chosen.size())) {
          keep_rows.push_back(a * width);
          next_tokens.push_back(tokens[a * width]);
          next_pos.push_back(pos_scores[a * width]);
          next_scores.push_back(ninf);
          next_last.push_back(opt.pad);
          continue;
        }
        int64_t c = chosen[k];
        int64_t beam = ti[a][c] / V, col = ti[a][c] % V, tok = vocab.empty() ? col : vocab[col];
        int64_t row = a * width + beam;
        keep_rows.push_back(row);
        auto toks = tokens[row];
        toks.push_back(tok);
        next_tokens.push_back(std::move(toks));
        auto ps = pos_scores[row];
        ps.push_back(lp[row][col]);
        next_pos.push_back(std::move(ps));
        next_scores.push_back(ts[a][c]);
        next_last.push_back(tok);
      }
    }
    if (next_active.empty()) break;
    reorder_state(state, torch::tensor(keep_rows, torch::kLong), K);
    width = K;
    active = std::move(next_active);
    tokens = std::move(next_tokens);
    pos_scores = std::move(next_pos);
    scores = std::move(next_scores);
    last = std::move(next_last);
  }

  for (auto& fin : finished) {
    std::stable_sort(fin.begin(), fin.end(),
                     [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
    if (static_cast<int64_t>(fin.size()) > opt.nbest) fin.resize(opt.nbest);
  }
  return finished;
}

}  // namespace thor
