// The test helpers' own behaviour where it outlives a test: the cache shared_dir keeps
// across test processes and builds.
#include <gtest/gtest.h>

#include "fixtures.h"

namespace fs = std::filesystem;

// An entry is made once and reused; a new build's entry replaces the earlier builds' entries
// of the same key and test binary, except one a process still uses; other keys and other
// test binaries' entries stay.
TEST(Fixtures, SharedDirKeepsOneEntryPerKeyAndTestBinary) {
  const auto root = thor::testing::temp_dir("fixtures_cache");
  const char* before = std::getenv("THOR_TEST_CACHE");
  const std::string saved = before ? before : "";
  ::setenv("THOR_TEST_CACHE", root.c_str(), 1);

  const std::string family = "k-" + std::to_string(std::hash<std::string>{}(fs::read_symlink("/proc/self/exe").string())) + "-";
  auto entry = [&](const std::string& name) {  // a finished entry as an earlier build left it
    fs::create_directories(root / name);
    thor::testing::write_file(root / name / ".complete", {"made"});
    thor::testing::write_file(root / name / "payload", {"old"});
  };
  entry(family + "1-2");                                   // an earlier build: removed
  entry(family + "3-4");                                   // an earlier build still in use: kept
  entry("other-" + family.substr(2) + "1-2");              // another key: kept
  entry("k-12345-1-2");                                    // another test binary: kept
  const int in_use = ::open((root / (family + "3-4.use")).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  ASSERT_GE(in_use, 0);
  ASSERT_EQ(::flock(in_use, LOCK_SH), 0);

  int made = 0;
  const auto dir = thor::testing::shared_dir("k", [&](const fs::path& d) {
    ++made;
    thor::testing::write_file(d / "payload", {"new"});
  });
  EXPECT_EQ(made, 1);
  EXPECT_EQ(thor::testing::read_file(dir / "payload"), std::vector<std::string>{"new"});
  EXPECT_EQ(dir.filename().string().rfind(family, 0), 0u) << dir;
  EXPECT_FALSE(fs::exists(root / (family + "1-2")));
  EXPECT_TRUE(fs::exists(root / (family + "3-4") / "payload"));
  EXPECT_TRUE(fs::exists(root / ("other-" + family.substr(2) + "1-2") / "payload"));
  EXPECT_TRUE(fs::exists(root / "k-12345-1-2" / "payload"));
  // made once: a second call (another test process would do the same) finds it
  EXPECT_EQ(thor::testing::shared_dir("k", [&](const fs::path&) { ++made; }), dir);
  EXPECT_EQ(made, 1);
  // once nobody uses it, the next new build removes it
  ::close(in_use);
  fs::remove(dir / ".complete");  // as a rebuild's new entry would be: not made yet
  thor::testing::shared_dir("k", [&](const fs::path& d) { thor::testing::write_file(d / "payload", {"again"}); });
  EXPECT_FALSE(fs::exists(root / (family + "3-4")));

  if (before) ::setenv("THOR_TEST_CACHE", saved.c_str(), 1);
  else ::unsetenv("THOR_TEST_CACHE");
}
