// meta.json of a prepared dataset directory: languages, vocabulary, split sizes, the
// language pairs (one for a bilingual dataset; several for a multilingual one, whose
// examples are stored pair after pair in every split) and the language tags reserved in the
// vocabulary.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace thor {

struct LangPair {
  std::string src, tgt;
  std::map<std::string, int64_t> splits;  // split name -> pairs kept
  std::string name() const { return src + "-" + tgt; }
};

struct DatasetMeta {
  std::string src_lang, tgt_lang;  // multilingual: the languages of each side, comma-separated
  int64_t vocab_size = 0;
  std::map<std::string, int64_t> splits;  // split name -> pairs kept (all language pairs)
  std::vector<std::string> lang_tags;     // e.g. "<2de>"
  std::vector<LangPair> pairs;            // in storage order
  // Multilingual (prepare --lang-pairs): every source starts with its target language's tag.
  bool target_tags = false;
  // Examples [first, first + count) of `split` belong to pairs[p].
  int64_t first_of(size_t p, const std::string& split) const;
};

nlohmann::json meta_json(const DatasetMeta& m);
DatasetMeta meta_from_json(const nlohmann::json& j);  // throws nlohmann::json::exception
DatasetMeta read_meta(const std::string& data_dir);  // throws thor::Error naming the file
void write_meta(const std::string& data_dir, const DatasetMeta& m);

inline std::string lang_tag(const std::string& lang) { return "<2" + lang + ">"; }

// The raw text of one side of a split for pairs[p]: SPLIT.raw.LANG for a bilingual dataset,
// SPLIT.SRC-TGT.raw.LANG for a multilingual one.
std::string raw_file(const std::string& data_dir, const DatasetMeta& m, const std::string& split, size_t p,
                     const std::string& lang);

// "en-de,en-fr" -> pairs; throws Error naming the option on a malformed list.
std::vector<LangPair> parse_lang_pairs(const std::string& list);

}  // namespace thor
