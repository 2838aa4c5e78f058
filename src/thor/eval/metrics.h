// Corpus BLEU and chrF, computed as sacreBLEU 2.x does by default:
//  BLEU: 13a tokenizer, mixed case, exp smoothing, 4-grams, one reference;
//  chrF2: character 6-grams, beta 2, whitespace removed, effective-order averaging.
#pragma once
#include <string>
#include <vector>

namespace thor {

struct BleuScore {
  double score = 0, bp = 0, ratio = 0;
  double precisions[4] = {0, 0, 0, 0};
  int64_t hyp_len = 0, ref_len = 0;
  std::string format() const;  // "BLEU = 37.99 83.3/60.0/25.0/16.7 (BP = ... )"
  static std::string signature();
};

struct ChrfScore {
  double score = 0;
  std::string format() const;  // "chrF2 = 64.58"
  static std::string signature();
};

// BLEU's sufficient statistics: they add over sentences (and over ranks of a distributed
// validation, or over a bootstrap sample), and the score is a function of their sum.
struct BleuStats {
  int64_t correct[4] = {0, 0, 0, 0}, total[4] = {0, 0, 0, 0};
  int64_t hyp_len = 0, ref_len = 0;
  BleuStats& operator+=(const BleuStats& o);
  std::vector<double> to_vector() const;  // 10 numbers, for a collective
  static BleuStats from_vector(const std::vector<double>& v);
};
BleuStats bleu_stats(const std::vector<std::string>& hyps, const std::vector<std::string>& refs);
BleuScore bleu_from_stats(const BleuStats& st);

// mteval-v13a tokenisation as in sacreBLEU's Tokenizer13a.
std::string tokenize_13a(const std::string& line);

BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs);
ChrfScore corpus_chrf(const std::vector<std::string>& hyps, const std::vector<std::string>& refs);

}  // namespace thor
