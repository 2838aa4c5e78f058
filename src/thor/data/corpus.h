// Reading and validating raw parallel text (one sentence per line, two files).
// Problems are reported as file:line and filtered; a line-count mismatch is an error.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace thor {

struct ParallelText {
  std::string src_path, tgt_path;
  std::vector<std::string> src, tgt;
  std::vector<int64_t> line;  // 1-based line number in the files
  size_t size() const { return src.size(); }
};

// Reads both files whole; throws thor::Error if either cannot be read or the line
// counts differ (the message names both files and both counts).
ParallelText read_parallel(const std::string& src_path, const std::string& tgt_path);

// Reads a text file into lines (no trailing newline, a final '\r' removed); throws
// thor::Error on failure. With `stop`: while no input comes (a terminal, a pipe), it is
// asked every 100 ms, and when it answers true the lines read so far are returned.
std::vector<std::string> read_lines(const std::string& path, const std::function<bool()>& stop = nullptr);

bool is_valid_utf8(const std::string& s);
bool is_blank(const std::string& s);

struct FilterReport {
  int64_t invalid_utf8 = 0, empty = 0, too_long = 0, bad_ratio = 0, kept = 0;
  int64_t removed() const { return invalid_utf8 + empty + too_long + bad_ratio; }
};

struct FilterOptions {
  int64_t max_len = 250;     // tokens per side (after SentencePiece)
  double max_ratio = 9.0;    // max(len)/min(len) over the two sides
  int max_reports = 10;      // per problem kind; the rest are only counted
};

// Removes pairs with invalid UTF-8 or an empty side (reported with file:line).
FilterReport filter_text(ParallelText& text, const FilterOptions& opt);

// Removes pairs whose token lengths (from `length`) are over-long or too unequal.
// `src_len`/`tgt_len` are parallel to `text`; all four are filtered in place.
FilterReport filter_lengths(ParallelText& text, std::vector<std::vector<int>>& src_ids,
                            std::vector<std::vector<int>>& tgt_ids, const FilterOptions& opt);

}  // namespace thor
