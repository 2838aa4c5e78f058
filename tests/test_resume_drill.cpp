// The real binary killed with SIGKILL while it trains with --save-interval-updates: the
// restart with --resume continues from the newest state instead of starting over, and the
// finished run equals an uninterrupted one bit for bit (bench/kill_drill.sh: 50 kills).
#include <gtest/gtest.h>

#include <fcntl.h>

#include <csignal>
#include <nlohmann/json.hpp>
#include <cmath>

#include "fixtures.h"
#include "process.h"
#include "thor/train/checkpoint.h"

namespace fs = std::filesystem;

namespace {

// Tiny-model training, stopped by the test or at max_update; `extra` adds options.
thor::testing::Child start_train(const fs::path& data, const fs::path& save, const fs::path& log,
                                 const std::vector<std::string>& extra, int64_t max_update = 100000,
                                 const std::string& threads = "1") {
  std::vector<std::string> a = {"--threads", threads, "train", data.string(), "--encoder-embed-dim", "32", "--ffn-dim",
                                "64", "--encoder-layers", "1", "--decoder-layers", "1", "--attention-heads", "2",
                                "--share-all-embeddings", "--max-tokens", "300", "--max-update",
                                std::to_string(max_update), "--no-eval-bleu", "--no-progress", "--save-dir", save.string()};
  a.insert(a.end(), extra.begin(), extra.end());
  return thor::testing::start_thor(a, log.string());
}

// The kill drill's run: dropout on, a save every 3 updates, resumed from the save directory.
const std::vector<std::string> kDrill = {"--dropout", "0.2", "--workers", "1", "--save-interval-updates", "3",
                                         "--resume"};

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
    auto child = start_train(data, save, log, kDrill);
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
  // finished after the kills, it equals a run never interrupted, bit for bit
  const int64_t target =
      thor::read_train_state((save / "checkpoint_last.pt").string())["position"]["num_updates"].get<int64_t>() + 4;
  ASSERT_EQ(start_train(data, save, log, kDrill, target).wait(), 0) << log;
  ASSERT_EQ(start_train(data, dir / "straight", dir / "straight.log", kDrill, target).wait(), 0);
  auto a = thor::load_model((save / "checkpoint_last.pt").string(), torch::kCPU);
  auto b = thor::load_model((dir / "straight" / "checkpoint_last.pt").string(), torch::kCPU);
  EXPECT_EQ(a.train_state["position"]["num_updates"], target);
  EXPECT_EQ(thor::parameter_digest(a.model), thor::parameter_digest(b.model));
  auto pb = b.model->named_parameters();
  for (auto& kv : a.model->named_parameters()) EXPECT_TRUE(torch::equal(kv.value(), pb[kv.key()])) << kv.key();
}

