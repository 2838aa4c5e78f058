// `thor shortlist DATA_DIR --out FILE`: a lexical shortlist from prepared training data,
// for `thor translate --shortlist FILE`.
#include <filesystem>

#include "cli/commands.h"
#include "thor/common/log.h"
#include "thor/data/dataset.h"
#include "thor/data/meta.h"
#include "thor/decode/shortlist.h"

namespace thor::cli {

void add_shortlist(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("shortlist", "build a vocabulary shortlist for faster decoding");
  static std::string data_dir, out_path;
  static int64_t per_source = 20, frequent = 100;
  cmd->add_option("data", data_dir, "prepared data directory (thor prepare --destdir)")->required();
  cmd->add_option("--out,-o", out_path, "shortlist file to write")->required();
  cmd->add_option("--per-source", per_source, "candidates kept per source token (Dice of co-occurrence)")
      ->capture_default_str();
  cmd->add_option("--frequent", frequent, "most frequent target tokens always kept")->capture_default_str();
  cmd->callback([&common] {
    apply_common(common);
    auto meta = read_meta(data_dir);
    auto train = Dataset::load((std::filesystem::path(data_dir) / "train.bin").string());
    auto sl = Shortlist::build(train, meta.vocab_size, per_source, frequent);
    sl.save(out_path);
    size_t total = 0;
    for (auto& c : sl.candidates) total += c.size();
    THOR_LOG("shortlist") << out_path << ": " << train.size() << " pairs, vocabulary " << sl.vocab_size << ", "
                          << sl.frequent.size() << " frequent + " << total << " source-token candidates";
  });
}

}  // namespace thor::cli
