// Shared test helpers: temporary directories and a generated toy parallel corpus
// (a word-for-word "language" with reordering), so no test needs external data.
#pragma once
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "thor/common/config.h"
#include "thor/data/prepare.h"

namespace thor::testing {

// A Transformer small enough for exact comparisons: 40 tokens, 2 + 2 layers of width d
// (FFN 2d), shared embeddings. Tests set what they exercise on top.
inline thor::ModelConfig small_model_config(int64_t d_model, int64_t heads, double dropout) {
  thor::ModelConfig c;
  c.vocab_size = 40;
  c.d_model = d_model;
  c.ffn_dim = 2 * d_model;
  c.heads = heads;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.dropout = dropout;
  c.share_all_embeddings = true;
  c.max_positions = 64;
  return c;
}

// Every directory temp_dir made in this process: main removes them when all tests passed
// and keeps them, to look into, when one failed (or THOR_KEEP_TEST_DIRS is set).
inline std::vector<std::filesystem::path>& made_temp_dirs() {
  static std::vector<std::filesystem::path> dirs;
  return dirs;
}

inline std::filesystem::path temp_dir(const std::string& name) {
  auto base = std::filesystem::temp_directory_path() /
              ("thor_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  made_temp_dirs().push_back(base);
  return base;
}

inline void write_file(const std::filesystem::path& p, const std::vector<std::string>& lines) {
  std::ofstream out(p, std::ios::binary);
  for (auto& l : lines) out << l << '\n';
}

// A directory that `make` fills once for every test process that asks for `key` (ctest runs
// each test in a process of its own, so a per-process cache would make it once per test):
// $THOR_TEST_CACHE or <tmp>/thor_test_cache_<uid>, then key-<this test binary's path hashed>-
// <modification times of the thor binary and of this test binary>, so a rebuild makes it
// again. The first process makes it under an exclusive lock while the others wait; one its
// maker left half-made (a failed expectation in the test so far, a crash) is made again.
// Every process holds a shared lock on the entry it uses (its .use file) until it exits, and
// the maker of a new entry removes the entries its test binary's earlier builds made that no
// process makes or uses, so the cache keeps one entry per key and test binary, not one per
// build (a build and its sanitized twin keep theirs). `make` reports failures through EXPECT / ASSERT.
inline std::filesystem::path shared_dir(const std::string& key, const std::function<void(const std::filesystem::path&)>& make) {
  namespace fs = std::filesystem;
  auto stamp = [](const fs::path& p) {  // modification time in nanoseconds
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + p.string());
    return std::to_string(st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
  };
  auto lock = [](const fs::path& dir, const char* what, int how) {  // dir.what opened and locked; -1 where refused
    const int fd = ::open((dir.string() + what).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd >= 0 && ::flock(fd, how) == 0) return fd;
    if (fd >= 0) ::close(fd);
    return -1;
  };
  const char* env = std::getenv("THOR_TEST_CACHE");
  const fs::path root = env && *env ? fs::path(env) : fs::temp_directory_path() / ("thor_test_cache_" + std::to_string(::getuid()));
  fs::create_directories(root);
  const fs::path exe = fs::read_symlink("/proc/self/exe");
  const std::string family = key + "-" + std::to_string(std::hash<std::string>{}(exe.string())) + "-";
  const fs::path dir = root / (family + stamp(THOR_BIN) + "-" + stamp(exe));
  const int making = lock(dir, ".lock", LOCK_EX);
  if (making < 0 || lock(dir, ".use", LOCK_SH) < 0) throw std::runtime_error("cannot lock " + dir.string());
  if (!fs::exists(dir / ".complete")) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    make(dir);
    if (!::testing::Test::HasFailure()) write_file(dir / ".complete", {"made by pid " + std::to_string(::getpid())});
    for (const auto& e : fs::directory_iterator(root)) {  // earlier builds' entries that no process makes or uses
      if (!e.is_directory() || e.path() == dir || e.path().filename().string().rfind(family, 0) != 0) continue;
      const int m = lock(e.path(), ".lock", LOCK_EX | LOCK_NB);
      const int u = m < 0 ? -1 : lock(e.path(), ".use", LOCK_EX | LOCK_NB);
      if (u >= 0) {
        std::error_code ec;  // the lock files stay: a process that opened them finds no entry and makes one
        fs::remove_all(e.path(), ec);
        ::close(u);
      }
      if (m >= 0) ::close(m);
    }
  }
  ::close(making);  // the use lock stays with this process
  return dir;
}

// A file's bytes, whole.
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A shell command's exit status (-1 when it did not exit).
inline int sh(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline std::vector<std::string> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// Source sentences of 3..8 words over a 24-word vocabulary; the target maps each word to
// its own "translation" and swaps adjacent pairs, so a model has something to learn.
inline void make_toy_corpus(const std::filesystem::path& prefix, int n, unsigned seed,
                            const std::string& src = "src", const std::string& tgt = "tgt") {
  static const std::vector<std::string> words = {
      "red", "blue", "dog", "cat", "runs", "sleeps", "big", "small", "house", "tree", "man", "woman",
      "eats", "sees", "green", "old", "young", "car", "street", "park", "child", "ball", "plays", "water"};
  std::mt19937 rng(seed);
  std::vector<std::string> s, t;
  for (int i = 0; i < n; ++i) {
    int len = 3 + static_cast<int>(rng() % 6);
    std::vector<int> ids(len);
    for (auto& id : ids) id = static_cast<int>(rng() % words.size());
    std::string a, b;
    std::vector<int> out = ids;
    for (size_t k = 0; k + 1 < out.size(); k += 2) std::swap(out[k], out[k + 1]);
    for (int k = 0; k < len; ++k) {
      a += (k ? " " : "") + words[ids[k]];
      b += (k ? " " : "") + std::string("x") + words[out[k]] + "o";
    }
    s.push_back(a + ".");
    t.push_back(b + ".");
  }
  write_file(prefix.string() + "." + src, s);
  write_file(prefix.string() + "." + tgt, t);
}

// A multi-way parallel toy corpus: PREFIX.en over the toy words and, per target language,
// its own rule (de: "x...o" with adjacent words swapped; fr: "y...i" in reverse order; cs:
// "z...a" in order).
inline void make_multiway_corpus(const std::filesystem::path& prefix, int n, unsigned seed,
                                 const std::vector<std::string>& targets) {
  make_toy_corpus(prefix, n, seed, "en", "de");
  auto en = read_file(prefix.string() + ".en");
  for (const auto& lang : targets) {
    if (lang == "de") continue;
    std::vector<std::string> out;
    for (const auto& line : en) {
      std::vector<std::string> words;
      std::string w;
      for (char c : line.substr(0, line.size() - 1)) {  // without the final "."
        if (c == ' ') words.push_back(w), w.clear();
        else w += c;
      }
      words.push_back(w);
      if (lang == "fr") std::reverse(words.begin(), words.end());
      std::string t;
      for (size_t k = 0; k < words.size(); ++k)
        t += (k ? " " : "") + (lang == "fr" ? "y" + words[k] + "i" : "z" + words[k] + "a");
      out.push_back(t + ".");
    }
    write_file(prefix.string() + "." + lang, out);
  }
}

// A toy corpus prepared once per process under temp_dir(name): returns the data directory.
inline std::filesystem::path prepared_toy_data(const std::string& name, int n_train, int n_valid, unsigned seed) {
  static std::map<std::string, std::filesystem::path> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  auto dir = temp_dir(name);
  make_toy_corpus(dir / "train", n_train, seed);
  make_toy_corpus(dir / "valid", n_valid, seed + 1);
  thor::PrepareOptions o;
  o.src_lang = "src", o.tgt_lang = "tgt";
  o.trainpref = (dir / "train").string();
  o.validpref = (dir / "valid").string();
  o.destdir = (dir / "data").string();
  o.vocab_size = 80;
  thor::prepare_dataset(o);
  return cache[name] = dir / "data";
}

inline void expect_close(const torch::Tensor& a, const torch::Tensor& b, double atol = 1e-5,
                         double rtol = 1e-4) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(torch::allclose(a, b, rtol, atol))
      << "max abs diff " << (a - b).abs().max().item<double>();
}

}  // namespace thor::testing
