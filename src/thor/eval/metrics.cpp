// See metrics.h. The algorithms follow sacreBLEU's metrics/bleu.py and metrics/chrf.py.
#include "thor/eval/metrics.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <unordered_map>

#include "thor/common/error.h"
#include "thor/common/utf8.h"

namespace thor {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// One left-to-right regex-substitution pass over two-character patterns, as re.sub does.
template <typename Match, typename Emit>
std::string sub2(const std::string& s, Match match, Emit emit) {
  std::string out;
  out.reserve(s.size() + 16);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && match(s[i], s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// Decodes UTF-8 into code points (invalid bytes map to themselves).
std::u32string utf8_to_u32(const std::string& s) {
  std::u32string out;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    utf8_next(s, i, cp);
    out.push_back(cp);
  }
  return out;
}

// Python's str.isspace() for the code points that occur in text.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::vector<std::string> split_ws(const std::string& s) {
  // Tokens from 13a are split on ASCII and Unicode whitespace (Python's str.split()).
  std::vector<std::string> out;
  size_t start = 0;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    size_t at = i;
    utf8_next(s, i, cp);
    if (is_space(cp)) {
      if (at > start) out.push_back(s.substr(start, at - start));
      start = i;
    }
  }
  if (s.size() > start) out.push_back(s.substr(start));
  return out;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
}

std::map<std::vector<std::string>, int> ngram_counts(const std::vector<std::string>& toks, int order) {
  std::map<std::vector<std::string>, int> counts;
  for (int n = 1; n <= order; ++n)
    for (size_t i = 0; i + n <= toks.size(); ++i)
      ++counts[std::vector<std::string>(toks.begin() + i, toks.begin() + i + n)];
  return counts;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

std::string tokenize_13a(const std::string& in) {
  std::string line = in;
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";
  // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> ' \1 '
  std::string s;
  s.reserve(line.size() * 2);
  for (char c : line) {
    auto u = static_cast<unsigned char>(c);
    bool punct = (u >= '{' && u <= '~') || (u >= '[' && u <= '`') || (u >= ' ' && u <= '&') ||
                 (u >= '(' && u <= '+') || (u >= ':' && u <= '@') || u == '/';
    if (punct) {
      s += ' ';
      s += c;
      s += ' ';
    } else {
      s += c;
    }
  }
  // ([^0-9])([\.,]) -> '\1 \2 '
  s = sub2(s, [](char a, char b) { return !is_digit(a) && (b == '.' || b == ','); },
           [](std::string& o, char a, char b) { o += a; o += ' '; o += b; o += ' '; });
  // ([\.,])([^0-9]) -> ' \1 \2'
  s = sub2(s, [](char a, char b) { return (a == '.' || a == ',') && !is_digit(b); },
           [](std::string& o, char a, char b) { o += ' '; o += a; o += ' '; o += b; });
  // ([0-9])(-) -> '\1 \2 '
  s = sub2(s, [](char a, char b) { return is_digit(a) && b == '-'; },
           [](std::string& o, char a, char b) { o += a; o += ' '; o += b; o += ' '; });
  auto toks = split_ws(s);
  std::string out;
  for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
  return out;
}

BleuStats& BleuStats::operator+=(const BleuStats& o) {
  for (int n = 0; n < 4; ++n) correct[n] += o.correct[n], total[n] += o.total[n];
  hyp_len += o.hyp_len, ref_len += o.ref_len;
  return *this;
}

std::vector<double> BleuStats::to_vector() const {
  std::vector<double> v;
  for (int n = 0; n < 4; ++n) v.push_back(static_cast<double>(correct[n]));
  for (int n = 0; n < 4; ++n) v.push_back(static_cast<double>(total[n]));
  v.push_back(static_cast<double>(hyp_len));
  v.push_back(static_cast<double>(ref_len));
  return v;
}

BleuStats BleuStats::from_vector(const std::vector<double>& v) {
  if (v.size() != 10) throw Error("BLEU statistics: expected 10 numbers, got " + std::to_string(v.size()));
  BleuStats st;
  for (int n = 0; n < 4; ++n) st.correct[n] = std::llround(v[n]), st.total[n] = std::llround(v[4 + n]);
  st.hyp_len = std::llround(v[8]);
  st.ref_len = std::llround(v[9]);
  return st;
}

BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  return bleu_from_stats(bleu_stats(hyps, refs));
}

