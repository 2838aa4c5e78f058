// The converged study's scripts (experiments/converged.sh, converged_eval.sh,
// converged_pace.sh) end to end, on a toy corpus laid out as Multi30k is and a toy model
// (MODEL_FLAGS): a study trained in one call and the same study cut into chunks and resumed
// by later calls give the same table, byte for byte; a study's MAX_UPDATE can be raised after
// it finished; the pace measured apart reaches the table and the report's wall-clock chart;
// runs kept in the repository (KEEP) let a machine that lost the runs' folder remake the table
// and go on with the study; the multilingual study (LANG_PAIRS) gets a table per pair and one
// of their mean.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "fixtures.h"

namespace fs = std::filesystem;
using thor::testing::read_file;
using thor::testing::sh;
using thor::testing::slurp;

namespace {

std::string study_env() {
  return std::string("THOR_BIN=") + THOR_BIN +
         " SYSTEMS='dense thor2-a1' SEEDS=1 WARMUP=4 INTERVAL=4 VOCAB=70 MAX_TOKENS=300"
         " MODEL_FLAGS='--encoder-embed-dim 16 --ffn-dim 32 --encoder-layers 2 --decoder-layers 2 --attention-heads 2' ";
}

int run_script(const std::string& env, const std::string& script, const fs::path& data, const fs::path& out) {
  return sh(study_env() + env + " bash " + std::string(THOR_SOURCE_DIR) + "/experiments/" + script + " " + data.string() +
            " " + out.string() + " > " + (out.string() + "." + script + ".out") + " 2> " +
            (out.string() + "." + script + ".err"));
}

// the last update a run's log reached
int last_update(const fs::path& run) {
  int u = 0;
  for (const auto& line : read_file(run / "train_log.jsonl")) u = std::max(u, nlohmann::json::parse(line).value("update", 0));
  return u;
}

// a run's validation lines without their clock
std::vector<nlohmann::json> validations(const fs::path& run) {
  std::vector<nlohmann::json> out;
  for (const auto& line : read_file(run / "train_log.jsonl")) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("valid_loss")) continue;
    j.erase("elapsed_s");
    out.push_back(j);
  }
  return out;
}

// a toy corpus laid out as Multi30k is, in dir/multi30k
fs::path toy_multi30k(const fs::path& dir) {
  const auto data = dir / "multi30k";
  fs::create_directories(data);
  thor::testing::make_toy_corpus(data / "train", 160, 301, "en", "de");
  thor::testing::make_toy_corpus(data / "valid", 8, 302, "en", "de");
  thor::testing::make_toy_corpus(data / "test_2016_flickr", 12, 303, "en", "de");
  return data;
}

std::string log_of(const fs::path& out, const std::string& script) { return slurp(out.string() + "." + script + ".err"); }

}  // namespace

