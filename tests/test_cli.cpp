// End to end through the real binary: prepare -> train ~20 updates -> translate -> score,
// and one clear error line with a non-zero exit for bad input.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include <gtest/gtest.h>

#include <map>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "thor/ops/gemm.h"
#include "thor/train/checkpoint.h"

namespace fs = std::filesystem;

namespace {

struct Run {
  int code;
  std::string out, err;
};

Run run(const std::string& args, const fs::path& dir) {
  auto out = dir / "stdout.txt", err = dir / "stderr.txt";
  std::string cmd = std::string(THOR_BIN) + " --threads 1 " + args + " > " + out.string() + " 2> " + err.string();
  int status = std::system(cmd.c_str());
  Run r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, "", ""};
  for (auto& l : thor::testing::read_file(out)) r.out += l + "\n";
  for (auto& l : thor::testing::read_file(err)) r.err += l + "\n";
  return r;
}

// dir/data: a toy corpus of 120 training and 6 validation pairs (seeds seed, seed + 1),
// prepared with an 80-piece vocabulary; returns prepare's exit status.
// A small model with two experts in every other layer (the router and its flags follow).
const std::string kSmallExpertModel =
    " --encoder-embed-dim 32 --ffn-dim 64 --encoder-layers 2 --decoder-layers 2 --num-experts 2";

int prepare_small_toy(const fs::path& dir, unsigned seed) {
  thor::testing::make_toy_corpus(dir / "train", 120, seed, "en", "de");
  thor::testing::make_toy_corpus(dir / "valid", 6, seed + 1, "en", "de");
  return run("prepare -s en -t de --trainpref " + (dir / "train").string() + " --validpref " + (dir / "valid").string() +
                 " --destdir " + (dir / "data").string() + " --vocab-size 80",
             dir)
      .code;
}

