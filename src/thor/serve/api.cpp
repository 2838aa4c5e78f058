// See api.h.
#include "thor/serve/api.h"


namespace thor::serve {

namespace {

const std::map<std::string, std::string>& language_names() {
  static const std::map<std::string, std::string> names = {
      {"ar", "Arabic"},  {"cs", "Czech"},   {"da", "Danish"},     {"de", "German"},    {"el", "Greek"},
      {"en", "English"}, {"es", "Spanish"}, {"fi", "Finnish"},    {"fr", "French"},    {"hu", "Hungarian"},
      {"it", "Italian"}, {"ja", "Japanese"}, {"ko", "Korean"},    {"nl", "Dutch"},     {"pl", "Polish"},
      {"pt", "Portuguese"}, {"ro", "Romanian"}, {"ru", "Russian"}, {"sv", "Swedish"}, {"tr", "Turkish"},
      {"uk", "Ukrainian"}, {"zh", "Chinese"}};
  return names;
}

int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  for (const auto& y : v)
    if (y == x) return true;
  return false;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
  return out;
}

// The language pair checked against the model: source may be empty or "auto" (the model's
// own); target may be empty only for a bilingual model.
void check_languages(TranslateRequest& r, const ModelLanguages& langs) {
  if (r.source.empty() || r.source == "auto") r.source = langs.sources.empty() ? "" : langs.sources.front();
  else if (!contains(langs.sources, r.source))
    throw ApiError(400, "source language '" + r.source + "' is not served (this model translates from " +
                            joined(langs.sources) + ")");
  if (r.target.empty()) {
    if (langs.multilingual) throw ApiError(400, "give a target language (one of " + joined(langs.targets) + ")");
    r.target = langs.targets.empty() ? "" : langs.targets.front();
  } else if (!contains(langs.targets, r.target)) {
    throw ApiError(400, "target language '" + r.target + "' is not served (this model translates into " +
                            joined(langs.targets) + ")");
  }
}

void check_limits(const TranslateRequest& r, const ApiLimits& limits) {
  if (limits.batch_limit > 0 && static_cast<int64_t>(r.texts.size()) > limits.batch_limit)
    throw ApiError(413, std::to_string(r.texts.size()) + " texts in one request, over the batch limit of " +
                            std::to_string(limits.batch_limit));
  if (limits.char_limit > 0) {
    int64_t chars = 0;
    for (const auto& t : r.texts) chars += code_points(t);
    if (chars > limits.char_limit)
      throw ApiError(413, std::to_string(chars) + " characters in one request, over the character limit of " +
                              std::to_string(limits.char_limit));
  }
}

std::string field_string(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return "";
  if (!j.at(key).is_string()) throw ApiError(400, std::string("'") + key + "' must be a string");
  return j.at(key).get<std::string>();
}

}  // namespace

std::string dump_json(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::string error_answer(const std::string& message) { return dump_json({{"error", message}}); }

TranslateRequest parse_libretranslate(const std::string& content_type, const std::string& body,
                                      const std::multimap<std::string, std::string>& form, const ApiLimits& limits,
                                      const ModelLanguages& langs) {
  TranslateRequest r;
  const bool is_form = content_type.rfind("application/x-www-form-urlencoded", 0) == 0 ||
                       content_type.rfind("multipart/form-data", 0) == 0;
  if (is_form) {
    // q once: one text; q several times (q=a&q=b): a batch, as LibreTranslate's form handling
    auto range = form.equal_range("q");
    for (auto it = range.first; it != range.second; ++it) r.texts.push_back(it->second);
    if (r.texts.empty()) throw ApiError(400, "missing 'q' (the text to translate)");
    r.batch = r.texts.size() > 1;
    auto get = [&](const char* k) {
      auto it = form.find(k);
      return it == form.end() ? std::string() : it->second;
    };
    r.source = get("source"), r.target = get("target");
    if (!get("format").empty() && get("format") != "text")
      throw ApiError(400, "format '" + get("format") + "' is not served (only \"text\")");
  } else {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception& e) {
      throw ApiError(400, std::string("the body is not valid JSON (") + e.what() + ")");
    }
    if (!j.is_object()) throw ApiError(400, "the body must be a JSON object with 'q', 'source' and 'target'");
    if (!j.contains("q")) throw ApiError(400, "missing 'q' (the text to translate)");
    const auto& q = j.at("q");
    if (q.is_string()) {
      r.texts.push_back(q.get<std::string>());
    } else if (q.is_array()) {
      r.batch = true;
      for (const auto& t : q) {
        if (!t.is_string()) throw ApiError(400, "'q' must be a string or an array of strings");
        r.texts.push_back(t.get<std::string>());
      }
    } else {
      throw ApiError(400, "'q' must be a string or an array of strings");
    }
    r.source = field_string(j, "source"), r.target = field_string(j, "target");
    const std::string format = field_string(j, "format");
    if (!format.empty() && format != "text") throw ApiError(400, "format '" + format + "' is not served (only \"text\")");
  }
  check_limits(r, limits);
  check_languages(r, langs);
  return r;
}

std::string libretranslate_answer(const TranslateRequest& req, const std::vector<std::string>& translations) {
  if (req.batch) return dump_json({{"translatedText", translations}});
  return dump_json({{"translatedText", translations.empty() ? std::string() : translations.front()}});
}

TranslateRequest parse_opennmt(const std::string& body, const ApiLimits& limits, const ModelLanguages& langs) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    throw ApiError(400, std::string("the body is not valid JSON (") + e.what() + ")");
  }
  if (!j.is_array()) throw ApiError(400, "the body must be a JSON array of {\"src\": ..., \"id\": ...}");
  TranslateRequest r;
  r.batch = true;
  for (const auto& item : j) {
    if (!item.is_object() || !item.contains("src") || !item.at("src").is_string())
      throw ApiError(400, "every element needs \"src\" (a string)");
    r.texts.push_back(item.at("src").get<std::string>());
    r.ids.push_back(item.value("id", nlohmann::json()));
  }
  check_limits(r, limits);
  check_languages(r, langs);
  return r;
}

std::string opennmt_answer(const TranslateRequest& req, const std::vector<std::string>& translations,
                           const std::vector<double>& scores) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < translations.size(); ++i) {
    nlohmann::json one = {{"src", req.texts[i]}, {"tgt", translations[i]}, {"n_best", 1}, {"pred_score", scores[i]}};
    if (i < req.ids.size() && !req.ids[i].is_null()) one["id"] = req.ids[i];
    out.push_back(one);
  }
  return dump_json(nlohmann::json::array({out}));
}

std::string languages_answer(const ModelLanguages& langs) {
  nlohmann::json out = nlohmann::json::array();
  auto name = [](const std::string& code) {
    auto it = language_names().find(code);
    return it == language_names().end() ? code : it->second;
  };
  for (const auto& s : langs.sources) out.push_back({{"code", s}, {"name", name(s)}, {"targets", langs.targets}});
  for (const auto& t : langs.targets)
    if (!contains(langs.sources, t)) out.push_back({{"code", t}, {"name", name(t)}, {"targets", nlohmann::json::array()}});
  return dump_json(out);
}

}  // namespace thor::serve
