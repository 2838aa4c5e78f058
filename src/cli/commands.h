// One function per subcommand: each adds its options to the app and sets the callback.
#pragma once
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace thor::cli {

struct Common {
  int threads = 0;  // 0 = all cores
  bool quiet = false;
  std::vector<std::string> argv;  // the command line as given (a launcher re-runs it per rank)
};

void add_info(CLI::App& app, Common& common);
void add_prepare(CLI::App& app, Common& common);
void add_train(CLI::App& app, Common& common);
void add_translate(CLI::App& app, Common& common);
void add_score(CLI::App& app, Common& common);
void add_export(CLI::App& app, Common& common);
void add_shortlist(CLI::App& app, Common& common);
void add_average(CLI::App& app, Common& common);
void add_serve(CLI::App& app, Common& common);
void add_import(CLI::App& app, Common& common);
void add_report(CLI::App& app, Common& common);

// Applies --threads / --quiet; called at the start of every subcommand.
void apply_common(const Common& common);

}  // namespace thor::cli
