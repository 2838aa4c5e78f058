// JSON config files for a subcommand's options (`thor train --config run.json`): keys are
// the long option names without dashes ("max-tokens": 4096, "share-all-embeddings": true,
// "data": "DIR" for the positional), values as on the command line; flags on the command
// line win over the file; an unknown key is an error naming it. write_json_config writes the
// options of a parsed command in the same form, defaults included, so the file re-runs it.
#pragma once
#include <map>
#include <string>

#include <CLI/CLI.hpp>

namespace thor::cli {

class JsonConfig : public CLI::Config {
 public:
  // root: the app whose subcommand (as parsed) the file configures; nullptr for writing only
  explicit JsonConfig(const CLI::App* root = nullptr) : root_(root) {}
  std::string to_config(const CLI::App* app, bool default_also, bool write_description, std::string prefix) const override;
  std::vector<CLI::ConfigItem> from_config(std::istream& in) const override;

 private:
  const CLI::App* root_;
};

// Adds --config FILE to the root app (CLI11 reads config files there, not in subcommands);
// its keys go to the subcommand that was run, which must be one of `subcommands`.
void add_json_config(CLI::App& root, std::vector<std::string> subcommands);

// Writes cmd's options (given ones and defaults) to path as a JSON config, durably;
// `values` replace the written value of those keys (e.g. paths made absolute).
void write_json_config(const CLI::App* cmd, const std::string& path,
                       const std::map<std::string, std::string>& values = {});

}  // namespace thor::cli