TEST(Cli, PrepareTrainTranslateScore) {
  auto dir = thor::testing::temp_dir("cli_e2e");
  thor::testing::make_toy_corpus(dir / "train", 300, 21, "en", "de");
  thor::testing::make_toy_corpus(dir / "valid", 15, 22, "en", "de");
  thor::testing::make_toy_corpus(dir / "test", 10, 23, "en", "de");
  auto p = run("prepare -s en -t de --trainpref " + (dir / "train").string() + " --validpref " +
                   (dir / "valid").string() + " --testpref " + (dir / "test").string() + " --destdir " +
                   (dir / "data").string() + " --vocab-size 90",
               dir);
  ASSERT_EQ(p.code, 0) << p.err;
  auto t = run("train " + (dir / "data").string() +
                   " --arch transformer_tiny --encoder-embed-dim 64 --ffn-dim 128 --encoder-layers 1"
                   " --decoder-layers 1 --share-all-embeddings --max-tokens 500 --max-update 20 --lr 2e-3"
                   " --warmup-updates 5 --log-interval 5 --validate-interval-updates 10 --eval-beam 2"
                   " --no-progress --save-dir " + (dir / "ck").string(),
               dir);
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_TRUE(t.out.empty()) << "train must keep stdout clean: " << t.out;
  EXPECT_TRUE(fs::exists(dir / "ck" / "checkpoint_best.pt"));
  auto tr = run("translate --model " + (dir / "ck" / "checkpoint_best.pt").string() + " --beam 3 --input " +
                    (dir / "test.en").string(),
                dir);
  ASSERT_EQ(tr.code, 0) << tr.err;
  thor::testing::write_file(dir / "hyp.de", {});
  {
    std::ofstream h(dir / "hyp.de");
    h << tr.out;
  }
  EXPECT_EQ(thor::testing::read_file(dir / "hyp.de").size(), 10u);
  auto sc = run("score " + (dir / "test.de").string() + " -i " + (dir / "hyp.de").string(), dir);
  ASSERT_EQ(sc.code, 0) << sc.err;
  EXPECT_EQ(sc.out.rfind("BLEU = ", 0), 0u) << sc.out;
  EXPECT_NE(sc.out.find("\nchrF2 = "), std::string::npos) << sc.out;
  // A shortlist from the prepared data decodes every line; one for another vocabulary is refused.
  auto sl = run("shortlist " + (dir / "data").string() + " --per-source 5 --frequent 10 --out " +
                    (dir / "sl.txt").string(),
                dir);
  ASSERT_EQ(sl.code, 0) << sl.err;
  auto ts = run("translate --model " + (dir / "ck" / "checkpoint_best.pt").string() + " --beam 3 --shortlist " +
                    (dir / "sl.txt").string() + " --input " + (dir / "test.en").string(),
                dir);
  ASSERT_EQ(ts.code, 0) << ts.err;
  EXPECT_EQ(std::count(ts.out.begin(), ts.out.end(), '\n'), 10);
  thor::testing::write_file(dir / "sl_other.txt", {"thor-shortlist 1 50", "frequent 4"});
  auto tw = run("translate --model " + (dir / "ck" / "checkpoint_best.pt").string() + " --shortlist " +
                    (dir / "sl_other.txt").string() + " --input " + (dir / "test.en").string(),
                dir);
  EXPECT_EQ(tw.code, 1);
  EXPECT_NE(tw.err.find("--shortlist: built for a vocabulary of 50 tokens"), std::string::npos) << tw.err;
  // Low-precision products decode every line (their numerics are tested in test_ops);
  // auto is bf16 on a CPU with native bf16 products, float32 elsewhere: the same output.
  std::map<std::string, std::string> by_precision = {{"float32", tr.out}};
  for (auto p : {thor::Precision::BFloat16, thor::Precision::Int8}) {
    if (!thor::precision_available(p)) continue;  // a LibTorch without oneDNN's C API (tested in test_ops)
    const auto prec = thor::precision_name(p);
    auto tp = run("translate --device cpu --model " + (dir / "ck" / "checkpoint_best.pt").string() +
                      " --beam 3 --precision " + prec + " --input " + (dir / "test.en").string(),
                  dir);
    ASSERT_EQ(tp.code, 0) << tp.err;
    EXPECT_EQ(std::count(tp.out.begin(), tp.out.end(), '\n'), 10) << prec;
    by_precision[prec] = tp.out;
  }
  const auto chosen = thor::precision_name(thor::auto_precision(torch::kCPU));
  EXPECT_EQ(chosen, thor::cpu_has_native_bf16() && thor::precision_available(thor::Precision::BFloat16) ? "bf16" : "float32");
  auto ta = run("translate --device cpu --model " + (dir / "ck" / "checkpoint_best.pt").string() +
                    " --beam 3 --precision auto --input " + (dir / "test.en").string(),
                dir);
  ASSERT_EQ(ta.code, 0) << ta.err;
  EXPECT_NE(ta.err.find("[precision] auto: " + chosen + " products"), std::string::npos) << ta.err;
  EXPECT_EQ(ta.out, by_precision[chosen]);
  // nbest output format.
  auto nb = run("translate --model " + (dir / "ck" / "checkpoint_last.pt").string() +
                    " --beam 2 --nbest 2 --input " + (dir / "test.en").string(),
                dir);
  ASSERT_EQ(nb.code, 0) << nb.err;
  EXPECT_EQ(std::count(nb.out.begin(), nb.out.end(), '\n'), 20);
  EXPECT_NE(nb.out.find("0 ||| "), std::string::npos);
}

// A gated expert model logs its experts' load but no consistency (THOR's two passes only).
TEST(Cli, SwitchTrainingLogsExpertsWithoutConsistency) {
  auto dir = thor::testing::temp_dir("cli_switch_log");
  ASSERT_EQ(prepare_small_toy(dir, 43), 0);
  auto t = run("train " + (dir / "data").string() + kSmallExpertModel +
                   " --router switch --max-tokens 400 --max-update 4 --log-interval 2"
                   " --validate-interval-updates 0 --no-progress --save-dir " + (dir / "ck").string(),
               dir);
  ASSERT_EQ(t.code, 0) << t.err;
  auto log = thor::testing::read_file(dir / "ck" / "train_log.jsonl");
  ASSERT_FALSE(log.empty());
  auto j = nlohmann::json::parse(log.front());
  EXPECT_EQ(j.at("experts").size(), 2u) << log.front();
  EXPECT_FALSE(j.contains("consistency")) << log.front();
}

