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

// mteval-v13a tokenisation as in sacreBLEU's Tokenizer13a.
std::string tokenize_13a(const std::string& line);

BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs);
ChrfScore corpus_chrf(const std::vector<std::string>& hyps, const std::vector<std::string>& refs);

}  // namespace thor
