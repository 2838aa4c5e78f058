// Fuzz target: the corpus reader and validator (thor prepare's input path) and the prepared
// data dir's own files. The first byte picks what the rest is:
//   0: a parallel text pair, split at the first 0x00 byte (source, target): read_parallel,
//      filter_text, filter_lengths (lengths = whitespace tokens), read_lines;
//   1: a data dir's meta.json (read_meta);
//   2: a split's binary file (Dataset::load).
// Invariants checked besides "no crash": filtering keeps the two sides parallel, and every
// kept pair is valid UTF-8 with no blank side.
#include <cstring>
#include <sstream>

#include "fuzz_common.h"
#include "thor/data/corpus.h"
#include "thor/data/dataset.h"
#include "thor/data/meta.h"

namespace {

std::vector<std::vector<int>> whitespace_lengths(const std::vector<std::string>& lines) {
  std::vector<std::vector<int>> ids;
  for (const auto& l : lines) {
    std::istringstream words(l);
    std::vector<int> v;
    for (std::string w; words >> w;) v.push_back(static_cast<int>(w.size()));
    ids.push_back(std::move(v));
  }
  return ids;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_corpus: invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thor;
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  ++data, --size;
  if (mode == 0) {
    const auto* split = static_cast<const uint8_t*>(std::memchr(data, 0, size));
    const size_t n_src = split ? static_cast<size_t>(split - data) : size / 2;
    const size_t skip = split ? 1 : 0;
    const auto src = fuzz::write_bytes("train.src", data, n_src);
    const auto tgt = fuzz::write_bytes("train.tgt", data + n_src + skip, size - n_src - skip);
    fuzz::expect_refusal_or_success("read_lines", [&] { read_lines(src); });
    fuzz::expect_refusal_or_success("read_parallel", [&] {
      auto text = read_parallel(src, tgt);
      FilterOptions opt;
      opt.max_len = 20, opt.max_ratio = 3.0, opt.max_reports = 2;
      filter_text(text, opt);
      check(text.src.size() == text.tgt.size() && text.line.size() == text.src.size(), "sides parallel after filter_text");
      for (size_t i = 0; i < text.size(); ++i)
        check(is_valid_utf8(text.src[i]) && is_valid_utf8(text.tgt[i]) && !is_blank(text.src[i]) && !is_blank(text.tgt[i]),
              "a kept pair is valid UTF-8 and not blank");
      auto s_ids = whitespace_lengths(text.src), t_ids = whitespace_lengths(text.tgt);
      filter_lengths(text, s_ids, t_ids, opt);
      check(text.src.size() == s_ids.size() && t_ids.size() == s_ids.size() && text.tgt.size() == s_ids.size(),
            "sides parallel after filter_lengths");
      for (size_t i = 0; i < s_ids.size(); ++i)
        check(static_cast<int64_t>(s_ids[i].size()) <= opt.max_len && static_cast<int64_t>(t_ids[i].size()) <= opt.max_len,
              "kept pairs within --max-len");
    });
  } else if (mode == 1) {
    const auto dir = fuzz::scratch() / "data";
    std::filesystem::create_directories(dir);
    fuzz::write_bytes("data/meta.json", data, size);
    fuzz::expect_refusal_or_success("read_meta", [&] { read_meta(dir.string()); });
  } else {
    const auto path = fuzz::write_bytes("train.bin", data, size);
    fuzz::expect_refusal_or_success("Dataset::load", [&] {
      auto ds = Dataset::load(path);
      // what load accepts must be usable: batch every example and collate the batches
      for (const auto& b : make_batches(ds, 4096, 0, 1)) collate(ds, b, 0, 2, 3);
    });
  }
  return 0;
}