TEST(Cli, ThorTrainTranslateSelectAndExport) {
  auto dir = thor::testing::temp_dir("cli_thor");
  thor::testing::make_toy_corpus(dir / "train", 200, 41, "en", "de");
  thor::testing::make_toy_corpus(dir / "valid", 8, 42, "en", "de");
  auto p = run("prepare -s en -t de --trainpref " + (dir / "train").string() + " --validpref " +
                   (dir / "valid").string() + " --destdir " + (dir / "data").string() + " --vocab-size 90",
               dir);
  ASSERT_EQ(p.code, 0) << p.err;
  auto t = run("train " + (dir / "data").string() + kSmallExpertModel +
                   " --router thor --consistency-alpha 1 --max-tokens 400 --max-update 6"
                   " --log-interval 3 --eval-beam 2 --no-progress --workers 2 --save-dir " + (dir / "ck").string(),
               dir);
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.err.find("two stochastic passes"), std::string::npos) << t.err;
  EXPECT_NE(t.err.find("2 workers"), std::string::npos) << t.err;
  EXPECT_NE(t.err.find("[experts] load | encoder.0"), std::string::npos) << t.err;
  auto log = thor::testing::read_file(dir / "ck" / "train_log.jsonl");
  auto j = nlohmann::json::parse(log.front());
  EXPECT_TRUE(j.contains("consistency"));
  EXPECT_EQ(j["experts"].size(), 2u);
  auto model = (dir / "ck" / "checkpoint_last.pt").string();
  auto input = (dir / "valid.en").string();
  std::map<std::string, std::string> out;
  for (std::string sel : {"sentence", "token", "fixed:0", "fixed:1", "ensemble", "merge"}) {
    auto r = run("translate --model " + model + " --beam 2 --expert-select " + sel + " --input " + input, dir);
    ASSERT_EQ(r.code, 0) << sel << ": " << r.err;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 8) << sel;
    out[sel] = r.out;
  }
  for (std::string k : {"0", "merge"}) {
    auto e = run("export --model " + model + " --expert " + k + " --out " + (dir / ("dense" + k + ".pt")).string(), dir);
    ASSERT_EQ(e.code, 0) << e.err;
    auto r = run("translate --model " + (dir / ("dense" + k + ".pt")).string() + " --beam 2 --input " + input, dir);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, out[k == "merge" ? "merge" : "fixed:0"]) << k;
  }
  auto bad = run("translate --model " + model + " --expert-select fixed:5 --input " + input, dir);
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("the model has 2 experts"), std::string::npos) << bad.err;
  auto badsel = run("translate --model " + model + " --expert-select sometimes --input " + input, dir);
  EXPECT_NE(badsel.err.find("--expert-select: expected"), std::string::npos) << badsel.err;
}

TEST(Cli, BadInputGivesOneClearErrorLine) {
  auto dir = thor::testing::temp_dir("cli_errors");
  thor::testing::write_file(dir / "train.en", {"a", "b"});
  thor::testing::write_file(dir / "train.de", {"a"});
  auto r = run("prepare -s en -t de --trainpref " + (dir / "train").string() + " --validpref " +
                   (dir / "train").string() + " --destdir " + (dir / "data").string(),
               dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("thor: error: line counts differ: " + (dir / "train.en").string() + " has 2 lines"),
            std::string::npos)
      << r.err;
  auto m = run("translate --model " + (dir / "nope.pt").string(), dir);
  EXPECT_EQ(m.code, 1);
  EXPECT_NE(m.err.find("nope.pt: no such checkpoint"), std::string::npos) << m.err;
  auto s = run("score " + (dir / "train.en").string() + " -i " + (dir / "train.de").string(), dir);
  EXPECT_EQ(s.code, 1);
  EXPECT_NE(s.err.find("has 1 lines but"), std::string::npos) << s.err;
  auto u = run("train " + (dir / "data").string() + " --arch nosuch", dir);
  EXPECT_NE(u.code, 0);
  EXPECT_NE(u.err.find("--arch: unknown architecture 'nosuch'"), std::string::npos) << u.err;
  auto pr = run("translate --model " + (dir / "nope.pt").string() + " --precision fp16", dir);
  EXPECT_EQ(pr.code, 1);
  EXPECT_NE(pr.err.find("thor: error: --precision: unknown 'fp16'"), std::string::npos) << pr.err;
  auto pt = run("train " + (dir / "data").string() + " --precision int8 --device cpu", dir);
  EXPECT_EQ(pt.code, 1);
  EXPECT_NE(pt.err.find("thor: error: --precision int8 is for inference"), std::string::npos) << pt.err;
  auto w = run("train " + (dir / "data").string() + " --workers -1", dir);
  EXPECT_EQ(w.code, 1);
  EXPECT_NE(w.err.find("thor: error: --workers must be >= 0"), std::string::npos) << w.err;
}

