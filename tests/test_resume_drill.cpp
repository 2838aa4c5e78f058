// The real binary killed with SIGKILL while it trains with --save-interval-updates: the
// restart with --resume continues from the newest state instead of starting over.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "process.h"
#include "thor/train/checkpoint.h"

namespace fs = std::filesystem;

namespace {

thor::testing::Child start_train(const fs::path& data, const fs::path& save, const fs::path& log) {
  return thor::testing::start_thor(
      {"--threads", "1", "train", data.string(), "--encoder-embed-dim", "32", "--ffn-dim", "64", "--encoder-layers",
       "1", "--decoder-layers", "1", "--attention-heads", "2", "--share-all-embeddings", "--max-tokens", "300",
       "--max-update", "100000", "--save-interval-updates", "3", "--no-eval-bleu", "--no-progress", "--resume",
       "--save-dir", save.string()},
      log.string());
}

int64_t newest_numbered(const fs::path& save) {
  int64_t n = 0;
  if (!fs::is_directory(save)) return 0;
  for (auto& e : fs::directory_iterator(save)) {
    auto name = e.path().filename().string();
    if (name.rfind("checkpoint_", 0) == 0 && name.size() > 14 && name.substr(name.size() - 3) == ".pt" &&
        std::isdigit(static_cast<unsigned char>(name[11])))
      n = std::max<int64_t>(n, std::stoll(name.substr(11)));
  }
  return n;
}

TEST(ResumeDrill, SigkillDuringPeriodicSavesResumesFromTheNewestState) {
  auto data = thor::testing::prepared_toy_data("drill_data", 200, 12, 31);
  auto dir = thor::testing::temp_dir("resume_drill");
  auto save = dir / "ck", log = dir / "train.log";
  int64_t reached = 0;
  for (int kill = 0; kill < 2; ++kill) {
    auto child = start_train(data, save, log);
    // wait until this run has saved past what the last one reached
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (newest_numbered(save) < reached + 6 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    child.kill(SIGKILL);
    child.wait();
    int64_t numbered = newest_numbered(save);
    ASSERT_GE(numbered, reached + 6) << "no progress before the deadline; see " << log;
    // checkpoint_last.pt holds at least the newest numbered state (it is written first)
    auto last = thor::read_train_state((save / "checkpoint_last.pt").string());
    EXPECT_GE(last["position"]["num_updates"].get<int64_t>(), numbered);
    EXPECT_EQ(thor::find_resume_checkpoint(save.string()), (save / "checkpoint_last.pt").string());
    reached = numbered;
  }
  auto lines = thor::testing::read_file(log);
  int fresh = 0, resumed = 0;
  for (auto& l : lines) {
    fresh += l.find("starting fresh") != std::string::npos;
    resumed += l.find("resuming from " + (save / "checkpoint_last.pt").string()) != std::string::npos;
  }
  EXPECT_EQ(fresh, 1);    // only the very first start
  EXPECT_EQ(resumed, 1);  // the restart continued
}

}  // namespace
