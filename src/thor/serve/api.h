// The request and answer shapes thor serve speaks, without the HTTP library: LibreTranslate's
// POST /translate (JSON or form body; the shape most clients already send) and OpenNMT-py's
// POST /translator/translate. Bad input throws ApiError with the HTTP status to answer
// (400 bad request, 413 over a limit); answers are JSON strings.
#pragma once
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace thor::serve {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct ApiLimits {
  int64_t char_limit = 5000;  // characters (code points) over all of a request's texts; <= 0: none
  int64_t batch_limit = 64;   // texts in one request; <= 0: none
};

// The languages of the served model: sources and the targets each reaches.
struct ModelLanguages {
  std::vector<std::string> sources, targets;
  bool multilingual = false;  // a target-language tag (<2xx>) picks the target
};

struct TranslateRequest {
  std::vector<std::string> texts;
  bool batch = false;  // q was an array: answer with an array
  std::string source, target;
  // OpenNMT: the ids to echo back (one per text)
  std::vector<nlohmann::json> ids;
};

// LibreTranslate: {"q": "text" | ["t1", ...], "source": "en" | "auto", "target": "de",
// "format": "text", "api_key": ...} as JSON, or the same fields as a form
// (application/x-www-form-urlencoded, already parsed into `form`; multipart likewise).
// `json_body`: the body when it is JSON, else empty with form fields given.
TranslateRequest parse_libretranslate(const std::string& content_type, const std::string& body,
                                      const std::multimap<std::string, std::string>& form, const ApiLimits& limits,
                                      const ModelLanguages& langs);
// {"translatedText": "..."} or {"translatedText": ["...", ...]}
std::string libretranslate_answer(const TranslateRequest& req, const std::vector<std::string>& translations);

// OpenNMT-py: [{"src": "text", "id": 100}, ...] -> [[{"src", "tgt", "n_best": 1,
// "pred_score", "id"}, ...]]
TranslateRequest parse_opennmt(const std::string& body, const ApiLimits& limits, const ModelLanguages& langs);
std::string opennmt_answer(const TranslateRequest& req, const std::vector<std::string>& translations,
                           const std::vector<double>& scores);

// GET /languages: [{"code": "en", "name": "English", "targets": ["de"]}, ...]
std::string languages_answer(const ModelLanguages& langs);

// {"error": message}
std::string error_answer(const std::string& message);

// JSON text of j; invalid UTF-8 in strings replaced (U+FFFD) instead of throwing.
std::string dump_json(const nlohmann::json& j);

}  // namespace thor::serve
