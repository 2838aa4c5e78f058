// prepare's validation (each error and filter), the binary dataset and batching.
#include <gtest/gtest.h>

#include <cstring>
#include <iterator>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/data/corpus.h"
#include "thor/data/dataset.h"
#include "thor/data/meta.h"
#include "thor/data/prepare.h"
#include "thor/data/vocab.h"

namespace fs = std::filesystem;
using thor::testing::temp_dir;
using thor::testing::write_file;

namespace {

thor::PrepareOptions options(const fs::path& dir) {
  thor::PrepareOptions o;
  o.src_lang = "src";
  o.tgt_lang = "tgt";
  o.trainpref = (dir / "train").string();
  o.validpref = (dir / "valid").string();
  o.destdir = (dir / "data").string();
  o.vocab_size = 100;
  return o;
}

TEST(Prepare, LineCountMismatchNamesBothFiles) {
  auto dir = temp_dir("mismatch");
  write_file(dir / "train.src", {"a b", "c d", "e"});
  write_file(dir / "train.tgt", {"x y", "z"});
  write_file(dir / "valid.src", {"a"});
  write_file(dir / "valid.tgt", {"x"});
  try {
    thor::prepare_dataset(options(dir));
    FAIL() << "expected thor::Error";
  } catch (const thor::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find((dir / "train.src").string() + " has 3 lines"), std::string::npos) << msg;
    EXPECT_NE(msg.find((dir / "train.tgt").string() + " has 2"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(dir / "data" / "meta.json"));  // nothing written
}

TEST(Prepare, FiltersAndReportsEachProblemWithFileAndLine) {
  auto dir = temp_dir("filters");
  thor::testing::make_toy_corpus(dir / "train", 300, 1);
  thor::testing::make_toy_corpus(dir / "valid", 20, 2);
  auto src = thor::testing::read_file(dir / "train.src");
  auto tgt = thor::testing::read_file(dir / "train.tgt");
  src[4] = "bad \xff\xfe utf8";                          // line 5: invalid UTF-8
  tgt[9] = "   ";                                      // line 10: empty target
  std::string long_line;
  for (int i = 0; i < 60; ++i) long_line += "red blue ";
  src[14] = long_line;                                 // line 15: over-long
  tgt[14] = long_line;
  src[19] = "red";                                     // line 20: extreme ratio
  tgt[19] = long_line.substr(0, 200);
  write_file(dir / "train.src", src);
  write_file(dir / "train.tgt", tgt);
  auto o = options(dir);
  o.filter.max_len = 50;
  o.filter.max_ratio = 5;
  int saved = thor::log_level();
  thor::log_level() = 1;
  ::testing::internal::CaptureStderr();
  auto sum = thor::prepare_dataset(o);
  std::string err = ::testing::internal::GetCapturedStderr();
  thor::log_level() = saved;
  EXPECT_EQ(sum.train_text.invalid_utf8, 1);
  EXPECT_EQ(sum.train_text.empty, 1);
  EXPECT_EQ(sum.train_len.too_long, 1);
  EXPECT_EQ(sum.train_len.bad_ratio, 1);
  EXPECT_EQ(sum.train, 296);
  EXPECT_NE(err.find((dir / "train.src").string() + ":5: invalid UTF-8"), std::string::npos) << err;
  EXPECT_NE(err.find((dir / "train.tgt").string() + ":10: empty line"), std::string::npos) << err;
  EXPECT_NE(err.find((dir / "train.src").string() + ":15: over-long pair"), std::string::npos) << err;
  EXPECT_NE(err.find((dir / "train.src").string() + ":20: length ratio"), std::string::npos) << err;
  EXPECT_NE(err.find("4 removed"), std::string::npos) << err;

  // The dataset round-trips and keeps original line numbers.
  auto ds = thor::Dataset::load((dir / "data" / "train.bin").string());
  ASSERT_EQ(ds.size(), 296u);
  EXPECT_EQ(ds.line[4], 6);  // lines 1-4 kept, 5 dropped
  auto meta = thor::read_meta((dir / "data").string());
  EXPECT_EQ(meta.splits.at("train"), 296);
  auto vocab = thor::Vocab::from_file((dir / "data" / "spm.model").string());
  EXPECT_EQ(vocab.decode(ds.src_ids(0)), src[0]);
  EXPECT_NE(vocab.piece_to_id("<2tgt>"), thor::Vocab::kUnk);  // language tag reserved
}

TEST(Prepare, EmptyTrainingSetIsAnError) {
  auto dir = temp_dir("empty");
  write_file(dir / "train.src", {"", " "});
  write_file(dir / "train.tgt", {"a", "b"});
  write_file(dir / "valid.src", {"a"});
  write_file(dir / "valid.tgt", {"x"});
  EXPECT_THROW(thor::prepare_dataset(options(dir)), thor::Error);
}

TEST(Prepare, MissingFileIsAnError) {
  auto dir = temp_dir("missing");
  try {
    thor::prepare_dataset(options(dir));
    FAIL();
  } catch (const thor::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.src: cannot open"), std::string::npos) << e.what();
  }
}

TEST(Corpus, Utf8Validation) {
  EXPECT_TRUE(thor::is_valid_utf8("Männer — ok 😀"));
  EXPECT_FALSE(thor::is_valid_utf8("\xc3"));              // truncated
  EXPECT_FALSE(thor::is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(thor::is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(thor::is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
}

TEST(Batching, RespectsTokenBudgetAndCoversEverything) {
  thor::Dataset ds;
  std::mt19937 rng(3);
  for (int i = 0; i < 500; ++i) {
    std::vector<int> s(1 + rng() % 30, 5), t(1 + rng() % 30, 6);
    ds.add(s, t, i + 1);
  }
  ds.add(std::vector<int>(100, 5), {6}, 501);  // longer than the budget: dropped
  int64_t dropped = 0;
  auto batches = thor::make_batches(ds, 64, 0, 1, &dropped);
  EXPECT_EQ(dropped, 1);
  std::vector<int> seen(ds.size(), 0);
  for (auto& b : batches) {
    auto batch = thor::collate(ds, b, 0, 2, 3);
    EXPECT_LE(batch.src.numel(), 64);
    EXPECT_LE(batch.tgt_in.numel(), 64);
    for (auto i : b) ++seen[i];
    // Teacher forcing: tgt_in is bos + y, tgt_out is y + eos.
    EXPECT_EQ(batch.tgt_in[0][0].item<int64_t>(), 2);
    EXPECT_EQ(batch.tgt_out[0][ds.tgt_len(b[0])].item<int64_t>(), 3);
    EXPECT_EQ(batch.src[0][ds.src_len(b[0])].item<int64_t>(), 3);
    // token counts equal the non-pad entries of the tensors
    EXPECT_EQ(batch.src_tokens, batch.src.ne(0).sum().item<int64_t>());
    EXPECT_EQ(batch.ntokens, batch.tgt_out.ne(0).sum().item<int64_t>());
  }
  for (size_t i = 0; i + 1 < ds.size(); ++i) EXPECT_EQ(seen[i], 1) << i;
  EXPECT_EQ(seen.back(), 0);
  // Same seed, same batches.
  EXPECT_EQ(thor::make_batches(ds, 64, 0, 1), batches);
}

TEST(Batching, SplitIntoWorkerShardsKeepsOrderAndBalancesTokens) {
  thor::Dataset ds;
  std::mt19937 rng(5);
  std::vector<int64_t> idx;
  for (int i = 0; i < 40; ++i) {
    ds.add(std::vector<int>(1 + rng() % 20, 5), std::vector<int>(1 + rng() % 20, 6), i + 1);
    idx.push_back(39 - i);  // any order: shards keep the batch's
  }
  auto tokens = [&](const std::vector<int64_t>& part) {
    int64_t n = 0;
    for (auto i : part) n += ds.tgt_len(static_cast<size_t>(i)) + 1;
    return n;
  };
  const int64_t total = tokens(idx);
  for (int64_t parts : {1, 2, 3, 7}) {
    auto shards = thor::split_batch(ds, idx, parts);
    ASSERT_EQ(static_cast<int64_t>(shards.size()), parts);
    std::vector<int64_t> joined;
    for (auto& sh : shards) {
      ASSERT_FALSE(sh.empty());
      joined.insert(joined.end(), sh.begin(), sh.end());
      // each shard within one sentence (<= 21 tokens) of an equal share
      EXPECT_LE(std::abs(static_cast<double>(tokens(sh)) - static_cast<double>(total) / parts), 21.0) << parts;
    }
    EXPECT_EQ(joined, idx) << parts;
  }
  // more shards than sentences: one sentence each
  std::vector<int64_t> three(idx.begin(), idx.begin() + 3);
  auto shards = thor::split_batch(ds, three, 8);
  ASSERT_EQ(shards.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(shards[i], std::vector<int64_t>{three[i]});
}

TEST(DatasetFile, CorruptFileIsAnError) {
  auto dir = temp_dir("corrupt");
  write_file(dir / "x.bin", {"not a dataset"});
  EXPECT_THROW(thor::Dataset::load((dir / "x.bin").string()), thor::Error);
  // a real file, then damaged in place: each damage is refused before it is used
  thor::Dataset ds;
  ds.add({5, 6, 7}, {8, 9}, 1);
  ds.add({10}, {11, 12, 13}, 2);
  const auto good = (dir / "good.bin").string();
  ds.save(good);
  auto loaded = thor::Dataset::load(good);
  EXPECT_EQ(loaded.tgt_ids(1), (std::vector<int>{11, 12, 13}));
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  auto refused = [&](const std::string& damaged, const std::string& words) {
    const auto p = (dir / "damaged.bin").string();
    std::ofstream(p, std::ios::binary) << damaged;
    try {
      thor::Dataset::load(p);
      ADD_FAILURE() << "loaded: " << words;
    } catch (const thor::Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  auto with = [&](size_t at, uint64_t v) {
    std::string d = bytes;
    std::memcpy(&d[at], &v, sizeof v);
    return d;
  };
  // the first section's count (after the 8-byte magic): a huge one allocates nothing
  refused(with(8, uint64_t{1} << 37), "damaged dataset file (a section of 137438953472 entries");
  // cut short: the last section is missing bytes
  // src_off = {0, 3, 4} -> {0, 5, 4}: offsets that go backwards
  refused(with(8 + 8 + 8, 5), "inconsistent dataset file");
  refused(bytes.substr(0, bytes.size() - 3), "truncated or damaged dataset file (a section of 2 entries, 13 bytes left)");
  refused(bytes + "x", "bytes after its data");
}

TEST(DatasetFile, MetaFieldsOfTheWrongTypeAreRefused) {
  auto dir = temp_dir("meta_types");
  const std::string good =
      R"({"format":"thor-data-1","src_lang":"en","tgt_lang":"de","vocab_size":90,"splits":{"train":3},)"
      R"("lang_tags":["<2en>","<2de>"],"pairs":[{"src":"en","tgt":"de","splits":{"train":3}}]})";
  auto refused = [&](const std::string& from, const std::string& to, const std::string& words) {
    std::string m = good;
    m.replace(m.find(from), from.size(), to);
    std::ofstream(dir / "meta.json") << m;
    try {
      thor::read_meta(dir.string());
      ADD_FAILURE() << "accepted: " << m;
    } catch (const thor::Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  std::ofstream(dir / "meta.json") << good;
  EXPECT_EQ(thor::read_meta(dir.string()).vocab_size, 90);
  // a float far outside int64 (undefined behaviour in a plain get<int64_t>(): found by fuzzing)
  refused("\"vocab_size\":90", "\"vocab_size\":1.5e109", "'vocab_size' must be an integer");
  refused("\"train\":3}", "\"train\":\"3\"}", "'splits' must be an object of integers");
  refused("\"src_lang\":\"en\"", "\"src_lang\":7", "'src_lang' must be a string");
  refused("\"lang_tags\":[\"<2en>\",", "\"lang_tags\":[1,", "'lang_tags' must be a list of strings");
  refused("\"tgt\":\"de\"", "\"tgt\":null", "'tgt' must be a string");
}

}  // namespace