TEST(Experiments, AResumedStudyGivesTheUninterruptedTable) {
  auto dir = thor::testing::temp_dir("experiments");
  const auto data = toy_multi30k(dir);

  // in one call: every system to update 8
  const auto whole = dir / "whole";
  ASSERT_EQ(run_script("MAX_UPDATE=8 CHUNK=8", "converged.sh", data, whole), 0) << log_of(whole, "converged.sh");
  EXPECT_EQ(last_update(whole / "dense-s1"), 8);
  EXPECT_EQ(slurp(whole / "thor2-a1-s1" / "done"), "update 8\n");
  // cut: a study stopped at update 4, then continued to 8 in chunks of 4
  const auto cut = dir / "cut";
  ASSERT_EQ(run_script("MAX_UPDATE=4 CHUNK=4", "converged.sh", data, cut), 0) << log_of(cut, "converged.sh");
  EXPECT_EQ(last_update(cut / "thor2-a1-s1"), 4);
  ASSERT_EQ(run_script("MAX_UPDATE=8 CHUNK=4", "converged.sh", data, cut), 0) << log_of(cut, "converged.sh");
  EXPECT_EQ(last_update(cut / "thor2-a1-s1"), 8) << "a finished study's budget can be raised";
  for (const char* run : {"dense-s1", "thor2-a1-s1"})  // the same validations (loss, BLEU) at 4 and 8
    EXPECT_EQ(validations(cut / run), validations(whole / run)) << run;
  // a call with nothing left to do trains nothing
  ASSERT_EQ(run_script("MAX_UPDATE=8 CHUNK=4", "converged.sh", data, cut), 0);
  EXPECT_EQ(log_of(cut, "converged.sh").find("to update"), std::string::npos) << log_of(cut, "converged.sh");

  // the evaluation: the same table from both
  ASSERT_EQ(run_script("", "converged_eval.sh", data, whole), 0) << log_of(whole, "converged_eval.sh");
  ASSERT_EQ(run_script("", "converged_eval.sh", data, cut), 0) << log_of(cut, "converged_eval.sh");
  const std::string table = slurp(whole / "eval" / "table.md");
  EXPECT_EQ(slurp(cut / "eval" / "table.md"), table);
  EXPECT_NE(table.find("Budget: update 8"), std::string::npos) << table;
  for (const char* row : {"| dense | best | ", "| dense | avg | ", "| thor2-a1 | best | ", "| thor2-a1 | avg | ", "| thor2-a1 | en-de | 1 | ",
                          "| dense-s1 | - | - | ", "| thor2-a1-s1 | - | - | "})
    EXPECT_NE(table.find(row), std::string::npos) << row << "\n" << table;
  EXPECT_TRUE(fs::exists(whole / "eval" / "curves" / "valid-bleu-flops.svg"));
  {  // one seed: its BLEU is the mean, and there is no spread to give
    const std::string head = "| dense | best | ";
    const auto at = table.find(head);
    ASSERT_NE(at, std::string::npos);
    const std::string row = table.substr(at, table.find('\n', at) - at);
    const std::string bleu = row.substr(head.size(), row.find(" |", head.size()) - head.size());
    EXPECT_EQ(row, head + bleu + " | " + bleu + " | - |") << row;
  }

  // the pace measured apart: one figure per system, into the table and the wall-clock chart
  ASSERT_EQ(run_script("UPDATES=20 ROUNDS=1", "converged_pace.sh", data, whole), 0) << log_of(whole, "converged_pace.sh");
  const auto pace = read_file(whole / "pace.tsv");
  ASSERT_EQ(pace.size(), 3u);
  EXPECT_EQ(pace[0], "system\ts_per_update\trounds");
  std::map<std::string, double> paces;
  for (size_t i = 1; i < pace.size(); ++i) {
    std::istringstream row(pace[i]);
    std::string sys;
    double s = 0;
    row >> sys >> s;
    EXPECT_GT(s, 0) << pace[i];
    paces[sys] = s;
  }
  ASSERT_EQ(paces.size(), 2u);
  EXPECT_TRUE(paces.count("dense") && paces.count("thor2-a1"));
  ASSERT_EQ(run_script("", "converged_eval.sh", data, whole), 0) << log_of(whole, "converged_eval.sh");
  const std::string with_pace = slurp(whole / "eval" / "table.md");
  char row[128];
  std::snprintf(row, sizeof row, "| dense-s1 | %.4f | %.1f | ", paces["dense"], paces["dense"] * 8 / 60);
  EXPECT_NE(with_pace.find(row), std::string::npos) << row << "\n" << with_pace;
  const std::string chart = slurp(whole / "eval" / "curves" / "valid-bleu-pace.svg");
  std::snprintf(row, sizeof row, "<title>thor2-a1-s1: %.8g, ", 8 * paces["thor2-a1"] / 60);
  EXPECT_NE(chart.find(row), std::string::npos) << row << "\n" << chart;
  for (const auto& e : fs::directory_iterator(whole))  // its scratch runs are gone
    EXPECT_FALSE(e.is_directory() && e.path().filename().string().rfind("pace.", 0) == 0) << e.path();
}

