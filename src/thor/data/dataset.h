// Encoded parallel dataset (token ids, no eos) in one binary file per split, loaded in
// one read, plus token-budget batching from length buckets (fairseq's --max-tokens).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace thor {

struct Dataset {
  std::vector<int64_t> src_off{0}, tgt_off{0};  // [n+1] offsets into the token arrays
  std::vector<int32_t> src_tok, tgt_tok;
  std::vector<int64_t> line;  // 1-based line in the raw files

  size_t size() const { return line.size(); }
  int64_t src_len(size_t i) const { return src_off[i + 1] - src_off[i]; }
  int64_t tgt_len(size_t i) const { return tgt_off[i + 1] - tgt_off[i]; }
  void add(const std::vector<int>& src, const std::vector<int>& tgt, int64_t line_no);
  std::vector<int> src_ids(size_t i) const;
  std::vector<int> tgt_ids(size_t i) const;

  // Written to path + ".tmp" and renamed, so a crash never leaves a half file.
  void save(const std::string& path) const;
  static Dataset load(const std::string& path);  // throws thor::Error naming the file
};

struct Batch {
  torch::Tensor src;      // [B, S] source ids + eos, right-padded
  torch::Tensor tgt_in;   // [B, T] bos + target ids, right-padded
  torch::Tensor tgt_out;  // [B, T] target ids + eos, right-padded
  int64_t ntokens = 0;     // non-pad target tokens
  int64_t src_tokens = 0;  // non-pad source tokens
  int64_t nsentences = 0;
  Batch to(const torch::Device& d) const;
};

// Groups example indices into batches of at most max_tokens (padded size, counting eos on
// both sides) and at most max_sentences (0 = no limit). Examples are sorted by length
// with a seeded random tie-break so batches hold similar lengths. Examples that alone
// exceed max_tokens are dropped and counted in *dropped.
std::vector<std::vector<int64_t>> make_batches(const Dataset& ds, int64_t max_tokens,
                                               int64_t max_sentences, uint64_t seed,
                                               int64_t* dropped = nullptr);
// The same over the examples `examples` of ds (a part of it, or a sample that repeats some).
std::vector<std::vector<int64_t>> make_batches(const Dataset& ds, std::vector<int64_t> examples, int64_t max_tokens,
                                               int64_t max_sentences, uint64_t seed, int64_t* dropped = nullptr);

// Splits a batch's examples into at most `parts` contiguous runs with about equal target
// tokens each (the shards that training workers run at once); no run is empty.
std::vector<std::vector<int64_t>> split_batch(const Dataset& ds, const std::vector<int64_t>& idx, int64_t parts);

Batch collate(const Dataset& ds, const std::vector<int64_t>& idx, int64_t pad, int64_t bos,
              int64_t eos);

// [B, S] right-padded tensor of ids + eos from plain id lists.
torch::Tensor pad_sources(const std::vector<std::vector<int>>& seqs, int64_t pad, int64_t eos);

}  // namespace thor
