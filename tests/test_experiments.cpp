// The converged study's scripts (experiments/converged.sh, converged_eval.sh,
// converged_pace.sh) end to end, on a toy corpus laid out as Multi30k is and a toy model
// (MODEL_FLAGS): a study trained in one call and the same study cut into chunks and resumed
// by later calls give the same table, byte for byte; a study's MAX_UPDATE can be raised after
// it finished; the pace measured apart reaches the table and the report's wall-clock chart.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
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

}  // namespace

TEST(Experiments, AResumedStudyGivesTheUninterruptedTable) {
  auto dir = thor::testing::temp_dir("experiments");
  const auto data = dir / "multi30k";
  fs::create_directories(data);
  thor::testing::make_toy_corpus(data / "train", 160, 301, "en", "de");
  thor::testing::make_toy_corpus(data / "valid", 8, 302, "en", "de");
  thor::testing::make_toy_corpus(data / "test_2016_flickr", 12, 303, "en", "de");
  auto log_of = [&](const fs::path& out, const std::string& script) {
    return slurp(out.string() + "." + script + ".err");
  };

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
