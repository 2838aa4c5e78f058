// thor: one binary, subcommands info | prepare | train | translate | score | export | shortlist | average.
// Errors from the library arrive here as exceptions: one line on stderr, exit code 1.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/common/runtime.h"

namespace thor::cli {
void apply_common(const Common& common) {
  thor::runtime::set_threads(common.threads);
  if (common.quiet) thor::log_level() = 0;
}
}  // namespace thor::cli

int main(int argc, char** argv) {
  thor::runtime::ensure_fast_blas(argc, argv);
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
  try {
    app.parse(argc, argv);
    // results go to stdout: a full disk or a closed pipe there is an error, not a silent loss
    if (std::fflush(stdout) != 0 || std::ferror(stdout))
      throw thor::Error(std::string("cannot write the results to stdout: ") + std::strerror(errno));
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
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