BleuStats bleu_stats(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  if (hyps.size() != refs.size())
    throw Error("BLEU: " + std::to_string(hyps.size()) + " hypotheses but " +
                std::to_string(refs.size()) + " references");
  BleuStats st;
  for (size_t i = 0; i < hyps.size(); ++i) {
    auto h = split_ws(tokenize_13a(hyps[i]));
    auto r = split_ws(tokenize_13a(refs[i]));
    st.hyp_len += static_cast<int64_t>(h.size());
    st.ref_len += static_cast<int64_t>(r.size());
    auto hc = ngram_counts(h, 4), rc = ngram_counts(r, 4);
    for (auto& [ng, c] : hc) {
      int n = static_cast<int>(ng.size()) - 1;
      st.total[n] += c;
      auto it = rc.find(ng);
      if (it != rc.end()) st.correct[n] += std::min(c, it->second);
    }
  }
  return st;
}

BleuScore bleu_from_stats(const BleuStats& st) {
  BleuScore b;
  b.hyp_len = st.hyp_len;
  b.ref_len = st.ref_len;
  b.ratio = st.ref_len > 0 ? static_cast<double>(st.hyp_len) / st.ref_len : 0.0;
  b.bp = 1.0;
  if (st.hyp_len < st.ref_len) b.bp = st.hyp_len > 0 ? std::exp(1.0 - static_cast<double>(st.ref_len) / st.hyp_len) : 0.0;
  bool any = false;
  for (int n = 0; n < 4; ++n) any = any || st.correct[n] > 0;
  if (!any) return b;
  double smooth = 1.0;
  for (int n = 0; n < 4; ++n) {
    if (st.total[n] == 0) break;
    if (st.correct[n] == 0) {
      smooth *= 2;
      b.precisions[n] = 100.0 / (smooth * st.total[n]);
    } else {
      b.precisions[n] = 100.0 * st.correct[n] / st.total[n];
    }
  }
  double logsum = 0;
  for (double p : b.precisions) logsum += p > 0 ? std::log(p) : -9999999999.0;
  b.score = b.bp * std::exp(logsum / 4);
  return b;
}

std::string BleuScore::format() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)",
                score, precisions[0], precisions[1], precisions[2], precisions[3], bp, ratio,
                static_cast<long long>(hyp_len), static_cast<long long>(ref_len));
  return buf;
}

std::string BleuScore::signature() { return "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:thor"; }

ChrfScore corpus_chrf(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  if (hyps.size() != refs.size())
    throw Error("chrF: " + std::to_string(hyps.size()) + " hypotheses but " +
                std::to_string(refs.size()) + " references");
  constexpr int kOrder = 6;
  constexpr double kBeta = 2.0;
  std::vector<double> stats(3 * kOrder, 0.0);  // per order: hyp, ref, match
  auto strip = [](const std::string& s) {
    std::u32string out;
    for (char32_t c : utf8_to_u32(s))
      if (!is_space(c)) out.push_back(c);
    return out;
  };
  for (size_t i = 0; i < hyps.size(); ++i) {
    auto h = strip(hyps[i]), r = strip(refs[i]);
    for (int n = 1; n <= kOrder; ++n) {
      std::unordered_map<std::u32string, int> hc, rc;
      for (size_t k = 0; k + n <= h.size(); ++k) ++hc[h.substr(k, n)];
      for (size_t k = 0; k + n <= r.size(); ++k) ++rc[r.substr(k, n)];
      int64_t hyp_count = 0, ref_count = 0, match = 0;
      for (auto& [g, c] : hc) {
        hyp_count += c;
        auto it = rc.find(g);
        if (it != rc.end()) match += std::min(c, it->second);
      }
      for (auto& [g, c] : rc) ref_count += c;
      stats[3 * (n - 1)] += rc.empty() ? 0 : hyp_count;
      stats[3 * (n - 1) + 1] += ref_count;
      stats[3 * (n - 1) + 2] += match;
    }
  }
  const double factor = kBeta * kBeta;
  double avg_p = 0, avg_r = 0;
  int eff = 0;
  for (int n = 0; n < kOrder; ++n) {
    double nh = stats[3 * n], nr = stats[3 * n + 1], nm = stats[3 * n + 2];
    if (nh > 0 && nr > 0) {
      avg_p += nm / nh;
      avg_r += nm / nr;
      ++eff;
    }
  }
  ChrfScore c;
  if (eff == 0) return c;
  avg_p /= eff;
  avg_r /= eff;
  if (avg_p + avg_r > 0) c.score = 100.0 * (1 + factor) * avg_p * avg_r / (factor * avg_p + avg_r);
  return c;
}

std::string ChrfScore::format() const { return "chrF2 = " + fmt("%.2f", score); }
std::string ChrfScore::signature() { return "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:thor"; }

}  // namespace thor
