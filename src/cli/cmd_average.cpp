// `thor average --inputs A.pt B.pt ... --out AVG.pt` (or `--inputs SAVE_DIR
// --num-update-checkpoints N`): fairseq's average_checkpoints.py.
#include "cli/commands.h"
#include "thor/common/error.h"
#include "thor/train/average.h"

namespace thor::cli {

void add_average(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("average", "average the parameters of several checkpoints of one model");
  static std::vector<std::string> inputs;
  static std::string out_path;
  static int last_n = 0;
  cmd->add_option("--inputs", inputs, "checkpoints, or one save dir with --num-update-checkpoints")->required();
  cmd->add_option("--num-update-checkpoints", last_n, "average the last N checkpoint_N.pt of the save dir given in --inputs");
  cmd->add_option("--out,-o", out_path, "averaged checkpoint to write")->required();
  cmd->callback([&common] {
    apply_common(common);
    auto files = inputs;
    if (last_n > 0) {
      if (inputs.size() != 1) throw Error("--num-update-checkpoints: give one save dir in --inputs");
      files = last_numbered_checkpoints(inputs.front(), last_n);
    }
    average_checkpoints(files, out_path);
  });
}

}  // namespace thor::cli
