// meta.json of a prepared dataset directory: languages, vocabulary, split sizes and the
// language tags reserved in the vocabulary (room for multilingual data later).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace thor {

struct DatasetMeta {
  std::string src_lang, tgt_lang;
  int64_t vocab_size = 0;
  std::map<std::string, int64_t> splits;  // split name -> pairs kept
  std::vector<std::string> lang_tags;     // e.g. "<2de>"
};

nlohmann::json meta_json(const DatasetMeta& m);
DatasetMeta read_meta(const std::string& data_dir);  // throws thor::Error naming the file
void write_meta(const std::string& data_dir, const DatasetMeta& m);

inline std::string lang_tag(const std::string& lang) { return "<2" + lang + ">"; }

}  // namespace thor
