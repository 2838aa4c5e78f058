// `thor export`: a THOR checkpoint -> a dense checkpoint that `translate` runs unchanged.
#include "cli/commands.h"
#include "thor/train/export.h"

namespace thor::cli {

void add_export(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("export", "turn a stochastic-expert checkpoint into a dense one");
  static std::string model_path, out_path, expert = "merge";
  cmd->add_option("--model,-m", model_path, "THOR checkpoint")->required();
  cmd->add_option("--expert", expert, "K (keep expert K) or merge (average the experts)")->capture_default_str();
  cmd->add_option("--out,-o", out_path, "dense checkpoint to write")->required();
  cmd->callback([&common] {
    apply_common(common);
    export_dense(model_path, expert, out_path);
  });
}

}  // namespace thor::cli
