// See meta.h.
#include "thor/data/meta.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "thor/common/error.h"
#include "thor/common/json_read.h"

namespace thor {

int64_t DatasetMeta::first_of(size_t p, const std::string& split) const {
  int64_t first = 0;
  for (size_t i = 0; i < p && i < pairs.size(); ++i) {
    auto it = pairs[i].splits.find(split);
    first += it == pairs[i].splits.end() ? 0 : it->second;
  }
  return first;
}

nlohmann::json meta_json(const DatasetMeta& m) {
  nlohmann::json pairs = nlohmann::json::array();
  for (const auto& p : m.pairs) pairs.push_back({{"src", p.src}, {"tgt", p.tgt}, {"splits", p.splits}});
  return {{"src_lang", m.src_lang}, {"tgt_lang", m.tgt_lang}, {"vocab_size", m.vocab_size},
          {"splits", m.splits},     {"lang_tags", m.lang_tags}, {"pairs", pairs},
          {"target_tags", m.target_tags}, {"format", "thor-data-1"}};
}

DatasetMeta meta_from_json(const nlohmann::json& j) {
  const std::string format = j.value("format", std::string("thor-data-1"));
  if (format.rfind("thor-data-", 0) != 0)
    throw Error("not a thor dataset (format '" + format + "')");
  if (std::atoi(format.c_str() + 10) > 1)
    throw Error("written by a newer thor (dataset format " + format.substr(10) + "; this thor reads 1)");
  DatasetMeta m;
  const std::string what = "meta.json";
  read_json_field(j, what, "src_lang", m.src_lang);
  read_json_field(j, what, "tgt_lang", m.tgt_lang);
  read_json_field(j, what, "vocab_size", m.vocab_size);
  read_json_field(j, what, "splits", m.splits);
  read_json_field(j, what, "lang_tags", m.lang_tags);
  if (j.contains("target_tags")) read_json_field(j, what, "target_tags", m.target_tags);
  if (j.contains("pairs")) {
    if (!j.at("pairs").is_array()) throw Error("meta.json: 'pairs' must be a list");
    for (const auto& p : j.at("pairs")) {
      LangPair lp;
      read_json_field(p, what + " pairs", "src", lp.src);
      read_json_field(p, what + " pairs", "tgt", lp.tgt);
      read_json_field(p, what + " pairs", "splits", lp.splits);
      m.pairs.push_back(lp);
    }
  } else {  // written before multilingual datasets: one pair
    m.pairs.push_back({m.src_lang, m.tgt_lang, m.splits});
  }
  return m;
}

DatasetMeta read_meta(const std::string& dir) {
  auto path = (std::filesystem::path(dir) / "meta.json").string();
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open (is " + dir + " a directory made by thor prepare?)");
  nlohmann::json j;
  try {
    in >> j;
    return meta_from_json(j);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": invalid meta.json: " + e.what());
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
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

std::string raw_file(const std::string& data_dir, const DatasetMeta& m, const std::string& split, size_t p,
                     const std::string& lang) {
  const std::string name =
      m.target_tags ? split + "." + m.pairs.at(p).name() + ".raw." + lang : split + ".raw." + lang;
  return (std::filesystem::path(data_dir) / name).string();
}

std::vector<LangPair> parse_lang_pairs(const std::string& list) {
  std::vector<LangPair> out;
  std::set<std::string> seen;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto dash = item.find('-');
    LangPair p;
    if (dash != std::string::npos) p.src = item.substr(0, dash), p.tgt = item.substr(dash + 1);
    auto ok = [](const std::string& l) {
      if (l.empty()) return false;
      for (char c : l)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
      return true;
    };
    if (!ok(p.src) || !ok(p.tgt))
      throw Error("--lang-pairs: '" + item + "' is not SRC-TGT (e.g. --lang-pairs en-de,en-fr)");
    if (p.src == p.tgt) throw Error("--lang-pairs: '" + item + "' translates a language into itself");
    if (!seen.insert(p.name()).second) throw Error("--lang-pairs: " + p.name() + " is given twice");
    out.push_back(p);
  }
  if (out.empty()) throw Error("--lang-pairs: no language pair in '" + list + "'");
  return out;
}

}  // namespace thor
