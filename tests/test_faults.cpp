// Resource faults through the real binary: a full disk (a small tmpfs in a private mount
// namespace, `unshare -Urm`), a read-only save directory, an unwritable stdout and a batch
// too large for the memory: one clear error line, a non-zero exit, the previous checkpoint
// intact.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "fixtures.h"
#include "thor/train/checkpoint.h"

namespace fs = std::filesystem;

namespace {

struct ScriptResult {
  int code;
  std::vector<std::string> err;
};

ScriptResult run_in_dir(const std::string& script, const fs::path& dir) {
  const auto err = dir / "stderr.txt";
  const std::string cmd = "sh -c '" + script + "' > " + (dir / "stdout.txt").string() + " 2> " + err.string();
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, thor::testing::read_file(err)};
}

bool can_unshare() { return std::system("unshare -Urm true > /dev/null 2>&1") == 0; }

std::string train_cmd(const fs::path& data, const fs::path& save, int64_t max_update, const std::string& extra = "") {
  return std::string(THOR_BIN) + " --threads 1 train " + data.string() +
         " --encoder-embed-dim 32 --ffn-dim 64 --encoder-layers 1 --decoder-layers 1 --attention-heads 2"
         " --share-all-embeddings --max-tokens 300 --no-eval-bleu --no-progress --save-interval-updates 2"
         " --max-update " + std::to_string(max_update) + " --save-dir " + save.string() + " " + extra;
}

int64_t updates_in(const fs::path& ck) {
  return thor::read_train_state(ck.string())["position"]["num_updates"].get<int64_t>();
}

// The error line thor printed (the last line of stderr).
std::string error_line(const ScriptResult& r) { return r.err.empty() ? "" : r.err.back(); }

}  // namespace

// The disk fills while a checkpoint is written: the save fails with the system's reason
// naming the file, the run exits 1, and checkpoint_last.pt still holds the previous save.
TEST(Faults, DiskFullKeepsThePreviousCheckpoint) {
  if (!can_unshare()) GTEST_SKIP() << "no user namespaces (unshare -Urm) for a private tmpfs";
  auto data = thor::testing::prepared_toy_data("faults_data", 200, 12, 51);
  auto dir = thor::testing::temp_dir("faults_disk_full");
  ASSERT_EQ(run_in_dir(train_cmd(data, dir / "probe", 2), dir).code, 0);
  const auto size = fs::file_size(dir / "probe" / "checkpoint_last.pt");
  // room for one checkpoint (and the log), not for the next one beside it
  const auto room = (size * 3 / 2 + 65536) / 1024;
  fs::create_directories(dir / "ck");
  auto r = run_in_dir("unshare -Urm sh -c \"mount -t tmpfs -o size=" + std::to_string(room) + "k tmpfs " + (dir / "ck").string() +
             " && " + train_cmd(data, dir / "ck", 8) + "; rc=\\$?; cp -a " + (dir / "ck").string() + " " +
             (dir / "after").string() + "; exit \\$rc\"",
         dir);
  EXPECT_EQ(r.code, 1);
  const auto line = error_line(r);
  EXPECT_NE(line.find("thor: error: "), std::string::npos) << line;
  EXPECT_NE(line.find("checkpoint_last.pt.tmp: cannot write: No space left on device"), std::string::npos) << line;
  ASSERT_TRUE(fs::exists(dir / "after" / "checkpoint_last.pt"));
  EXPECT_EQ(updates_in(dir / "after" / "checkpoint_last.pt"), 2);
  for (auto& f : fs::directory_iterator(dir / "after")) EXPECT_NE(f.path().extension(), ".tmp") << f.path();
}

// A save directory on a read-only file system (or one that is a file) is refused with the
// reason, before any training.
TEST(Faults, UnwritableSaveDirectoryIsOneClearError) {
  auto data = thor::testing::prepared_toy_data("faults_data", 200, 12, 51);
  auto dir = thor::testing::temp_dir("faults_readonly");
  thor::testing::write_file(dir / "a_file", {"x"});
  auto f = run_in_dir(train_cmd(data, dir / "a_file" / "ck", 2), dir);
  EXPECT_EQ(f.code, 1);
  EXPECT_NE(error_line(f).find("a_file"), std::string::npos) << error_line(f);
  if (!can_unshare()) GTEST_SKIP() << "no user namespaces (unshare -Urm) for a read-only mount";
  fs::create_directories(dir / "ro");
  auto r = run_in_dir("unshare -Urm sh -c \"mount -t tmpfs -o ro tmpfs " + (dir / "ro").string() + " && " +
                  train_cmd(data, dir / "ro", 2) + "\"",
              dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(error_line(r).find("Read-only file system"), std::string::npos) << error_line(r);
  EXPECT_EQ(r.err.size() > 0 && error_line(r).rfind("thor: error: ", 0) == 0, true) << error_line(r);
}

// Results that cannot be written (stdout on a full device) are an error, not a silent loss.
TEST(Faults, UnwritableOutputIsAnError) {
  auto data = thor::testing::prepared_toy_data("faults_data", 200, 12, 51);
  auto dir = thor::testing::temp_dir("faults_output");
  ASSERT_EQ(run_in_dir(train_cmd(data, dir / "ck", 2), dir).code, 0);
  thor::testing::make_toy_corpus(dir / "in", 400, 5);
  auto r = run_in_dir(std::string(THOR_BIN) + " --threads 1 translate --beam 1 --model " + (dir / "ck" / "checkpoint_last.pt").string() +
                  " --input " + (dir / "in.src").string() + " > /dev/full",
              dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(error_line(r).find("cannot write the results to stdout: No space left on device"), std::string::npos)
      << error_line(r);
  auto avg = run_in_dir(std::string(THOR_BIN) + " average --inputs " + (dir / "ck" / "checkpoint_last.pt").string() + " --out " +
                    (dir / "no" / "such" / "avg.pt").string(),
                dir);
  EXPECT_EQ(avg.code, 1);
  EXPECT_NE(error_line(avg).find("avg.pt.tmp: cannot create"), std::string::npos) << error_line(avg);
}

#if defined(__SANITIZE_ADDRESS__)
#define THOR_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define THOR_TEST_ASAN 1
#endif
#endif
#ifndef THOR_TEST_ASAN
#define THOR_TEST_ASAN 0
#endif

// A batch too large for the memory (here an address-space limit) is explained in terms of
// --max-tokens instead of an allocator's dump.
TEST(Faults, OutOfMemoryNamesMaxTokens) {
#if THOR_TEST_ASAN
  GTEST_SKIP() << "AddressSanitizer maps terabytes of shadow memory: the process cannot start under ulimit -v";
#endif
  auto data = thor::testing::prepared_toy_data("faults_data", 200, 12, 51);
  auto dir = thor::testing::temp_dir("faults_oom");
  // a 400k-wide FFN: the model fits in 3 GB of address space, one batch's activations do not
  auto r = run_in_dir("ulimit -v 3000000; " + std::string(THOR_BIN) + " --threads 1 train " + data.string() +
                  " --encoder-embed-dim 32 --ffn-dim 400000 --encoder-layers 1 --decoder-layers 1 --attention-heads 2"
                  " --share-all-embeddings --max-tokens 4000 --max-update 2 --no-eval-bleu --no-progress --save-dir " +
                  (dir / "ck").string(),
              dir);
  EXPECT_EQ(r.code, 1);
  const auto line = error_line(r);
  EXPECT_EQ(line.rfind("thor: error: train: out of memory in update 1", 0), 0u) << line;
  EXPECT_NE(line.find("lower --max-tokens"), std::string::npos) << line;
}
