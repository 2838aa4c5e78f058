// See shortlist.h.
#include "thor/decode/shortlist.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "thor/common/error.h"
#include "thor/data/dataset.h"

namespace thor {

namespace {
constexpr const char* kShortlistMagic = "thor-shortlist";
}

Shortlist Shortlist::build(const Dataset& train, int64_t vocab_size, int64_t per_source, int64_t frequent) {
  if (vocab_size < 1) throw Error("shortlist: vocabulary size must be >= 1");
  if (per_source < 0 || frequent < 0) throw Error("shortlist: --per-source and --frequent must be >= 0");
  // Sentence frequencies of source and target tokens and of their co-occurrence.
  std::vector<int64_t> df_src(vocab_size, 0), df_tgt(vocab_size, 0);
  std::vector<std::unordered_map<int32_t, int64_t>> co(vocab_size);
  std::vector<char> seen_s(vocab_size, 0), seen_t(vocab_size, 0);
  std::vector<int32_t> us, ut;
  for (size_t i = 0; i < train.size(); ++i) {
    us.clear(), ut.clear();
    for (int64_t k = train.src_off[i]; k < train.src_off[i + 1]; ++k) {
      int32_t s = train.src_tok[k];
      if (s < 0 || s >= vocab_size) throw Error("shortlist: source id " + std::to_string(s) + " outside the vocabulary");
      if (!seen_s[s]) seen_s[s] = 1, us.push_back(s);
    }
    for (int64_t k = train.tgt_off[i]; k < train.tgt_off[i + 1]; ++k) {
      int32_t t = train.tgt_tok[k];
      if (t < 0 || t >= vocab_size) throw Error("shortlist: target id " + std::to_string(t) + " outside the vocabulary");
      if (!seen_t[t]) seen_t[t] = 1, ut.push_back(t);
    }
    for (int32_t s : us) {
      ++df_src[s];
      for (int32_t t : ut) ++co[s][t];
    }
    for (int32_t t : ut) ++df_tgt[t];
    for (int32_t s : us) seen_s[s] = 0;
    for (int32_t t : ut) seen_t[t] = 0;
  }
  Shortlist sl;
  sl.vocab_size = vocab_size;
  sl.candidates.resize(vocab_size);
  for (int64_t s = 0; s < vocab_size; ++s) {
    std::vector<std::pair<double, int32_t>> scored;
    scored.reserve(co[s].size());
    for (auto [t, c] : co[s]) scored.emplace_back(2.0 * c / static_cast<double>(df_src[s] + df_tgt[t]), t);
    const auto keep = std::min<size_t>(scored.size(), static_cast<size_t>(per_source));
    std::partial_sort(scored.begin(), scored.begin() + keep, scored.end(),
                      [](auto& a, auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
    for (size_t k = 0; k < keep; ++k) sl.candidates[s].push_back(scored[k].second);
  }
  std::vector<int32_t> order;
  for (int32_t t = 0; t < vocab_size; ++t)
    if (df_tgt[t] > 0) order.push_back(t);
  const auto keep = std::min<size_t>(order.size(), static_cast<size_t>(frequent));
  std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                    [&](int32_t a, int32_t b) { return df_tgt[a] != df_tgt[b] ? df_tgt[a] > df_tgt[b] : a < b; });
  sl.frequent.assign(order.begin(), order.begin() + keep);
  return sl;
}

void Shortlist::save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) throw Error(path + ": cannot write");
    f << kShortlistMagic << " 1 " << vocab_size << "\n";
    auto line = [&](const std::string& head, const std::vector<int32_t>& ids) {
      f << head;
      for (int32_t t : ids) f << ' ' << t;
      f << '\n';
    };
    line("frequent", frequent);
    for (int64_t s = 0; s < vocab_size; ++s)
      if (!candidates[s].empty()) line(std::to_string(s), candidates[s]);
    if (!f) throw Error(path + ": write failed");
  }
  std::filesystem::rename(tmp, path);
}

Shortlist Shortlist::load(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open shortlist");
  Shortlist sl;
  std::string line, magic;
  int version = 0;
  int64_t lineno = 1;
  if (!std::getline(f, line) || !(std::istringstream(line) >> magic >> version >> sl.vocab_size) || magic != kShortlistMagic ||
      version != 1 || sl.vocab_size < 1)
    throw Error(path + ":1: not a thor shortlist (expected '" + kShortlistMagic + " 1 VOCAB_SIZE')");
  sl.candidates.resize(sl.vocab_size);
  bool have_frequent = false;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty()) continue;
    std::istringstream in(line);
    std::string head;
    in >> head;
    std::vector<int32_t>* dst = nullptr;
    if (head == "frequent") {
      dst = &sl.frequent, have_frequent = true;
    } else {
      char* end = nullptr;
      long s = std::strtol(head.c_str(), &end, 10);
      if (head.empty() || *end != '\0' || s < 0 || s >= sl.vocab_size)
        throw Error(path + ":" + std::to_string(lineno) + ": '" + head + "' is not a source id below " +
                    std::to_string(sl.vocab_size));
      dst = &sl.candidates[s];
    }
    std::string tok;
    while (in >> tok) {
      char* end = nullptr;
      long t = std::strtol(tok.c_str(), &end, 10);
      if (*end != '\0' || t < 0 || t >= sl.vocab_size)
        throw Error(path + ":" + std::to_string(lineno) + ": '" + tok + "' is not a target id below " +
                    std::to_string(sl.vocab_size));
      dst->push_back(static_cast<int32_t>(t));
    }
  }
  if (!have_frequent) throw Error(path + ": no 'frequent' line");
  return sl;
}

torch::Tensor Shortlist::select(const torch::Tensor& src, const std::vector<int64_t>& always) const {
  std::vector<char> in(static_cast<size_t>(vocab_size), 0);
  for (int32_t t : frequent) in[t] = 1;
  for (int64_t t : always)
    if (t >= 0 && t < vocab_size) in[t] = 1;
  auto s = src.to(torch::kCPU).to(torch::kLong).contiguous();
  const int64_t* p = s.data_ptr<int64_t>();
  std::vector<char> done(static_cast<size_t>(vocab_size), 0);
  for (int64_t i = 0; i < s.numel(); ++i) {
    const int64_t id = p[i];
    if (id < 0 || id >= vocab_size || done[id]) continue;
    done[id] = 1;
    for (int32_t t : candidates[id]) in[t] = 1;
  }
  std::vector<int64_t> ids;
  for (int64_t t = 0; t < vocab_size; ++t)
    if (in[t]) ids.push_back(t);
  return torch::tensor(ids, torch::kLong);
}

}  // namespace thor
