// See meta.h.
#include "thor/data/meta.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "thor/common/error.h"

namespace thor {

nlohmann::json meta_json(const DatasetMeta& m) {
  return {{"src_lang", m.src_lang}, {"tgt_lang", m.tgt_lang}, {"vocab_size", m.vocab_size},
          {"splits", m.splits}, {"lang_tags", m.lang_tags}, {"format", "thor-data-1"}};
}

DatasetMeta read_meta(const std::string& dir) {
  auto path = (std::filesystem::path(dir) / "meta.json").string();
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open (is " + dir + " a directory made by thor prepare?)");
  nlohmann::json j;
  try {
    in >> j;
    DatasetMeta m;
    m.src_lang = j.at("src_lang");
    m.tgt_lang = j.at("tgt_lang");
    m.vocab_size = j.at("vocab_size");
    m.splits = j.at("splits").get<std::map<std::string, int64_t>>();
    m.lang_tags = j.at("lang_tags").get<std::vector<std::string>>();
    return m;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": invalid meta.json: " + e.what());
  }
}

void write_meta(const std::string& dir, const DatasetMeta& m) {
  auto path = (std::filesystem::path(dir) / "meta.json").string();
  auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!out) throw Error(tmp + ": cannot open for writing");
    out << meta_json(m).dump(2) << '\n';
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot rename");
}

}  // namespace thor
