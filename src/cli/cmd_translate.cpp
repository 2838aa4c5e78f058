// `thor translate --model PATH`: batched beam search; input from stdin or --input,
// detokenised translations on stdout in input order.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/decoding.h"
#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/common/op_profile.h"
#include "thor/common/progress.h"
#include "thor/common/runtime.h"
#include "thor/common/stop_signals.h"
#include "thor/data/corpus.h"
#include "thor/decode/translator.h"
#include "thor/ops/gemm.h"
#include "thor/train/checkpoint.h"

namespace thor::cli {

void add_translate(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("translate", "translate text with a trained checkpoint");
  static DecodingSettings ds;
  static std::string input;
  add_decoding_options(cmd, ds);
  auto& o = ds.decode;
  cmd->add_option("--input,-i", input, "input file (default: stdin)");
  cmd->add_option("--nbest", o.search.nbest, "hypotheses per sentence (> 1: 'i ||| text ||| score')")->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "sentences per batch")->capture_default_str();
  static std::string target_lang;
  cmd->add_option("--target-lang,-t", target_lang,
                  "target language of a multilingual model (puts its tag <2LANG> before every source)");
  static bool profile = false;
  cmd->add_flag("--profile", profile, "time decoding per operation class (table on stderr)");
  cmd->callback([&common] {
    apply_common(common);
    if (ds.decode.batch_size < 1) throw Error("--batch-size must be >= 1");
    auto dm = load_for_decoding(ds);
    auto& lm = dm.lm;
    auto& o = dm.decode;
    const auto dev = dm.device;
    o.source_prefix = target_lang_prefix(lm.train_state.value("meta", nlohmann::json()), lm.vocab, target_lang);
    // SIGTERM / SIGINT: stop reading, finish the batches being decoded, write the input's
    // longest translated prefix and exit non-zero (a second signal ends the process at once)
    StopSignals signals;
    o.stop = [] { return StopSignals::requested() != 0; };
    auto lines = read_lines(input.empty() ? "/dev/stdin" : input, [] { return StopSignals::requested() != 0; });
    if (StopSignals::requested())
      throw Error(std::string("translate: stopped by ") + signal_name(StopSignals::requested()) +
                  " while reading the input; nothing translated");
    THOR_LOG("translate") << lines.size() << " sentences, beam " << o.search.beam << ", " << dev;
    auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<OpProfile> prof;
    if (profile) {
      prof = std::make_unique<OpProfile>();
      o.workers = 1;  // the profile times the operations of one thread
    }
    // a progress line on a terminal for long inputs
    std::unique_ptr<Progress> bar;
    if (Progress::stderr_is_terminal() && lines.size() >= 200) {
      bar = std::make_unique<Progress>("translate", static_cast<int64_t>(lines.size()), "sentences", true);
      o.progress = [&bar](int64_t n) { bar->update(n); };
    }
    auto out = translate_lines(lm.model, lm.vocab, lines, o, dev);
    if (bar) bar->finish();
    if (prof) {
      prof->stop();
      THOR_LOG("profile") << prof->wall_s() << " s\n" << prof->table();
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t tokens = 0;
    for (auto& t : out) tokens += t.empty() ? 0 : t.front().length;
    // One machine-readable line (bench/ reads it): decoding time without model loading.
    THOR_LOG("translate") << "decoded " << lines.size() << " sentences, " << tokens << " target tokens in " << secs
                          << " s: " << lines.size() / std::max(secs, 1e-9) << " sentences/s, "
                          << tokens / std::max(secs, 1e-9) << " target tokens/s";
    size_t done = 0;  // the lines before the first one a stop left untranslated
    while (done < out.size() && !out[done].empty()) ++done;
    for (size_t i = 0; i < done; ++i) {
      if (o.search.nbest == 1) {
        std::printf("%s\n", out[i].front().text.c_str());
      } else {
        for (auto& t : out[i]) std::printf("%zu ||| %s ||| %.4f\n", i, t.text.c_str(), t.score);
      }
    }
    std::fflush(stdout);
    if (done < out.size()) {
      size_t translated = 0;
      for (auto& t : out) translated += !t.empty();
      throw Error(std::string("translate: stopped by ") + signal_name(StopSignals::requested()) + ": wrote the first " +
                  std::to_string(done) + " of " + std::to_string(out.size()) + " translations (" +
                  std::to_string(translated) + " decoded); continue from input line " + std::to_string(done + 1));
    }
  });
}

}  // namespace thor::cli
