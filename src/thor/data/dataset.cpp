// See dataset.h.
#include "thor/data/dataset.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>

#include "thor/common/error.h"

namespace thor {

namespace {
constexpr char kDatasetMagic[8] = {'T', 'H', 'O', 'R', 'D', 'S', '0', '1'};

template <typename T>
void write_vec(std::ofstream& out, const std::vector<T>& v) {
  uint64_t n = v.size();
  out.write(reinterpret_cast<const char*>(&n), sizeof n);
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
}

// A count read from the file is checked against the bytes left in it before anything is
// allocated (a damaged count once asked for 512 GB: found by fuzz/fuzz_corpus).
template <typename T>
void read_vec(std::ifstream& in, std::vector<T>& v, const std::string& path, uint64_t file_size) {
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), sizeof n);
  if (!in) throw Error(path + ": truncated dataset file");
  const auto pos = static_cast<uint64_t>(in.tellg());
  if (n > (file_size - pos) / sizeof(T))
    throw Error(path + ": truncated or damaged dataset file (a section of " + std::to_string(n) + " entries, " +
                std::to_string(file_size - pos) + " bytes left)");
  v.resize(n);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  if (!in) throw Error(path + ": truncated dataset file");
}
}  // namespace

void Dataset::add(const std::vector<int>& src, const std::vector<int>& tgt, int64_t line_no) {
  src_tok.insert(src_tok.end(), src.begin(), src.end());
  tgt_tok.insert(tgt_tok.end(), tgt.begin(), tgt.end());
  src_off.push_back(static_cast<int64_t>(src_tok.size()));
  tgt_off.push_back(static_cast<int64_t>(tgt_tok.size()));
  line.push_back(line_no);
}

std::vector<int> Dataset::src_ids(size_t i) const {
  return {src_tok.begin() + src_off[i], src_tok.begin() + src_off[i + 1]};
}
std::vector<int> Dataset::tgt_ids(size_t i) const {
  return {tgt_tok.begin() + tgt_off[i], tgt_tok.begin() + tgt_off[i + 1]};
}

void Dataset::save(const std::string& path) const {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(tmp + ": cannot open for writing");
    out.write(kDatasetMagic, sizeof kDatasetMagic);
    write_vec(out, src_off);
    write_vec(out, tgt_off);
    write_vec(out, src_tok);
    write_vec(out, tgt_tok);
    write_vec(out, line);
    if (!out) throw Error(tmp + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot rename from " + tmp);
}

Dataset Dataset::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open dataset (run thor prepare first)");
  char magic[8];
  in.read(magic, sizeof magic);
  if (!in || std::memcmp(magic, kDatasetMagic, sizeof kDatasetMagic) != 0)
    throw Error(path + ": not a thor dataset file");
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  in.seekg(sizeof magic);
  Dataset d;
  read_vec(in, d.src_off, path, size);
  read_vec(in, d.tgt_off, path, size);
  read_vec(in, d.src_tok, path, size);
  read_vec(in, d.tgt_tok, path, size);
  read_vec(in, d.line, path, size);
  size_t n = d.line.size();
  auto offsets_ok = [n](const std::vector<int64_t>& off, size_t tokens) {
    if (off.size() != n + 1 || off.front() != 0 || off.back() != static_cast<int64_t>(tokens)) return false;
    for (size_t i = 0; i < n; ++i)
      if (off[i + 1] < off[i]) return false;
    return true;
  };
  if (!offsets_ok(d.src_off, d.src_tok.size()) || !offsets_ok(d.tgt_off, d.tgt_tok.size()))
    throw Error(path + ": inconsistent dataset file");
  if (static_cast<uint64_t>(in.tellg()) != size) throw Error(path + ": damaged dataset file (bytes after its data)");
  return d;
}

Batch Batch::to(const torch::Device& d) const {
  Batch b = *this;
  b.src = src.to(d);
  b.tgt_in = tgt_in.to(d);
  b.tgt_out = tgt_out.to(d);
  return b;
}

std::vector<std::vector<int64_t>> make_batches(const Dataset& ds, int64_t max_tokens,
                                               int64_t max_sentences, uint64_t seed,
                                               int64_t* dropped) {
  std::vector<int64_t> all(ds.size());
  std::iota(all.begin(), all.end(), 0);
  return make_batches(ds, std::move(all), max_tokens, max_sentences, seed, dropped);
}