// The study's runs outlive their machine only in the repository, and checkpoints do not fit
// there: KEEP holds each evaluated run's log, done mark and test translations, and the
// systems' paces. A machine with only KEEP remakes the same table, trains only the runs KEEP
// lacks, and refuses, in one line, to go on with a kept run (its checkpoints are gone) or to
// evaluate it at another budget.
TEST(Experiments, KeptRunsRemakeTheTableWhereTheRunsFolderIsGone) {
  auto dir = thor::testing::temp_dir("experiments-keep");
  const auto data = toy_multi30k(dir);
  const std::string keep = "KEEP=" + (dir / "keep").string() + " ";
  const auto first = dir / "first";
  ASSERT_EQ(run_script(keep + "MAX_UPDATE=8 CHUNK=8", "converged.sh", data, first), 0) << log_of(first, "converged.sh");
  // the paces are measured where the runs trained, and kept with them
  ASSERT_EQ(run_script(keep + "UPDATES=20 ROUNDS=1", "converged_pace.sh", data, first), 0) << log_of(first, "converged_pace.sh");
  EXPECT_EQ(slurp(dir / "keep" / "pace.tsv"), slurp(first / "pace.tsv"));
  ASSERT_EQ(run_script(keep, "converged_eval.sh", data, first), 0) << log_of(first, "converged_eval.sh");
  const std::string table = slurp(first / "eval" / "table.md");
  EXPECT_EQ(table.find("| dense-s1 | - |"), std::string::npos) << "the pace is in the compute rows\n" << table;
  for (const char* run : {"dense-s1", "thor2-a1-s1"}) {
    EXPECT_EQ(slurp(dir / "keep" / run / "train_log.jsonl"), slurp(first / run / "train_log.jsonl")) << run;
    EXPECT_EQ(slurp(dir / "keep" / run / "done"), "update 8\n") << run;
    std::vector<std::string> kept;
    for (const auto& e : fs::directory_iterator(dir / "keep" / run / "hyp")) kept.push_back(e.path().filename().string());
    std::sort(kept.begin(), kept.end());
    ASSERT_EQ(kept.size(), 2u) << run;
    EXPECT_EQ(kept[0].rfind(std::string(run) + ".avg8.en-de.txt", 0), 0u) << kept[0];
    EXPECT_EQ(kept[1].rfind(std::string(run) + ".best", 0), 0u) << kept[1];
    EXPECT_EQ(slurp(dir / "keep" / run / "hyp" / kept[0]), slurp(first / "eval" / "hyp" / kept[0]));
  }
  for (const auto& e : fs::recursive_directory_iterator(dir / "keep"))
    EXPECT_NE(e.path().extension(), ".pt") << "a checkpoint was kept: " << e.path();

  // another machine: only the data and KEEP. Switch and random routing are new to the study
  // and train; the kept runs do not, and the table holds all four, the kept rows as on the
  // first machine (the compute rows with the kept paces)
  const auto next = dir / "next";
  const std::string three = "SYSTEMS='dense thor2-a1 switch4 random2' ";
  ASSERT_EQ(run_script(keep + three + "MAX_UPDATE=8 CHUNK=8", "converged.sh", data, next), 0) << log_of(next, "converged.sh");
  const std::string trained = log_of(next, "converged.sh");
  EXPECT_NE(trained.find("switch4 seed 1 to update 8"), std::string::npos) << trained;
  EXPECT_EQ(trained.find("dense seed 1 to update"), std::string::npos) << trained;
  EXPECT_EQ(trained.find("thor2-a1 seed 1 to update"), std::string::npos) << trained;
  EXPECT_FALSE(fs::exists(next / "dense-s1" / "checkpoint_last.pt"));
  ASSERT_EQ(run_script(keep + three, "converged_eval.sh", data, next), 0) << log_of(next, "converged_eval.sh");
  const std::string both = slurp(next / "eval" / "table.md");
  EXPECT_NE(both.find("| switch4 | best | "), std::string::npos) << both;
  EXPECT_NE(trained.find("random2 seed 1 to update 8"), std::string::npos) << trained;
  // THOR E=2 against dense, Switch and random routing with 2 experts: a p-value in each column
  EXPECT_TRUE(std::regex_search(both, std::regex(R"(\| thor2-a1 \| en-de \| 1 \| [01]\.\d{4} \| [01]\.\d{4} \| [01]\.\d{4} \|\n)")))
      << both;
  std::istringstream rows(table);
  for (std::string row; std::getline(rows, row);)  // every row of the first table: the same BLEU, p-values, compute
    if (row.rfind("| dense", 0) == 0 || row.rfind("| thor2-a1 | best", 0) == 0 || row.rfind("| thor2-a1 | avg", 0) == 0 ||
        row.rfind("| thor2-a1-s1", 0) == 0) {
      EXPECT_NE(both.find(row + "\n"), std::string::npos) << row << "\n" << both;
    }
  EXPECT_TRUE(fs::exists(dir / "keep" / "switch4-s1" / "train_log.jsonl")) << "the new run is kept in turn";

  // a kept run cannot go on (no checkpoints) nor be evaluated at a budget it was not kept at
  EXPECT_NE(run_script(keep + "MAX_UPDATE=12 CHUNK=12", "converged.sh", data, next), 0);
  const std::string refused = log_of(next, "converged.sh");
  EXPECT_NE(refused.find("converged: dense seed 1 is kept in " + (dir / "keep").string() +
                         " without its checkpoints and cannot go on to update 12"),
            std::string::npos)
      << refused;
  EXPECT_NE(run_script(keep + "BUDGET=4", "converged_eval.sh", data, next), 0);
  const std::string early = log_of(next, "converged_eval.sh");
  EXPECT_NE(early.find("converged_eval: dense-s1 is kept without its checkpoints and has no dense-s1.best4.en-de.txt for update 4"),
            std::string::npos)
      << early;
  // a run short of a given budget is left out, not evaluated on what it has
  const auto short_run = dir / "short";
  ASSERT_EQ(run_script("SYSTEMS=switch4 MAX_UPDATE=4 CHUNK=4", "converged.sh", data, short_run), 0);
  EXPECT_NE(run_script("SYSTEMS=switch4 BUDGET=8", "converged_eval.sh", data, short_run), 0);
  const std::string left = log_of(short_run, "converged_eval.sh");
  EXPECT_NE(left.find("[eval] switch4-s1 left out: at update 4, short of the budget 8"), std::string::npos) << left;
  EXPECT_NE(left.find("converged_eval: no runs in " + short_run.string() + " at update 8"), std::string::npos) << left;
  // a run still training (no done mark: its study was cut before MAX_UPDATE) is evaluated but
  // not kept: it could not go on from KEEP
  fs::remove(short_run / "switch4-s1" / "done");
  ASSERT_EQ(run_script("SYSTEMS=switch4 KEEP=" + (dir / "keep-short").string(), "converged_eval.sh", data, short_run), 0)
      << log_of(short_run, "converged_eval.sh");
  EXPECT_FALSE(fs::exists(dir / "keep-short" / "switch4-s1"));

  // checkpoints gone from under a run: one line saying which, not a silent stop
  for (const auto& e : fs::directory_iterator(short_run / "switch4-s1"))
    if (e.path().extension() == ".pt") fs::remove(e.path());
  for (const auto& e : fs::directory_iterator(short_run / "eval" / "hyp"))
    if (e.path().filename().string().find(".avg") != std::string::npos) fs::remove(e.path());
  EXPECT_NE(run_script("SYSTEMS=switch4", "converged_eval.sh", data, short_run), 0);
  EXPECT_NE(log_of(short_run, "converged_eval.sh")
                .find("converged_eval: switch4-s1 has no checkpoint_N.pt for the last 5 validations up to update 4 in " +
                      (short_run / "switch4-s1").string() + " to average"),
            std::string::npos)
      << log_of(short_run, "converged_eval.sh");
  fs::remove_all(short_run / "eval" / "hyp");
  EXPECT_NE(run_script("SYSTEMS=switch4", "converged_eval.sh", data, short_run), 0);
  EXPECT_NE(log_of(short_run, "converged_eval.sh")
                .find("converged_eval: translating en-de with " + (short_run / "switch4-s1" / "checkpoint_4.pt").string() + " failed: "),
            std::string::npos)
      << log_of(short_run, "converged_eval.sh");
}

