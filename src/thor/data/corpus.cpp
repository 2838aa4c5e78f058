// See corpus.h.
#include "thor/data/corpus.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/common/utf8.h"

namespace thor {

std::vector<std::string> read_lines(const std::string& path, const std::function<bool()>& stop) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open for reading");
  std::vector<std::string> lines;
  std::string part;  // the line being read
  auto add = [&lines](std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  };
  std::vector<char> buf(1 << 16);
  for (;;) {
    if (stop) {
      pollfd p{fd, POLLIN, 0};
      const int ready = ::poll(&p, 1, 100);
      if (ready < 0 && errno != EINTR) break;  // the read below reports it
      if (ready <= 0) {
        if (stop()) break;
        continue;
      }
    }
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw Error(path + ": read error: " + std::strerror(err));
    }
    if (n == 0) {
      if (!part.empty()) add(std::move(part));
      break;
    }
    const char* p = buf.data();
    const char* end = p + n;
    while (const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)))) {
      part.append(p, nl);
      add(std::move(part));
      part.clear();
      p = nl + 1;
    }
    part.append(p, end);
  }
  ::close(fd);
  return lines;
}

ParallelText read_parallel(const std::string& src_path, const std::string& tgt_path) {
  ParallelText t;
  t.src_path = src_path;
  t.tgt_path = tgt_path;
  t.src = read_lines(src_path);
  t.tgt = read_lines(tgt_path);
  if (t.src.size() != t.tgt.size())
    throw Error("line counts differ: " + src_path + " has " + std::to_string(t.src.size()) +
                " lines but " + tgt_path + " has " + std::to_string(t.tgt.size()));
  t.line.resize(t.src.size());
  for (size_t i = 0; i < t.line.size(); ++i) t.line[i] = static_cast<int64_t>(i) + 1;
  return t;
}

bool is_valid_utf8(const std::string& s) {
  char32_t cp;
  for (size_t i = 0; i < s.size();)
    if (!utf8_next(s, i, cp)) return false;
  return true;
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

namespace {
struct Reporter {
  int max_reports;
  int64_t count = 0;
  void report(const std::string& where, const std::string& what) {
    if (count++ < max_reports) THOR_WARN("prepare") << where << ": " << what << " (pair removed)";
  }
  void summary(const std::string& what) {
    if (count > max_reports)
      THOR_WARN("prepare") << "... and " << (count - max_reports) << " more " << what;
  }
};

template <typename Keep>
void compact(ParallelText& t, const std::vector<char>& keep, Keep&& also) {
  size_t j = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (!keep[i]) continue;
    if (i != j) {
      t.src[j] = std::move(t.src[i]);
      t.tgt[j] = std::move(t.tgt[i]);
      t.line[j] = t.line[i];
      also(i, j);
    }
    ++j;
  }
  t.src.resize(j);
  t.tgt.resize(j);
  t.line.resize(j);
}
}  // namespace

FilterReport filter_text(ParallelText& t, const FilterOptions& opt) {
  FilterReport r;
  Reporter utf{opt.max_reports}, empty{opt.max_reports};
  std::vector<char> keep(t.size(), 1);
  for (size_t i = 0; i < t.size(); ++i) {
    for (int side = 0; side < 2 && keep[i]; ++side) {
      const std::string& s = side ? t.tgt[i] : t.src[i];
      const std::string& f = side ? t.tgt_path : t.src_path;
      std::string where = f + ":" + std::to_string(t.line[i]);
      if (!is_valid_utf8(s)) {
        utf.report(where, "invalid UTF-8");
        keep[i] = 0;
      } else if (is_blank(s)) {
        empty.report(where, "empty line");
        keep[i] = 0;
      }
    }
  }
  utf.summary("invalid UTF-8 lines");
  empty.summary("empty lines");
  r.invalid_utf8 = utf.count;
  r.empty = empty.count;
  compact(t, keep, [](size_t, size_t) {});
  r.kept = static_cast<int64_t>(t.size());
  return r;
}

FilterReport filter_lengths(ParallelText& t, std::vector<std::vector<int>>& src_ids,
                            std::vector<std::vector<int>>& tgt_ids, const FilterOptions& opt) {
  FilterReport r;
  Reporter lng{opt.max_reports}, ratio{opt.max_reports};
  std::vector<char> keep(t.size(), 1);
  for (size_t i = 0; i < t.size(); ++i) {
    auto a = static_cast<int64_t>(src_ids[i].size()), b = static_cast<int64_t>(tgt_ids[i].size());
    std::string where = t.src_path + ":" + std::to_string(t.line[i]);
    if (a > opt.max_len || b > opt.max_len) {
      lng.report(where, "over-long pair (" + std::to_string(a) + "/" + std::to_string(b) +
                            " tokens, --max-len " + std::to_string(opt.max_len) + ")");
      keep[i] = 0;
    } else if (std::max(a, b) > opt.max_ratio * std::max<int64_t>(1, std::min(a, b))) {
      ratio.report(where, "length ratio " + std::to_string(a) + ":" + std::to_string(b) +
                              " exceeds --max-len-ratio");
      keep[i] = 0;
    }
  }
  lng.summary("over-long pairs");
  ratio.summary("pairs with extreme length ratios");
  r.too_long = lng.count;
  r.bad_ratio = ratio.count;
  compact(t, keep, [&](size_t i, size_t j) {
    src_ids[j] = std::move(src_ids[i]);
    tgt_ids[j] = std::move(tgt_ids[i]);
  });
  src_ids.resize(t.size());
  tgt_ids.resize(t.size());
  r.kept = static_cast<int64_t>(t.size());
  return r;
}

}  // namespace thor
