// `thor report SAVE_DIR [SAVE_DIR ...] --out report.html`: training runs as pictures
// (src/thor/report/report.h).
#include "cli/commands.h"
#include "thor/common/log.h"
#include "thor/report/report.h"

namespace thor::cli {

void add_report(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("report", "plot training runs: one HTML page (or SVG files) from their save dirs' logs");
  static std::vector<std::string> dirs;
  static std::string out = "report.html", format = "html";
  static std::vector<std::string> paces;
  cmd->add_option("dirs", dirs, "save dirs of thor train (several: overlaid)")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--out,-o", out, "the page (html) or a directory (svg)")->capture_default_str();
  cmd->add_option("--format", format, "html (one self-contained page) or svg (one file per chart)")
      ->capture_default_str()
      ->check(CLI::IsMember({"html", "svg"}));
  cmd->add_option("--seconds-per-update", paces,
                  "RUN=S: the pace of run RUN (its save dir's name), measured apart, for the wall-clock chart that "
                  "leaves out pauses (default: the median of its log's seconds per update); repeat per run");
  cmd->callback([&common] {
    apply_common(common);
    std::vector<report::RunLog> runs;
    for (const auto& d : dirs) runs.push_back(report::read_run(d));
    for (const auto& p : paces) report::set_pace(runs, p);
    const auto n = report::write_report(runs, format, out);
    THOR_LOG("report") << runs.size() << " run(s), " << n << " charts -> " << out;
  });
}

}  // namespace thor::cli