std::vector<std::vector<int64_t>> make_batches(const Dataset& ds, std::vector<int64_t> order, int64_t max_tokens,
                                               int64_t max_sentences, uint64_t seed, int64_t* dropped) {
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (ds.tgt_len(a) != ds.tgt_len(b)) return ds.tgt_len(a) < ds.tgt_len(b);
    return ds.src_len(a) < ds.src_len(b);
  });
  std::vector<std::vector<int64_t>> batches;
  std::vector<int64_t> cur;
  int64_t cur_max = 0, skipped = 0;
  for (int64_t i : order) {
    int64_t len = std::max(ds.src_len(i), ds.tgt_len(i)) + 1;
    if (len > max_tokens) {
      ++skipped;
      continue;
    }
    int64_t new_max = std::max(cur_max, len);
    bool full = (static_cast<int64_t>(cur.size()) + 1) * new_max > max_tokens ||
                (max_sentences > 0 && static_cast<int64_t>(cur.size()) >= max_sentences);
    if (!cur.empty() && full) {
      batches.push_back(std::move(cur));
      cur.clear();
      new_max = len;
    }
    cur.push_back(i);
    cur_max = new_max;
  }
  if (!cur.empty()) batches.push_back(std::move(cur));
  if (dropped) *dropped = skipped;
  return batches;
}

std::vector<std::vector<int64_t>> split_batch(const Dataset& ds, const std::vector<int64_t>& idx, int64_t parts) {
  parts = std::max<int64_t>(1, std::min<int64_t>(parts, static_cast<int64_t>(idx.size())));
  int64_t total = 0;
  for (int64_t i : idx) total += ds.tgt_len(static_cast<size_t>(i)) + 1;
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(parts));
  int64_t done = 0;
  size_t k = 0;
  for (int64_t p = 0; p < parts; ++p) {
    // run p ends where the running total first reaches (p + 1) / parts of the tokens, leaving
    // at least one example for each later run
    const int64_t goal = total * (p + 1) / parts;
    const size_t last = idx.size() - static_cast<size_t>(parts - p - 1);
    do {
      done += ds.tgt_len(static_cast<size_t>(idx[k])) + 1;
      out[static_cast<size_t>(p)].push_back(idx[k++]);
    } while (k < last && done < goal);
  }
  return out;
}

Batch collate(const Dataset& ds, const std::vector<int64_t>& idx, int64_t pad, int64_t bos,
              int64_t eos) {
  auto B = static_cast<int64_t>(idx.size());
  int64_t S = 0, T = 0;
  for (int64_t i : idx) {
    S = std::max(S, ds.src_len(i) + 1);
    T = std::max(T, ds.tgt_len(i) + 1);
  }
  Batch b;
  b.src = torch::full({B, S}, pad, torch::kLong);
  b.tgt_in = torch::full({B, T}, pad, torch::kLong);
  b.tgt_out = torch::full({B, T}, pad, torch::kLong);
  auto s = b.src.accessor<int64_t, 2>();
  auto ti = b.tgt_in.accessor<int64_t, 2>();
  auto to = b.tgt_out.accessor<int64_t, 2>();
  for (int64_t r = 0; r < B; ++r) {
    int64_t i = idx[r];
    int64_t ls = ds.src_len(i), lt = ds.tgt_len(i);
    for (int64_t k = 0; k < ls; ++k) s[r][k] = ds.src_tok[ds.src_off[i] + k];
    s[r][ls] = eos;
    ti[r][0] = bos;
    for (int64_t k = 0; k < lt; ++k) {
      int32_t tok = ds.tgt_tok[ds.tgt_off[i] + k];
      ti[r][k + 1] = tok;
      to[r][k] = tok;
    }
    to[r][lt] = eos;
    b.ntokens += lt + 1;
    b.src_tokens += ls + 1;
  }
  b.nsentences = B;
  return b;
}

torch::Tensor pad_sources(const std::vector<std::vector<int>>& seqs, int64_t pad, int64_t eos) {
  int64_t S = 0;
  for (auto& s : seqs) S = std::max<int64_t>(S, static_cast<int64_t>(s.size()) + 1);
  auto out = torch::full({static_cast<int64_t>(seqs.size()), S}, pad, torch::kLong);
  auto a = out.accessor<int64_t, 2>();
  for (size_t r = 0; r < seqs.size(); ++r) {
    for (size_t k = 0; k < seqs[r].size(); ++k) a[r][k] = seqs[r][k];
    a[r][seqs[r].size()] = eos;
  }
  return out;
}

}  // namespace thor
