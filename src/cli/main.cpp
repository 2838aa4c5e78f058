// thor: one binary, subcommands info | prepare | train | translate | score | export | shortlist | average | serve | import | report.
// Errors from the library arrive here as exceptions: one line on stderr, exit code 1.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/config_file.h"
#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/common/runtime.h"
#include "thor/common/stop_signals.h"

namespace thor::cli {
void apply_common(const Common& common) {
  thor::runtime::set_threads(common.threads);
  if (common.quiet) thor::log_level() = 0;
}
}  // namespace thor::cli

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean --max-tokens?)" for the first unexpected --option of `extras` closest to an
// option of the command that was run (or of thor itself); "" when none is close.
std::string nearest_option(CLI::App& app, const std::vector<std::string>& extras) {
  std::vector<CLI::App*> apps = {&app};
  for (auto* sub : app.get_subcommands()) apps.push_back(sub);
  for (const auto& arg : extras) {
    if (arg.rfind("--", 0) != 0) continue;
    const std::string given = arg.substr(0, arg.find('='));
    std::string best;
    size_t best_d = std::max<size_t>(3, given.size() / 3) + 1;
    for (auto* a : apps)
      for (const auto* opt : a->get_options())
        for (const auto& name : opt->get_lnames()) {
          const size_t d = edit_distance(given, "--" + name);
          if (d < best_d) best_d = d, best = "--" + name;
        }
    if (!best.empty()) return " (did you mean " + best + "?)";
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  thor::runtime::ensure_fast_blas(argc, argv);
  // before any thread starts: SIGINT / SIGTERM go to one waiting thread, never to a handler
  // on a thread that computes (stop_signals.h)
  thor::route_stop_signals();
  thor::runtime::tune_allocator();
  CLI::App app{"thor: sparsely activated Transformer translation with stochastic experts"};
  app.require_subcommand(1);
  app.fallthrough();  // --threads/--quiet also accepted after the subcommand
  thor::cli::Common common;
  common.argv.assign(argv, argv + argc);
  app.add_option("--threads", common.threads, "intra-op CPU threads (default: all cores)");
  app.add_flag("--quiet", common.quiet, "only warnings and errors on stderr");
  thor::cli::add_info(app, common);
  thor::cli::add_prepare(app, common);
  thor::cli::add_train(app, common);
  thor::cli::add_translate(app, common);
  thor::cli::add_score(app, common);
  thor::cli::add_export(app, common);
  thor::cli::add_shortlist(app, common);
  thor::cli::add_average(app, common);
  thor::cli::add_serve(app, common);
  thor::cli::add_import(app, common);
  thor::cli::add_report(app, common);
  thor::cli::add_json_config(app, {"train"});
  try {
    app.parse(argc, argv);
    // results go to stdout: a full disk or a closed pipe there is an error, not a silent loss
    if (std::fflush(stdout) != 0 || std::ferror(stdout))
      throw thor::Error(std::string("cannot write the results to stdout: ") + std::strerror(errno));
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ExtrasError& e) {
    // "The following argument(s) were not expected: --max-tokn 300"
    std::vector<std::string> extras;
    const std::string msg = e.what();
    std::istringstream words(msg.substr(msg.find(':') == std::string::npos ? 0 : msg.find(':') + 1));
    for (std::string w; words >> w;) extras.push_back(w);
    std::cerr << "thor: error: " << e.what() << nearest_option(app, extras) << "\n";
    return 2;
  } catch (const CLI::ConfigError& e) {
    // "INI was not able to parse train.max-tokns": a key of --config no option has
    std::string msg = e.what();
    const std::string lead = "was not able to parse ";
    const auto at = msg.find(lead);
    if (at != std::string::npos) {
      std::string key = msg.substr(at + lead.size());
      if (key.find('.') != std::string::npos) key = key.substr(key.rfind('.') + 1);
      msg = "--config: unknown option '" + key + "'" + nearest_option(app, {"--" + key});
    }
    std::cerr << "thor: error: " << msg << "\n";
    return 2;
  } catch (const CLI::ParseError& e) {
    std::cerr << "thor: error: " << e.what() << "\n";
    return e.get_exit_code() == 0 ? 0 : 2;
  } catch (const thor::Error& e) {
    std::cerr << "thor: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "thor: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "thor: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
