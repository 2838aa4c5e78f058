// `thor prepare`: validate raw parallel text, train a joint SentencePiece model and write
// the encoded dataset (fairseq-preprocess's job).
#pragma once
#include <string>

#include "thor/data/corpus.h"
#include "thor/data/meta.h"

namespace thor {

struct PrepareOptions {
  std::string src_lang, tgt_lang;
  // Multilingual instead (e.g. "en-de,en-fr,en-cs" over P.en, P.de, ...): one dataset, one
  // joint SentencePiece model, the target language's tag (<2de>) before every source.
  std::string lang_pairs;
  std::string trainpref, validpref, testpref;  // testpref optional
  std::string destdir;
  int vocab_size = 8000;
  std::string spm_type = "bpe";
  FilterOptions filter;
  int threads = 2;
};

struct PrepareSummary {
  int64_t train = 0, valid = 0, test = 0;  // all pairs
  std::vector<LangPair> pairs;             // each pair's sizes
  FilterReport train_text, train_len;
};

PrepareSummary prepare_dataset(const PrepareOptions& opt);

}  // namespace thor
