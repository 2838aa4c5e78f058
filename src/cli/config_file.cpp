// See config_file.h.
#include "cli/config_file.h"

#include <cctype>

#include <nlohmann/json.hpp>

#include "thor/common/error.h"
#include "thor/common/file_io.h"

namespace thor::cli {

namespace {

// Every option of app and of its option groups (subcommands without a name).
void collect(const CLI::App* app, std::vector<const CLI::Option*>& out) {
  for (const auto* opt : app->get_options({})) out.push_back(opt);
  for (const auto* sub : app->get_subcommands({}))
    if (sub->get_name().empty()) collect(sub, out);
}

// "4096" as 4096 and "0.3" as 0.3 (a JSON number literal), anything else as a string
nlohmann::ordered_json value_of(const std::string& s) {
  if (!s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-')) {
    try {
      auto j = nlohmann::ordered_json::parse(s);  // the whole string, or it throws
      if (j.is_number()) return j;
    } catch (const nlohmann::json::exception&) {
    }
  }
  return s;
}

std::string key_of(const CLI::Option* opt) {
  // a positional's name has no dashes; an option's first long name without them
  return opt->get_lnames().empty() ? opt->get_name() : opt->get_lnames().front();
}

}  // namespace

std::string JsonConfig::to_config(const CLI::App* app, bool default_also, bool, std::string) const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  std::vector<const CLI::Option*> opts;
  collect(app, opts);
  for (const auto* opt : opts) {
    if (!opt->get_configurable() || key_of(opt) == "help" || key_of(opt) == "config") continue;
    const auto& name = key_of(opt);
    if (opt->get_expected_min() == 0) {  // a flag: written as given
      if (opt->count() > 0) j[name] = true;
      continue;
    }
    auto results = opt->reduced_results();
    if (!results.empty()) {
      if (results.size() == 1) {
        j[name] = value_of(results.front());
      } else {
        j[name] = nlohmann::ordered_json::array();
        for (const auto& r : results) j[name].push_back(value_of(r));
      }
    } else if (default_also && !opt->get_default_str().empty()) {
      j[name] = value_of(opt->get_default_str());
    }
  }
  return j.dump(2) + "\n";
}

std::vector<CLI::ConfigItem> JsonConfig::from_config(std::istream& in) const {
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw CLI::ConversionError("--config: not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object()) throw CLI::ConversionError("--config: the file must hold one JSON object of options");
  std::string sub;
  if (root_) {
    const auto parsed = root_->get_subcommands();
    if (!parsed.empty()) sub = parsed.front()->get_name();
  }
  std::vector<CLI::ConfigItem> items;
  auto text = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  for (auto it = j.begin(); it != j.end(); ++it) {
    CLI::ConfigItem item;
    if (!sub.empty()) item.parents = {sub};
    item.name = it.key();
    const auto& v = it.value();
    if (v.is_object()) throw CLI::ConversionError("--config: '" + it.key() + "' holds an object; options take values");
    if (v.is_boolean()) {
      if (!v.get<bool>()) continue;  // a flag not given
      item.inputs = {"true"};
    } else if (v.is_array()) {
      for (const auto& x : v) item.inputs.push_back(text(x));
    } else {
      item.inputs = {text(v)};
    }
    items.push_back(std::move(item));
  }
  return items;
}

void add_json_config(CLI::App& root, std::vector<std::string> subcommands) {
  root.config_formatter(std::make_shared<JsonConfig>(&root));
  auto* opt = root.set_config("--config", "", "thor train: read options from a JSON file ({\"max-tokens\": 4096, ...}); "
                                              "flags given on the command line win");
  opt->check([&root, subcommands](const std::string&) -> std::string {
    const auto parsed = root.get_subcommands();
    for (const auto& s : subcommands)
      if (!parsed.empty() && parsed.front()->get_name() == s) return "";
    return "--config is read by thor " + subcommands.front() + " only";
  });
  root.allow_config_extras(CLI::config_extras_mode::error);
}

void write_json_config(const CLI::App* cmd, const std::string& path, const std::map<std::string, std::string>& values) {
  auto j = nlohmann::ordered_json::parse(JsonConfig().to_config(cmd, true, false, ""));
  for (const auto& [k, v] : values) j[k] = v;
  const std::string text = j.dump(2) + "\n";
  DurableFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

}  // namespace thor::cli