// thor train --config FILE: the save dir's train_config.json re-runs the run (the same
// parameters bit for bit); flags given win over the file; unknown keys and bad JSON are one
// clear line.
TEST(Cli, ConfigFileReproducesARunFromItsDirectory) {
  auto dir = thor::testing::temp_dir("cli_config");
  ASSERT_EQ(prepare_small_toy(dir, 81), 0);
  auto a = run("train " + (dir / "data").string() +
                   " --encoder-embed-dim 16 --ffn-dim 32 --encoder-layers 1 --decoder-layers 1 --attention-heads 2"
                   " --share-all-embeddings --dropout 0.2 --max-tokens 300 --max-update 5 --lr 2e-3 --no-eval-bleu"
                   " --no-progress --workers 1 --save-dir " + (dir / "a").string(),
               dir);
  ASSERT_EQ(a.code, 0) << a.err;
  const auto cfg_path = dir / "a" / "train_config.json";
  std::ifstream cfg_in(cfg_path);
  auto cfg = nlohmann::json::parse(cfg_in);
  EXPECT_EQ(cfg.at("max-update"), 5);
  EXPECT_EQ(cfg.at("dropout"), 0.2);
  EXPECT_EQ(cfg.at("share-all-embeddings"), true);
  EXPECT_EQ(cfg.at("label-smoothing"), 0.1);  // defaults too
  EXPECT_EQ(cfg.at("data"), fs::absolute(dir / "data").string());
  // the same run again from the file alone, into another directory
  auto b = run("train --config " + cfg_path.string() + " --save-dir " + (dir / "b").string(), dir);
  ASSERT_EQ(b.code, 0) << b.err;
  auto ma = thor::load_model((dir / "a" / "checkpoint_last.pt").string(), torch::kCPU);
  auto mb = thor::load_model((dir / "b" / "checkpoint_last.pt").string(), torch::kCPU);
  EXPECT_EQ(thor::parameter_digest(ma.model), thor::parameter_digest(mb.model));
  EXPECT_EQ(mb.train_state.at("position").at("num_updates"), 5);
  // a flag on the command line wins over the file
  auto c = run("train --config " + cfg_path.string() + " --max-update 2 --save-dir " + (dir / "c").string(), dir);
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_EQ(thor::load_model((dir / "c" / "checkpoint_last.pt").string(), torch::kCPU).train_state.at("position").at("num_updates"), 2);
  thor::testing::write_file(dir / "typo.json", {"{\"max-tokns\": 300}"});
  auto t = run("train " + (dir / "data").string() + " --config " + (dir / "typo.json").string(), dir);
  EXPECT_EQ(t.code, 2);
  EXPECT_EQ(t.err, "thor: error: --config: unknown option 'max-tokns' (did you mean --max-tokens?)\n");
  thor::testing::write_file(dir / "broken.json", {"{\"max-tokens\": "});
  auto j = run("train " + (dir / "data").string() + " --config " + (dir / "broken.json").string(), dir);
  EXPECT_EQ(j.code, 2);
  EXPECT_NE(j.err.find("thor: error: --config: not valid JSON"), std::string::npos) << j.err;
  auto other = run("score x -i y --config " + (dir / "broken.json").string(), dir);
  EXPECT_NE(other.code, 0);
}

