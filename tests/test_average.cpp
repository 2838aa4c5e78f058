// Checkpoint averaging: of identical files it is the file, of two the mean; other
// architectures are refused; the CLI picks the last N numbered checkpoints of a save dir.
// Also `thor score` with several systems (paired bootstrap) through the binary.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "process.h"
#include "thor/common/error.h"
#include "thor/train/average.h"
#include "thor/train/checkpoint.h"
#include "thor/train/trainer.h"

namespace fs = std::filesystem;

namespace {

fs::path trained(const std::string& name, int64_t d_model) {
  auto save = thor::testing::temp_dir(name);
  thor::TrainOptions o;
  o.data_dir = thor::testing::prepared_toy_data("average_data", 160, 8, 51).string();
  o.save_dir = save.string();
  o.device = "cpu";
  o.max_tokens = 300;
  o.max_update = 6;
  o.save_interval_updates = 2;
  o.log_interval = 2;
  o.eval_bleu = false;
  o.progress = false;
  thor::ModelConfig c;
  c.d_model = d_model, c.ffn_dim = 2 * d_model, c.heads = 2, c.encoder_layers = 1, c.decoder_layers = 1;
  c.share_all_embeddings = true;
  torch::manual_seed(3);
  thor::train(o, c);
  return save;
}

TEST(Average, OfIdenticalFilesIsTheFileOfTwoTheMean) {
  auto save = trained("average_run", 32);
  auto c2 = (save / "checkpoint_2.pt").string(), c4 = (save / "checkpoint_4.pt").string();
  auto out = save / "avg.pt";
  thor::average_checkpoints({c2, c2, c2}, out.string());
  auto a = thor::load_model(out.string(), torch::kCPU), m2 = thor::load_model(c2, torch::kCPU);
  auto p2 = m2.model->named_parameters();
  for (auto& kv : a.model->named_parameters()) EXPECT_TRUE(torch::equal(kv.value(), p2[kv.key()])) << kv.key();
  EXPECT_EQ(a.vocab.serialized(), m2.vocab.serialized());

  thor::average_checkpoints({c2, c4}, out.string());
  auto b = thor::load_model(out.string(), torch::kCPU), m4 = thor::load_model(c4, torch::kCPU);
  auto p4 = m4.model->named_parameters();
  for (auto& kv : b.model->named_parameters()) {
    auto mean = ((p2[kv.key()].to(torch::kDouble) + p4[kv.key()].to(torch::kDouble)) / 2).to(torch::kFloat);
    EXPECT_TRUE(torch::equal(kv.value(), mean)) << kv.key();
  }
  EXPECT_EQ(b.train_state["position"]["num_updates"], 4);  // the last input's position

  EXPECT_EQ(thor::last_numbered_checkpoints(save.string(), 2),
            (std::vector<std::string>{c4, (save / "checkpoint_6.pt").string()}));
  EXPECT_THROW(thor::last_numbered_checkpoints(save.string(), 4), thor::Error);

  auto other = trained("average_other", 16);
  try {
    thor::average_checkpoints({c2, (other / "checkpoint_2.pt").string()}, out.string());
    FAIL() << "averaged two architectures";
  } catch (const thor::Error& e) {
    EXPECT_NE(std::string(e.what()).find("another architecture"), std::string::npos) << e.what();
  }

  // the CLI: the last 3 numbered checkpoints of the save dir
  auto log = save / "cli.log";
  auto cli_out = save / "avg3.pt";
  EXPECT_EQ(thor::testing::start_thor({"average", "--inputs", save.string(), "--num-update-checkpoints", "3", "--out",
                                       cli_out.string()},
                                      log.string())
                .wait(),
            0);
  auto c = thor::load_model(cli_out.string(), torch::kCPU);
  auto m6 = thor::load_model((save / "checkpoint_6.pt").string(), torch::kCPU);
  auto p6 = m6.model->named_parameters();
  for (auto& kv : c.model->named_parameters()) {
    auto mean = ((p2[kv.key()].to(torch::kDouble) + p4[kv.key()].to(torch::kDouble) + p6[kv.key()].to(torch::kDouble)) / 3)
                    .to(torch::kFloat);
    EXPECT_TRUE(torch::allclose(kv.value(), mean, 0, 0)) << kv.key();
  }
}

TEST(Average, ScoreWithSeveralSystemsPrintsPairedBootstrap) {
  auto dir = thor::testing::temp_dir("score_bs");
  thor::testing::write_file(dir / "ref", {"the cat sat on the mat .", "a dog runs in the park", "two men stand here"});
  thor::testing::write_file(dir / "a", {"the cat is on a mat .", "a dog runs", "two men stand here"});
  thor::testing::write_file(dir / "b", {"the cat sat on the mat .", "a dog runs in the park", "two men stand there"});
  thor::testing::write_file(dir / "short", {"one line"});
  auto out = dir / "out.txt";
  std::string cmd = std::string(THOR_BIN) + " score " + (dir / "ref").string() + " -i " + (dir / "a").string() + " -i " +
                    (dir / "b").string() + " --paired-bs-n 100 > " + out.string() + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto lines = thor::testing::read_file(out);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "system\tBLEU\tmean\tci95\tp_value");
  EXPECT_NE(lines[1].find("(baseline)"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[2].rfind((dir / "b").string() + "\t", 0), 0u) << lines[2];
  // a file of another length is one error line naming it
  auto err = dir / "err.txt";
  cmd = std::string(THOR_BIN) + " score " + (dir / "ref").string() + " -i " + (dir / "a").string() + " -i " +
        (dir / "short").string() + " > /dev/null 2> " + err.string();
  EXPECT_NE(std::system(cmd.c_str()), 0);
  auto e = thor::testing::read_file(err);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find((dir / "short").string() + " has 1 lines"), std::string::npos) << e[0];
}

}  // namespace