// The multilingual study (item 5) through the same scripts: LANG_PAIRS trains one model on
// every pair, and the evaluation translates each pair with its target tag, scores it against
// that pair's reference, and adds the table of the mean over pairs and p-values per pair.
TEST(Experiments, TheMultilingualStudyGivesATablePerPairAndTheirMean) {
  auto dir = thor::testing::temp_dir("experiments-multi");
  const auto data = dir / "multi30k";
  fs::create_directories(data);
  thor::testing::make_multiway_corpus(data / "train", 160, 311, {"de", "fr"});
  thor::testing::make_multiway_corpus(data / "valid", 8, 312, {"de", "fr"});
  thor::testing::make_multiway_corpus(data / "test_2016_flickr", 12, 313, {"de", "fr"});
  const auto out = dir / "multi";
  const std::string env = "LANG_PAIRS=en-de,en-fr MAX_UPDATE=8 CHUNK=8 ";
  ASSERT_EQ(run_script(env, "converged.sh", data, out), 0) << log_of(out, "converged.sh");
  for (const char* run : {"dense-s1", "thor2-a1-s1"}) {  // validated on each pair, and on their mean
    const auto v = validations(out / run);
    ASSERT_FALSE(v.empty()) << run;
    EXPECT_TRUE(v.back().contains("valid_pairs") && v.back()["valid_pairs"].contains("en-de") && v.back()["valid_pairs"].contains("en-fr"))
        << v.back().dump();
  }
  ASSERT_EQ(run_script(env, "converged_eval.sh", data, out), 0) << log_of(out, "converged_eval.sh");
  const std::string table = slurp(out / "eval" / "table.md");
  for (const char* part : {"**en-de**", "**en-fr**", "**mean**", "| thor2-a1 | en-de | 1 | ", "| thor2-a1 | en-fr | 1 | "})
    EXPECT_NE(table.find(part), std::string::npos) << part << "\n" << table;

  // a pair's BLEU is its translations scored against its own reference
  auto bleu_in = [&](const std::string& section, const std::string& head) {  // seed 1's figure in a section's row
    const auto at = table.find(head, table.find("**" + section + "**"));
    EXPECT_NE(at, std::string::npos) << section << " " << head;
    return std::stod(table.substr(at + head.size()));
  };
  const auto hyp = out / "eval" / "hyp";
  double sum = 0;
  for (const char* pair : {"en-de", "en-fr"}) {
    const std::string tgt = std::string(pair).substr(3);
    const std::string h = (hyp / ("dense-s1.best." + std::string(pair) + ".txt")).string();
    EXPECT_EQ(read_file(h).size(), 12u) << h;
    const std::string scored = dir.string() + "/score." + pair;
    ASSERT_EQ(sh(std::string(THOR_BIN) + " score " + (data / ("test_2016_flickr." + tgt)).string() + " -i " + h + " > " + scored), 0);
    const std::string line = slurp(scored);
    const double b = std::stod(line.substr(line.find("BLEU = ") + 7));
    EXPECT_NEAR(bleu_in(pair, "| dense | best | "), b, 0.005) << line;
    sum += bleu_in(pair, "| dense | best | ");
    // and they are the best checkpoint's translations with the pair's target tag
    const std::string link = fs::read_symlink(h).string();  // dense-s1.bestN.PAIR.txt
    const std::string ckpt = (out / "dense-s1" / ("checkpoint_" + link.substr(13, link.find('.', 13) - 13) + ".pt")).string();
    const std::string again = dir.string() + "/again." + pair;
    ASSERT_EQ(sh(std::string(THOR_BIN) + " translate --model " + ckpt + " --beam 5 --target-lang " + tgt + " --input " +
                 (data / "test_2016_flickr.en").string() + " > " + again + " 2> /dev/null"),
              0);
    EXPECT_EQ(slurp(again), slurp(h)) << pair;
  }
  EXPECT_NEAR(bleu_in("mean", "| dense | best | "), sum / 2, 0.006) << table;
}