// On a terminal (a pseudo-terminal from script(1)) train and translate draw a progress line
// with the rate and ETA; off it, no carriage returns: one log line per interval.
TEST(Cli, ProgressOnATerminalOnly) {
  auto dir = thor::testing::temp_dir("cli_progress");
  thor::testing::make_toy_corpus(dir / "train", 100, 91, "en", "de");
  thor::testing::make_toy_corpus(dir / "valid", 4, 92, "en", "de");
  thor::testing::make_toy_corpus(dir / "long", 300, 93, "en", "de");
  ASSERT_EQ(run("prepare -s en -t de --trainpref " + (dir / "train").string() + " --validpref " + (dir / "valid").string() +
                    " --destdir " + (dir / "data").string() + " --vocab-size 70",
                dir)
                .code,
            0);
  const std::string train = std::string(THOR_BIN) + " --threads 1 train " + (dir / "data").string() +
                            " --encoder-embed-dim 16 --ffn-dim 32 --encoder-layers 1 --decoder-layers 1 --attention-heads 2"
                            " --max-tokens 200 --max-update 30 --log-interval 10 --no-eval-bleu --save-dir ";
  const auto tty_out = dir / "tty.txt";
  ASSERT_EQ(std::system(("script -qec '" + train + (dir / "a").string() + "' /dev/null > " + tty_out.string()).c_str()), 0);
  std::ifstream in(tty_out);
  const std::string shown((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(shown.find("[train] 100% 30/30 updates"), std::string::npos) << shown;
  EXPECT_NE(shown.find("ETA "), std::string::npos) << shown;
  EXPECT_NE(shown.find(" tok/s"), std::string::npos) << shown;
  const std::string translate = std::string(THOR_BIN) + " --threads 1 translate --beam 1 --model " +
                                (dir / "a" / "checkpoint_last.pt").string() + " --input " + (dir / "long.en").string();
  ASSERT_EQ(std::system(("script -qec '" + translate + " > /dev/null' /dev/null > " + tty_out.string()).c_str()), 0);
  std::ifstream in2(tty_out);
  const std::string shown2((std::istreambuf_iterator<char>(in2)), {});
  EXPECT_NE(shown2.find("[translate] 100% 300/300 sentences"), std::string::npos) << shown2;
  // not a terminal: no progress line
  auto quiet = run("train " + (dir / "data").string() +
                       " --encoder-embed-dim 16 --ffn-dim 32 --encoder-layers 1 --decoder-layers 1 --attention-heads 2"
                       " --max-tokens 200 --max-update 30 --log-interval 10 --no-eval-bleu --save-dir " + (dir / "b").string(),
                   dir);
  ASSERT_EQ(quiet.code, 0);
  EXPECT_EQ(quiet.err.find('\r'), std::string::npos);
  EXPECT_EQ(std::count(quiet.err.begin(), quiet.err.end(), '\n') >= 3, true);
}

// thor info names each --precision with its measured rate on this CPU, and what auto picks.
TEST(Cli, InfoNamesThePrecisionsThisCpuRuns) {
  auto dir = thor::testing::temp_dir("cli_info");
  auto r = run("info --device cpu --size 64", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("precision float32 64x64x64: "), std::string::npos) << r.out;
  for (auto p : {thor::Precision::BFloat16, thor::Precision::Int8}) {
    const auto name = thor::precision_name(p);
    const auto expected = thor::precision_available(p) ? "precision " + name + " 64x64x64: " : "precision " + name + ": not available";
    EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
  }
  EXPECT_NE(r.out.find("precision auto: " + thor::precision_name(thor::auto_precision(torch::kCPU)) + "\n"), std::string::npos)
      << r.out;
}

}  // namespace

// Multilingual end to end: prepare --lang-pairs, train, translate --target-lang (required
// for such a model, checked against its languages), score --data with one row per pair.
TEST(Cli, MultilingualPrepareTrainTranslateScoreByPair) {
  auto dir = thor::testing::temp_dir("cli_multi");
  thor::testing::make_multiway_corpus(dir / "train", 200, 41, {"de", "fr"});
  thor::testing::make_multiway_corpus(dir / "valid", 8, 42, {"de", "fr"});
  thor::testing::make_multiway_corpus(dir / "test", 6, 43, {"de", "fr"});
  auto p = run("prepare --lang-pairs en-de,en-fr --trainpref " + (dir / "train").string() + " --validpref " +
                   (dir / "valid").string() + " --testpref " + (dir / "test").string() + " --destdir " +
                   (dir / "data").string() + " --vocab-size 100",
               dir);
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_NE(p.err.find("2 language pairs (train/valid): en-de 200/8 en-fr 200/8"), std::string::npos) << p.err;
  auto both = run("prepare --lang-pairs en-de -s en -t de --trainpref " + (dir / "train").string() +
                      " --validpref " + (dir / "valid").string() + " --destdir " + (dir / "d2").string(),
                  dir);
  EXPECT_EQ(both.code, 1);
  EXPECT_NE(both.err.find("not both"), std::string::npos) << both.err;
  auto t = run("train " + (dir / "data").string() +
                   " --encoder-embed-dim 32 --ffn-dim 64 --encoder-layers 1 --decoder-layers 1"
                   " --share-all-embeddings --max-tokens 400 --max-update 4 --lr 2e-3 --warmup-updates 2"
                   " --sampling-temperature 1.5 --eval-beam 1 --no-progress --save-dir " + (dir / "ck").string(),
               dir);
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.err.find("sampling the language pairs at temperature 1.5"), std::string::npos) << t.err;
  const auto model = (dir / "ck" / "checkpoint_last.pt").string();
  auto info = run("info --model " + model, dir);
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_NE(info.out.find("updates: 4\n"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("languages: en -> de,fr\n"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("parameter digest: "), std::string::npos) << info.out;
  auto none = run("translate --model " + model + " --input " + (dir / "test.en").string(), dir);
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("this model is multilingual (target languages de,fr): give --target-lang"),
            std::string::npos) << none.err;
  auto wrong = run("translate --model " + model + " --target-lang cs --input " + (dir / "test.en").string(), dir);
  EXPECT_EQ(wrong.code, 1);
  EXPECT_NE(wrong.err.find("--target-lang cs: this model translates into de,fr"), std::string::npos) << wrong.err;
  for (auto lang : {"de", "fr"}) {
    auto tr = run("translate --model " + model + " --beam 2 --target-lang " + lang + " --input " +
                      (dir / "test.en").string(),
                  dir);
    ASSERT_EQ(tr.code, 0) << tr.err;
    std::ofstream(dir / ("hyp." + std::string(lang))) << tr.out;
  }
  // the references themselves score 100 on their pair; a system's rows, then the mean
  fs::copy_file(dir / "data" / "test.en-de.raw.de", dir / "ref.de");
  fs::copy_file(dir / "data" / "test.en-fr.raw.fr", dir / "ref.fr");
  auto sc = run("score --data " + (dir / "data").string() + " --split test -i " + (dir / "ref.{tgt}").string(), dir);
  ASSERT_EQ(sc.code, 0) << sc.err;
  EXPECT_NE(sc.out.find("en-de\t100.00\t100.00\t6\n"), std::string::npos) << sc.out;
  EXPECT_NE(sc.out.find("en-fr\t100.00\t100.00\t6\n"), std::string::npos) << sc.out;
  EXPECT_NE(sc.out.find("mean\t100.00"), std::string::npos) << sc.out;
  auto two = run("score --data " + (dir / "data").string() + " -i " + (dir / "ref.{tgt}").string() + " -i " +
                     (dir / "hyp.{tgt}").string() + " --paired-bs-n 100",
                 dir);
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_NE(two.out.find("en-fr\t" + (dir / "ref.fr").string() + "\t100.00"), std::string::npos) << two.out;
  EXPECT_NE(two.out.find("en-de\t" + (dir / "hyp.de").string() + "\t"), std::string::npos) << two.out;
  auto nopat = run("score --data " + (dir / "data").string() + " -i " + (dir / "hyp.de").string(), dir);
  EXPECT_EQ(nopat.code, 1);
  EXPECT_NE(nopat.err.find("names no {pair}, {src} or {tgt}"), std::string::npos) << nopat.err;
}

// The bad-input catalogue (issue 15, item 6), through the binary: each case one clear
// error line (or a warning) and never a lost or shifted line.
namespace {

fs::path catalogue_data(const fs::path& dir) {
  thor::testing::make_toy_corpus(dir / "train", 200, 61, "en", "de");
  thor::testing::make_toy_corpus(dir / "valid", 8, 62, "en", "de");
  return dir / "train";
}

std::string prepare_args(const fs::path& dir, const fs::path& trainpref, const std::string& dest) {
  return "prepare -s en -t de --trainpref " + trainpref.string() + " --validpref " + (dir / "valid").string() +
         " --destdir " + (dir / dest).string() + " --vocab-size 90";
}

std::string bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(BadInput, AOneMegabyteLineIsReportedAndFilteredOut) {
  auto dir = thor::testing::temp_dir("bad_1mb");
  auto pref = catalogue_data(dir);
  {
    std::ofstream en(pref.string() + ".en", std::ios::app), de(pref.string() + ".de", std::ios::app);
    en << std::string(1 << 20, 'a') << "\n";
    de << "xao.\n";
  }
  auto r = run(prepare_args(dir, pref, "data"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("train: 200 pairs kept, 1 removed"), std::string::npos) << r.err;
}

TEST(BadInput, ABinaryFileIsRefusedNamingIt) {
  auto dir = thor::testing::temp_dir("bad_binary");
  catalogue_data(dir);
  std::string junk;
  for (int i = 0; i < 4000; ++i) junk += static_cast<char>((i * 131 + 7) % 256 | 0x80);
  for (auto side : {"bin.en", "bin.de"}) {
    std::ofstream out(dir / side, std::ios::binary);
    for (int l = 0; l < 20; ++l) out << junk.substr(static_cast<size_t>(l) * 100, 100) << "\n";
  }
  auto r = run(prepare_args(dir, dir / "bin", "data"), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("thor: error: " + (dir / "bin.en").string() + ": no usable training pairs"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("(20 with invalid UTF-8, 0 with an empty side)"), std::string::npos) << r.err;
}

TEST(BadInput, CrlfLineEndsPrepareAsLf) {
  auto dir = thor::testing::temp_dir("bad_crlf");
  auto pref = catalogue_data(dir);
  for (auto lang : {"en", "de"}) {
    std::ofstream out(dir / ("crlf." + std::string(lang)), std::ios::binary);
    for (auto& l : thor::testing::read_file(pref.string() + "." + lang)) out << l << "\r\n";
  }
  ASSERT_EQ(run(prepare_args(dir, pref, "lf"), dir).code, 0);
  ASSERT_EQ(run(prepare_args(dir, dir / "crlf", "crlf"), dir).code, 0);
  EXPECT_EQ(bytes_of(dir / "lf" / "train.bin"), bytes_of(dir / "crlf" / "train.bin"));
}

TEST(BadInput, DataDirsOfANewerFormatOrHalfWrittenAreRefused) {
  auto dir = thor::testing::temp_dir("bad_datadir");
  auto pref = catalogue_data(dir);
  ASSERT_EQ(run(prepare_args(dir, pref, "data"), dir).code, 0);
  fs::copy(dir / "data", dir / "newer", fs::copy_options::recursive);
  auto meta = nlohmann::json::parse(bytes_of(dir / "newer" / "meta.json"));
  meta["format"] = "thor-data-9";
  std::ofstream(dir / "newer" / "meta.json") << meta.dump();
  auto r = run("train " + (dir / "newer").string() + " --max-update 1 --save-dir " + (dir / "ck").string(), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("meta.json: written by a newer thor (dataset format 9; this thor reads 1)"), std::string::npos)
      << r.err;
  fs::copy(dir / "data", dir / "half", fs::copy_options::recursive);
  fs::remove(dir / "half" / "train.bin");
  auto h = run("train " + (dir / "half").string() + " --max-update 1 --save-dir " + (dir / "ck2").string(), dir);
  EXPECT_EQ(h.code, 1);
  EXPECT_NE(h.err.find("train.bin"), std::string::npos) << h.err;
}

TEST(BadInput, AMisspeltOptionGetsTheNearestOne) {
  auto dir = thor::testing::temp_dir("bad_option");
  auto r = run("train data --max-tokn 300", dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--max-tokn"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(did you mean --max-tokens?)"), std::string::npos) << r.err;
  auto t = run("translate --model x.pt --beem 4", dir);
  EXPECT_NE(t.err.find("(did you mean --beam?)"), std::string::npos) << t.err;
}

// A checkpoint resumed on data of another vocabulary, and translate's odd lines: empty lines
// give empty lines, over-long and invalid UTF-8 lines are warned about, the count is kept.
TEST(BadInput, VocabularyMismatchAndTranslatesOddLines) {
  auto dir = thor::testing::temp_dir("bad_vocab");
  auto pref = catalogue_data(dir);
  ASSERT_EQ(run(prepare_args(dir, pref, "data"), dir).code, 0);
  thor::testing::make_toy_corpus(dir / "other", 200, 63, "en", "de");
  ASSERT_EQ(run("prepare -s en -t de --trainpref " + (dir / "other").string() + " --validpref " +
                    (dir / "valid").string() + " --destdir " + (dir / "data2").string() + " --vocab-size 70",
                dir)
                .code,
            0);
  const std::string model_flags =
      " --encoder-embed-dim 32 --ffn-dim 64 --encoder-layers 1 --decoder-layers 1 --attention-heads 2"
      " --share-all-embeddings --max-tokens 300 --no-eval-bleu --no-progress --save-dir " + (dir / "ck").string();
  ASSERT_EQ(run("train " + (dir / "data").string() + " --max-update 2" + model_flags, dir).code, 0);
  auto r = run("train " + (dir / "data2").string() + " --max-update 4 --resume" + model_flags, dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("was trained with another vocabulary"), std::string::npos) << r.err;
  {
    std::ofstream in(dir / "odd.en", std::ios::binary);
    in << "red dog.\n\n" << std::string(3000, 'b') << " x\nbad \xff\xfe bytes.\n   \nend.\n";
  }
  auto t = run("translate --beam 1 --model " + (dir / "ck" / "checkpoint_last.pt").string() + " --input " +
                   (dir / "odd.en").string(),
               dir);
  ASSERT_EQ(t.code, 0) << t.err;
  std::vector<std::string> out;
  std::istringstream lines(t.out);
  for (std::string l; std::getline(lines, l);) out.push_back(l);
  ASSERT_EQ(out.size(), 6u) << t.out;
  EXPECT_EQ(out[1], "");
  EXPECT_EQ(out[4], "");
  EXPECT_NE(t.err.find("1 input line(s) with invalid UTF-8 (the first: line 4)"), std::string::npos) << t.err;
  EXPECT_NE(t.err.find("source positions (the first: line 3): truncated"), std::string::npos) << t.err;
}

// A run killed after logging updates it had not saved yet is resumed from its checkpoint and
// logs those updates again: their old lines are dropped, so every update is in the log once.
TEST(Cli, ResumeDropsTheLogLinesOfUpdatesItRepeats) {
  auto dir = thor::testing::temp_dir("cli_resume_log");
  ASSERT_EQ(prepare_small_toy(dir, 61), 0);
  const std::string flags = " --encoder-embed-dim 16 --ffn-dim 32 --attention-heads 2 --encoder-layers 1 --decoder-layers 1"
                            " --max-tokens 300 --log-interval 1 --validate-interval-updates 2 --save-interval-updates 2"
                            " --no-eval-bleu --no-progress --resume --save-dir " + (dir / "ck").string();
  auto a = run("train " + (dir / "data").string() + " --max-update 4" + flags, dir);
  ASSERT_EQ(a.code, 0) << a.err;
  {  // what a run killed at update 6, after its save at 4, leaves in the log
    std::ofstream log(dir / "ck" / "train_log.jsonl", std::ios::app);
    log << "{\"update\":5,\"loss\":999}\n{\"update\":6,\"loss\":999,\"valid_loss\":999}\n";
  }
  auto b = run("train " + (dir / "data").string() + " --max-update 6" + flags, dir);
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_NE(b.err.find("lines of updates after 4 dropped"), std::string::npos) << b.err;
  std::vector<int64_t> trained;
  for (const auto& line : thor::testing::read_file(dir / "ck" / "train_log.jsonl")) {
    auto j = nlohmann::json::parse(line);
    EXPECT_NE(j.value("loss", 0.0), 999.0) << line;
    if (j.contains("loss") && !j.contains("valid_loss")) trained.push_back(j["update"].get<int64_t>());
  }
  EXPECT_EQ(trained, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
}
