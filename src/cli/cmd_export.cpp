// `thor export`: a THOR checkpoint -> a dense checkpoint that `translate` runs unchanged
// (--format thor), or any checkpoint -> safetensors + config.json + SentencePiece model
// (--format safetensors, train/interop.h). `thor import` reads the latter back.
#include "cli/commands.h"
#include "thor/common/error.h"
#include "thor/train/export.h"
#include "thor/train/interop.h"

namespace thor::cli {

void add_export(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("export", "export a checkpoint: dense (THOR experts fixed or merged) or safetensors");
  static std::string model_path, out_path, expert = "merge", format = "thor";
  cmd->add_option("--model,-m", model_path, "checkpoint")->required();
  auto* expert_opt = cmd->add_option("--expert", expert, "K (keep expert K) or merge (average the experts)")->capture_default_str();
  cmd->add_option("--format", format, "thor (a dense checkpoint) or safetensors (a directory)")
      ->capture_default_str()
      ->check(CLI::IsMember({"thor", "safetensors"}));
  cmd->add_option("--out,-o", out_path, "checkpoint to write (--format thor) or directory (--format safetensors)")->required();
  cmd->callback([&common, expert_opt] {
    apply_common(common);
    if (format == "thor") return export_dense(model_path, expert, out_path);
    // with --expert, a THOR model is made dense first
    export_safetensors(model_path, out_path, expert_opt->count() > 0 ? expert : std::string());
  });
}

void add_import(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("import", "import a safetensors directory (thor export, tools/convert_fairseq.py) as a checkpoint");
  static std::string from, out_path;
  cmd->add_option("--from", from, "directory with model.safetensors, config.json and sentencepiece.model")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out,-o", out_path, "checkpoint to write")->required();
  cmd->callback([&common] {
    apply_common(common);
    import_safetensors(from, out_path);
  });
}

}  // namespace thor::cli
