// See search.h.
#include "thor/decode/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>

#include "thor/common/error.h"
#include "thor/decode/candidates.h"

namespace thor {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

void StepModel::admit(DecoderState&, const torch::Tensor&) {
  throw Error("this decoder cannot add sentences to a batch being decoded");
}

BeamStream::BeamStream(StepModel& model, const SearchOptions& opt) : model_(model), opt_(opt) {
  if (opt.beam < 1) throw Error("--beam must be >= 1");
  if (opt.nbest < 1 || opt.nbest > opt.beam) throw Error("--nbest must be between 1 and --beam");
}

void BeamStream::admit(const torch::Tensor& src, const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  const int64_t n = src.size(0);
  TORCH_CHECK(static_cast<int64_t>(ids.size()) == n, "BeamStream::admit: one id per sentence");
  std::vector<int64_t> max_len(static_cast<size_t>(n));
  {
    auto lens = src.ne(opt_.pad).sum(1).to(torch::kCPU);
    for (int64_t b = 0; b < n; ++b)
      max_len[b] = std::min(opt_.max_len_limit,
                            std::max<int64_t>(1, static_cast<int64_t>(opt_.max_len_a * lens[b].item<int64_t>()) + opt_.max_len_b));
  }
  if (sentences_.empty()) {
    // Encode once. Step 0 runs one row per sentence (all its beams would be identical), and
    // the first reorder widens each sentence to K rows: row = sentence * width + beam.
    state_ = model_.start(src);
    width_ = 1;
    vocab_.clear();
    // Columns of the step's output: token ids of a shortlist, or the vocabulary itself.
    if (state_.vocab.defined()) {
      auto v = state_.vocab.to(torch::kCPU).contiguous();
      vocab_.assign(v.data_ptr<int64_t>(), v.data_ptr<int64_t>() + v.numel());
    }
    auto col_of = [&](int64_t id) -> int64_t {
      if (vocab_.empty()) return id;
      auto it = std::lower_bound(vocab_.begin(), vocab_.end(), id);
      return it != vocab_.end() && *it == id ? it - vocab_.begin() : -1;
    };
    pad_col_ = col_of(opt_.pad), bos_col_ = col_of(opt_.bos), eos_col_ = col_of(opt_.eos);
    if (eos_col_ < 0) throw Error("beam search: the output vocabulary lacks end-of-sentence");
    // Caches for steps 0..max_len, but no more than 32 positions up front: most outputs end
    // far below the limit, and a longer one grows its caches by doubling.
    if (n > 0) state_.capacity = std::min<int64_t>(*std::max_element(max_len.begin(), max_len.end()) + 1, 32);
    tokens_.clear(), pos_scores_.clear(), scores_.clear(), last_.clear();
    position_ = 0;
  } else {
    // Joining a running batch: one row per sentence (its first step has one candidate, as
    // alone), after the others' beams, until the next reorder gives it its beam; the
    // state counts them (DecoderState::joining).
    model_.admit(state_, src);
  }
  for (int64_t b = 0; b < n; ++b) {
    sentences_.push_back({ids[b], max_len[b], position_, {}});
    tokens_.emplace_back();
    pos_scores_.emplace_back();
    scores_.push_back(0.f);
    last_.push_back(opt_.bos);
  }
}

std::vector<std::pair<int64_t, std::vector<Hypothesis>>> BeamStream::step() {
  torch::NoGradGuard no_grad;
  std::vector<std::pair<int64_t, std::vector<Hypothesis>>> done;
  if (sentences_.empty()) return done;
  const int64_t K = opt_.beam, width = width_;
  // Positions before every active sentence's start are read by no row: forget them once
  // they are half of what the state holds (amortised: each position moves at most once).
  if (state_.rows.count(kStart)) {
    int64_t first = position_;
    for (const auto& s : sentences_) first = std::min(first, s.start);
    if (first >= 16 && 2 * first >= position_) {
      shift_state(state_, first);
      for (auto& s : sentences_) s.start -= first;
      position_ -= first;
    }
  }
  const int64_t t = position_++;  // the batch's position of this step
  auto device = state_.sentences.empty() ? torch::Device(torch::kCPU) : state_.sentences.begin()->second.device();
  const auto A = static_cast<int64_t>(sentences_.size());
  // Rows: `width` per sentence, then one per joining sentence (the state's last `joining`).
  const int64_t joining = state_.joining, stepped = A - joining;
  auto row0 = [&](int64_t a) { return a < stepped ? a * width : stepped * width + (a - stepped); };
  auto width_of = [&](int64_t a) { return a < stepped ? width : int64_t{1}; };
  auto last_t = torch::tensor(last_, torch::kLong).to(device);
  auto lprobs = model_.step(last_t, t, state_).to(torch::kFloat);  // [rows, V]
  const int64_t V = lprobs.size(1);
  if (pad_col_ >= 0) lprobs.select(1, pad_col_).fill_(kNegInf);
  if (bos_col_ >= 0 && opt_.bos != opt_.eos) lprobs.select(1, bos_col_).fill_(kNegInf);
  // Sentences at their length limit may only end.
  for (int64_t a = 0; a < A; ++a) {
    if (t - sentences_[a].start >= sentences_[a].max_len) {
      auto rows = lprobs.narrow(0, row0(a), width_of(a));
      auto eos_lp = rows.select(1, eos_col_).clone();
      rows.fill_(kNegInf);
      rows.select(1, eos_col_).copy_(eos_lp);
    }
  }
  // The 2K best candidates of each sentence over its rows x V (flat index row * V + column)
  // by cumulative score: on the CPU in one pass (candidates.h), elsewhere summed and topk.
  const int64_t ncand = std::min<int64_t>(2 * K, width * V);
  torch::Tensor cum;  // elsewhere than the CPU: the sums [rows, V], once per step
  if (lprobs.is_cpu())
    lprobs = lprobs.contiguous();
  else
    cum = lprobs + torch::tensor(scores_).to(device).unsqueeze(1);
  auto top_of = [&](int64_t first_sentence, int64_t n, int64_t w) {
    const int64_t k = std::min(ncand, w * V);
    torch::Tensor s, i;
    if (lprobs.is_cpu()) {
      s = torch::empty({n, k}, lprobs.options()), i = torch::empty({n, k}, lprobs.options().dtype(torch::kLong));
      top_candidates(lprobs.data_ptr<float>(), V, scores_.data(), row0(first_sentence), n, w, k, s.data_ptr<float>(),
                     i.data_ptr<int64_t>());
    } else {
      std::tie(s, i) = cum.narrow(0, row0(first_sentence), n * w).view({n, w * V}).topk(k, 1);
    }
    if (s.size(1) < ncand) {  // fewer candidates than the others (a tiny vocabulary): dead ones
      s = torch::cat({s, torch::full({n, ncand - s.size(1)}, kNegInf, s.options())}, 1);
      i = torch::cat({i, torch::zeros({n, ncand - i.size(1)}, i.options())}, 1);
    }
    return std::make_pair(s, i);
  };
  torch::Tensor top_scores, top_idx;
  if (joining == 0) {
    std::tie(top_scores, top_idx) = top_of(0, A, width);
  } else {
    auto joined = top_of(stepped, joining, 1);
    if (stepped == 0) {
      std::tie(top_scores, top_idx) = joined;
    } else {
      auto beams = top_of(0, stepped, width);
      top_scores = torch::cat({beams.first, joined.first}, 0), top_idx = torch::cat({beams.second, joined.second}, 0);
    }
  }
  top_scores = top_scores.to(torch::kCPU).contiguous(), top_idx = top_idx.to(torch::kCPU).contiguous();
  auto lp_cpu = lprobs.to(torch::kCPU);
  auto lp = lp_cpu.accessor<float, 2>();
  auto ts = top_scores.accessor<float, 2>();
  auto ti = top_idx.accessor<int64_t, 2>();

  std::vector<Sentence> next_sentences;
  std::vector<int64_t> keep_rows, next_last;
  std::vector<std::vector<int64_t>> next_tokens;
  std::vector<std::vector<float>> next_pos;
  std::vector<float> next_scores;
  for (int64_t a = 0; a < A; ++a) {
    auto& sent = sentences_[a];
    auto& fin = sent.finished;
    const int64_t local = t - sent.start;  // the sentence's own step
    std::vector<int64_t> chosen;  // candidate ranks that continue
    for (int64_t c = 0; c < ncand; ++c) {
      float s = ts[a][c];
      if (!std::isfinite(s)) continue;
      int64_t beam = ti[a][c] / V, col = ti[a][c] % V;
      int64_t row = row0(a) + beam;
      if (col == eos_col_) {
        if (c < K && static_cast<int64_t>(fin.size()) < K) {
          Hypothesis h;
          h.tokens = tokens_[row];
          h.tokens.push_back(opt_.eos);
          h.positional_scores = pos_scores_[row];
          h.positional_scores.push_back(lp[row][col]);
          h.score = s / std::pow(static_cast<double>(local + 1), opt_.lenpen);
          fin.push_back(std::move(h));
        }
      } else if (static_cast<int64_t>(chosen.size()) < K) {
        chosen.push_back(c);
      }
    }
    if (static_cast<int64_t>(fin.size()) >= K || chosen.empty()) {  // sentence done
      std::stable_sort(fin.begin(), fin.end(),
                       [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
      if (static_cast<int64_t>(fin.size()) > opt_.nbest) fin.resize(opt_.nbest);
      done.emplace_back(sent.id, std::move(fin));
      continue;
    }
    for (int64_t k = 0; k < K; ++k) {
      // Fewer than K live candidates (tiny vocabularies): pad with dead rows.
      if (k >= static_cast<int64_t>(chosen.size())) {
        keep_rows.push_back(row0(a));
        next_tokens.push_back(tokens_[row0(a)]);
        next_pos.push_back(pos_scores_[row0(a)]);
        next_scores.push_back(kNegInf);
        next_last.push_back(opt_.pad);
        continue;
      }
      int64_t c = chosen[k];
      int64_t beam = ti[a][c] / V, col = ti[a][c] % V, tok = vocab_.empty() ? col : vocab_[col];
      int64_t row = row0(a) + beam;
      keep_rows.push_back(row);
      auto toks = tokens_[row];
      toks.push_back(tok);
      next_tokens.push_back(std::move(toks));
      auto ps = pos_scores_[row];
      ps.push_back(lp[row][col]);
      next_pos.push_back(std::move(ps));
      next_scores.push_back(ts[a][c]);
      next_last.push_back(tok);
    }
    next_sentences.push_back(std::move(sent));
  }
  if (next_sentences.empty()) {  // the batch is empty: the next admit starts a fresh one
    sentences_.clear();
    state_ = DecoderState();
    return done;
  }
  reorder_state(state_, torch::tensor(keep_rows, torch::kLong), K);
  width_ = K;
  sentences_ = std::move(next_sentences);
  tokens_ = std::move(next_tokens);
  pos_scores_ = std::move(next_pos);
  scores_ = std::move(next_scores);
  last_ = std::move(next_last);
  return done;
}

std::vector<std::vector<Hypothesis>> beam_search(StepModel& model, const torch::Tensor& src,
                                                 const SearchOptions& opt) {
  BeamStream stream(model, opt);
  const int64_t B = src.size(0);
  std::vector<std::vector<Hypothesis>> out(static_cast<size_t>(B));
  std::vector<int64_t> ids(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) ids[b] = b;
  stream.admit(src, ids);
  while (stream.active() > 0)
    for (auto& [id, hyps] : stream.step()) out[static_cast<size_t>(id)] = std::move(hyps);
  return out;
}

}  // namespace thor