// SIGTERM during training: the update in progress finishes, checkpoint_last.pt gets its
// state, the process exits 0; resuming from it equals training straight through.
TEST(ResumeDrill, SigtermFinishesTheUpdateSavesAndExitsZero) {
  auto data = thor::testing::prepared_toy_data("drill_data", 200, 12, 31);
  auto dir = thor::testing::temp_dir("sigterm_drill");
  auto args = [&](const fs::path& save, int64_t max_update, bool resume) {
    std::vector<std::string> a = {"--threads", "1", "train", data.string(), "--encoder-embed-dim", "32", "--ffn-dim", "64",
                                  "--encoder-layers", "1", "--decoder-layers", "1", "--attention-heads", "2",
                                  "--share-all-embeddings", "--max-tokens", "300", "--dropout", "0.2", "--max-update",
                                  std::to_string(max_update), "--log-interval", "1", "--no-eval-bleu", "--no-progress",
                                  "--workers", "1", "--save-dir", save.string()};
    if (resume) a.push_back("--resume");
    return a;
  };
  auto log = dir / "stopped.log";
  auto child = thor::testing::start_thor(args(dir / "stopped", 100000, false), log.string());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  auto lines = [&] { return fs::exists(dir / "stopped" / "train_log.jsonl") ? thor::testing::read_file(dir / "stopped" / "train_log.jsonl").size() : 0u; };
  while (lines() < 5 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  child.kill(SIGTERM);
  ASSERT_EQ(child.wait(std::chrono::seconds(60)), 0) << log;
  int64_t stopped_at = thor::read_train_state((dir / "stopped" / "checkpoint_last.pt").string())["position"]["num_updates"];
  ASSERT_GE(stopped_at, 5);
  bool said = false;
  for (auto& l : thor::testing::read_file(log))
    said = said || l.find("stopped by a signal after update " + std::to_string(stopped_at)) != std::string::npos;
  EXPECT_TRUE(said) << log;
  for (auto& f : fs::directory_iterator(dir / "stopped")) EXPECT_NE(f.path().extension(), ".tmp") << f.path();
  ASSERT_EQ(thor::testing::start_thor(args(dir / "stopped", stopped_at + 4, true), log.string()).wait(), 0) << log;
  ASSERT_EQ(thor::testing::start_thor(args(dir / "straight", stopped_at + 4, false), (dir / "straight.log").string()).wait(), 0);
  auto a = thor::load_model((dir / "straight" / "checkpoint_last.pt").string(), torch::kCPU);
  auto b = thor::load_model((dir / "stopped" / "checkpoint_last.pt").string(), torch::kCPU);
  auto pb = b.model->named_parameters();
  for (auto& kv : a.model->named_parameters()) EXPECT_TRUE(torch::equal(kv.value(), pb[kv.key()])) << kv.key();
}

// Waits (up to 120 s) until save/train_log.jsonl has n lines; whether it got there.
bool wait_for_log_lines(const fs::path& save, size_t n) {
  auto lines = [&] { return fs::exists(save / "train_log.jsonl") ? thor::testing::read_file(save / "train_log.jsonl").size() : 0u; };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (lines() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return lines() >= n;
}

// The signal masks of a training process, from /proc: which signals some thread catches
// with a handler, and how many of its threads block SIGINT and SIGTERM.
struct SignalView {
  uint64_t caught = 0;
  int threads = 0, blocking = 0;
};
SignalView signal_view(pid_t pid) {
  // a field of a status file in hexadecimal; -1 when the file is gone (a thread that ended)
  auto field = [](const fs::path& status, const std::string& key) -> int64_t {
    for (auto& l : thor::testing::read_file(status))
      if (l.rfind(key + ":", 0) == 0) return static_cast<int64_t>(std::stoull(l.substr(key.size() + 1), nullptr, 16));
    return -1;
  };
  const fs::path proc = "/proc/" + std::to_string(pid);
  SignalView v;
  v.caught = static_cast<uint64_t>(field(proc / "status", "SigCgt"));
  const uint64_t stop_bits = (1ull << (SIGINT - 1)) | (1ull << (SIGTERM - 1));
  for (auto& t : fs::directory_iterator(proc / "task")) {
    const int64_t blocked = field(t.path() / "status", "SigBlk");
    if (blocked < 0) continue;  // the workers' threads of one update come and go
    ++v.threads;
    v.blocking += (static_cast<uint64_t>(blocked) & stop_bits) == stop_bits;
  }
  return v;
}

// No thread of a training process takes SIGINT / SIGTERM with a handler: every thread but
// the one that waits for them blocks them. A handler taken inside oneDNN's JIT gemm (whose
// rsp points at heap memory) wrote its frame into the heap: "free(): invalid size" some
// updates after a SIGTERM, about one stop in 50 here (oneDNN issue 4845). The stop that
// follows finishes the update and exits 0, with the intra-op threads and workers busy.
TEST(ResumeDrill, StopSignalsNeverRunAHandlerOnAComputingThread) {
  auto data = thor::testing::prepared_toy_data("drill_data", 200, 12, 31);
  auto dir = thor::testing::temp_dir("signal_masks");
  auto child = start_train(data, dir / "ck", dir / "train.log", {"--log-interval", "1", "--workers", "2"}, 100000, "2");
  ASSERT_TRUE(wait_for_log_lines(dir / "ck", 20)) << dir / "train.log";
  for (int look = 0; look < 5; ++look) {
    auto v = signal_view(child.pid);
    EXPECT_EQ(v.caught & (1ull << (SIGINT - 1)), 0u) << "a handler catches SIGINT";
    EXPECT_EQ(v.caught & (1ull << (SIGTERM - 1)), 0u) << "a handler catches SIGTERM";
    EXPECT_GE(v.threads, 2) << "the main thread and the waiting one at least";
    EXPECT_GE(v.blocking, v.threads - 1) << "threads that could take SIGTERM: " << v.threads - v.blocking;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  child.kill(SIGTERM);
  ASSERT_EQ(child.wait(std::chrono::seconds(60)), 0) << dir / "train.log";
  bool said = false;
  for (auto& l : thor::testing::read_file(dir / "train.log")) said = said || l.find("stopped by a signal after update") != std::string::npos;
  EXPECT_TRUE(said) << dir / "train.log";
}

// SIGTERM to the launcher of two ranks is passed on to both: they stop after the same
// update, rank 0 saves it, every process exits 0 (torchrun's behaviour).
TEST(ResumeDrill, SigtermToTheLauncherStopsEveryRankAfterTheSameUpdate) {
  auto data = thor::testing::prepared_toy_data("drill_data", 200, 12, 31);
  auto dir = thor::testing::temp_dir("launcher_sigterm");
  auto child = start_train(data, dir / "ck", dir / "train.log", {"--log-interval", "1", "--workers", "1", "--nproc-per-node", "2"});
  ASSERT_TRUE(wait_for_log_lines(dir / "ck", 5)) << dir / "train.log";
  child.kill(SIGTERM);
  ASSERT_EQ(child.wait(std::chrono::seconds(60)), 0) << dir / "train.log";
  int64_t stopped_at = thor::read_train_state((dir / "ck" / "checkpoint_last.pt").string())["position"]["num_updates"];
  int passed = 0, said = 0;
  for (auto& l : thor::testing::read_file(dir / "train.log")) {
    passed += l.find("passing it to every rank") != std::string::npos;
    said += l.find("stopped by a signal after update " + std::to_string(stopped_at)) != std::string::npos;
  }
  EXPECT_EQ(passed, 1) << dir / "train.log";
  EXPECT_EQ(said, 1) << dir / "train.log";
}

// SIGTERM while translate waits for input that does not come (a pipe kept open): it stops
// reading at once, with one line, and exits non-zero.
TEST(ResumeDrill, SigtermStopsTranslateWaitingForInput) {
  auto dir = thor::testing::temp_dir("sigterm_stdin");
  ASSERT_EQ(thor::testing::start_thor({"--threads", "1", "train", thor::testing::prepared_toy_data("drill_data", 200, 12, 31).string(),
                                       "--encoder-embed-dim", "32", "--ffn-dim", "64", "--encoder-layers", "1",
                                       "--decoder-layers", "1", "--attention-heads", "2", "--share-all-embeddings",
                                       "--max-tokens", "300", "--max-update", "2", "--no-eval-bleu", "--no-progress",
                                       "--save-dir", (dir / "ck").string()},
                                      (dir / "train.log").string())
                .wait(),
            0);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);  // the child keeps no write end of its own (it would never see EOF)
  auto child = thor::testing::start_thor({"--threads", "1", "translate", "--model", (dir / "ck" / "checkpoint_last.pt").string()},
                                         (dir / "translate.log").string(), {}, "/dev/null", fds[0]);
  ::close(fds[0]);
  ASSERT_EQ(::write(fds[1], "a half", 6), 6);  // a line begun, never ended
  // until its main thread waits in poll() for the rest of the input (x86-64 poll: 7, ppoll: 271)
  auto waiting = [&] {
    auto l = thor::testing::read_file("/proc/" + std::to_string(child.pid) + "/syscall");
    return !l.empty() && (l[0].rfind("7 ", 0) == 0 || l[0].rfind("271 ", 0) == 0);
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!waiting() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!waiting()) child.kill(SIGKILL), child.wait();
  ASSERT_TRUE(waiting()) << dir / "translate.log";
  child.kill(SIGTERM);
  const int rc = child.wait(std::chrono::seconds(20));
  ::close(fds[1]);
  if (rc < 0) child.kill(SIGKILL), child.wait();
  ASSERT_EQ(rc, 1) << dir / "translate.log";
  auto log = thor::testing::read_file(dir / "translate.log");
  ASSERT_FALSE(log.empty());
  EXPECT_NE(log.back().find("translate: stopped by SIGTERM while reading the input; nothing translated"), std::string::npos)
      << log.back();
}

// SIGTERM while translate decodes: the batches being decoded finish, the input's longest
// translated prefix is written (equal to the uninterrupted run's first lines), and the
// process exits non-zero with one line saying where to continue.
TEST(ResumeDrill, SigtermStopsTranslateAfterTheBatchesInFlight) {
  auto data = thor::testing::prepared_toy_data("drill_data", 200, 12, 31);
  auto dir = thor::testing::temp_dir("sigterm_translate");
  ASSERT_EQ(thor::testing::start_thor({"--threads", "1", "train", data.string(), "--encoder-embed-dim", "32",
                                       "--ffn-dim", "64", "--encoder-layers", "1", "--decoder-layers", "1",
                                       "--attention-heads", "2", "--share-all-embeddings", "--max-tokens", "300",
                                       "--max-update", "2", "--no-eval-bleu", "--no-progress", "--save-dir",
                                       (dir / "ck").string()},
                                      (dir / "train.log").string())
                .wait(),
            0);
  thor::testing::make_toy_corpus(dir / "input", 6000, 77);
  auto args = std::vector<std::string>{"--threads", "1", "translate", "--model", (dir / "ck" / "checkpoint_last.pt").string(),
                                       "--beam", "1", "--batch-size", "8", "--workers", "1", "--input",
                                       (dir / "input.src").string()};
  ASSERT_EQ(thor::testing::start_thor(args, (dir / "full.log").string(), {}, (dir / "full.out").string()).wait(), 0);
  auto full = thor::testing::read_file(dir / "full.out");
  ASSERT_EQ(full.size(), 6000u);
  auto child = thor::testing::start_thor(args, (dir / "stopped.log").string(), {}, (dir / "stopped.out").string());
  auto started = [&] {
    for (auto& l : thor::testing::read_file(dir / "stopped.log"))
      if (l.find("sentences, beam") != std::string::npos) return true;
    return false;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!started() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  child.kill(SIGTERM);
  EXPECT_EQ(child.wait(std::chrono::seconds(60)), 1);
  auto out = thor::testing::read_file(dir / "stopped.out");
  ASSERT_LT(out.size(), full.size()) << "decoding ended before the signal";
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], full[i]) << "line " << i + 1;
  auto log = thor::testing::read_file(dir / "stopped.log");
  ASSERT_FALSE(log.empty());
  EXPECT_NE(log.back().find("translate: stopped by SIGTERM: wrote the first " + std::to_string(out.size()) +
                            " of 6000 translations"),
            std::string::npos)
      << log.back();
  EXPECT_NE(log.back().find("continue from input line " + std::to_string(out.size() + 1)), std::string::npos);
}

// A non-finite gradient skips its update (logged, counted in the JSON log); --max-bad-updates
// in a row stop the run with one error line, the checkpoints written before intact.
TEST(ResumeDrill, NonFiniteUpdatesAreSkippedThenStopTheRun) {
  auto data = thor::testing::prepared_toy_data("drill_data", 200, 12, 31);
  auto dir = thor::testing::temp_dir("nan_drill");
  auto args = [&](const fs::path& save, const std::string& max_bad) {
    return std::vector<std::string>{"--threads", "1", "train", data.string(), "--encoder-embed-dim", "32", "--ffn-dim",
                                    "64", "--encoder-layers", "1", "--decoder-layers", "1", "--attention-heads", "2",
                                    "--share-all-embeddings", "--max-tokens", "300", "--max-update", "8",
                                    "--log-interval", "1", "--save-interval-updates", "2", "--no-eval-bleu",
                                    "--no-progress", "--max-bad-updates", max_bad, "--save-dir", save.string()};
  };
  auto finite = [](const fs::path& ck) {
    auto m = thor::load_model(ck.string(), torch::kCPU);
    for (auto& p : m.model->parameters())
      if (!torch::isfinite(p).all().item<bool>()) return false;
    return true;
  };
  // two bad updates, then good ones again
  ASSERT_EQ(thor::testing::start_thor(args(dir / "a", "3"), (dir / "a.log").string(), {{"THOR_FAULT_NAN_GRAD", "3-4"}})
                .wait(),
            0)
      << dir / "a.log";
  int warned = 0;
  for (auto& l : thor::testing::read_file(dir / "a.log")) warned += l.find("non-finite gradient norm at update") != std::string::npos;
  EXPECT_EQ(warned, 2);
  int64_t bad = 0;
  for (auto& l : thor::testing::read_file(dir / "a" / "train_log.jsonl")) {
    auto j = nlohmann::json::parse(l);
    bad += j.value("bad_updates", int64_t{0});
    if (j.contains("loss")) {
      EXPECT_TRUE(std::isfinite(j["loss"].get<double>())) << l;
    }
  }
  EXPECT_EQ(bad, 2);
  EXPECT_TRUE(finite(dir / "a" / "checkpoint_last.pt"));
  EXPECT_EQ(thor::read_train_state((dir / "a" / "checkpoint_last.pt").string())["position"]["num_updates"], 8);
  // every update from 5 on is bad: the third in a row stops the run
  EXPECT_EQ(thor::testing::start_thor(args(dir / "b", "3"), (dir / "b.log").string(), {{"THOR_FAULT_NAN_GRAD", "5-1000"}})
                .wait(),
            1);
  auto log = thor::testing::read_file(dir / "b.log");
  ASSERT_FALSE(log.empty());
  EXPECT_NE(log.back().find("3 updates in a row had a non-finite loss or gradient (the last: update 7)"), std::string::npos)
      << log.back();
  EXPECT_NE(log.back().find("--max-bad-updates 3"), std::string::npos);
  EXPECT_EQ(thor::read_train_state((dir / "b" / "checkpoint_last.pt").string())["position"]["num_updates"], 6);
  EXPECT_TRUE(finite(dir / "b" / "checkpoint_last.pt"));
  for (auto& f : fs::directory_iterator(dir / "b")) EXPECT_NE(f.path().extension(), ".tmp") << f.path();
}

}  // namespace
