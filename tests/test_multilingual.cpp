// Multilingual data (prepare --lang-pairs): one dataset and one joint SentencePiece model
// over several language pairs, the target tag before every source, temperature sampling
// over the pairs, per-pair validation, and translation into a chosen target language.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/data/dataset.h"
#include "thor/data/meta.h"
#include "thor/data/sampling.h"
#include "thor/data/vocab.h"
#include "thor/decode/translator.h"
#include "thor/train/checkpoint.h"
#include "thor/train/trainer.h"

namespace fs = std::filesystem;

namespace {

// en-de and en-fr multi-way (P.en, P.de, P.fr) and en-cs from files of its own
// (P.en-cs.en, P.en-cs.cs: fairseq's layout), so the pairs have different sizes.
fs::path multilingual_data() {
  static fs::path data;
  if (!data.empty()) return data;
  auto dir = thor::testing::temp_dir("multilingual");
  thor::testing::make_multiway_corpus(dir / "train", 240, 31, {"de", "fr"});
  thor::testing::make_multiway_corpus(dir / "valid", 12, 32, {"de", "fr"});
  thor::testing::make_multiway_corpus(dir / "train.en-cs", 60, 33, {"cs"});
  thor::testing::make_multiway_corpus(dir / "valid.en-cs", 8, 34, {"cs"});
  thor::PrepareOptions o;
  o.lang_pairs = "en-de,en-fr,en-cs";
  o.trainpref = (dir / "train").string();
  o.validpref = (dir / "valid").string();
  o.destdir = (dir / "data").string();
  o.vocab_size = 120;
  auto sum = thor::prepare_dataset(o);
  EXPECT_EQ(sum.pairs.size(), 3u);
  return data = dir / "data";
}

thor::TrainOptions tiny_train(const fs::path& save, int64_t max_update) {
  thor::TrainOptions o;
  o.data_dir = multilingual_data().string();
  o.save_dir = save.string();
  o.device = "cpu";
  o.max_tokens = 400;
  o.lr = 2e-3;
  o.warmup_updates = 3;
  o.max_update = max_update;
  o.log_interval = 2;
  o.validate_interval_updates = max_update;
  o.eval_beam = 1;
  o.progress = false;
  o.workers = 1;
  return o;
}

thor::ModelConfig tiny_model() {
  thor::ModelConfig c;
  c.d_model = 32, c.ffn_dim = 64, c.heads = 2, c.encoder_layers = 1, c.decoder_layers = 1;
  c.share_all_embeddings = true;
  return c;
}

}  // namespace

// One dataset: the pairs in order with their own sizes, one vocabulary holding every
// language's tag, every source starting with its pair's target tag, per-pair raw text.
TEST(Multilingual, PrepareBuildsOneTaggedDatasetFromSeveralPairs) {
  const auto data = multilingual_data();
  auto meta = thor::read_meta(data.string());
  ASSERT_EQ(meta.pairs.size(), 3u);
  EXPECT_TRUE(meta.target_tags);
  EXPECT_EQ(meta.pairs[0].name(), "en-de");
  EXPECT_EQ(meta.pairs[2].name(), "en-cs");
  EXPECT_EQ(meta.pairs[0].splits.at("train"), 240);
  EXPECT_EQ(meta.pairs[1].splits.at("train"), 240);
  EXPECT_EQ(meta.pairs[2].splits.at("train"), 60);
  EXPECT_EQ(meta.pairs[2].splits.at("valid"), 8);
  EXPECT_EQ(meta.splits.at("train"), 540);
  EXPECT_EQ(meta.tgt_lang, "cs,de,fr");
  EXPECT_EQ(meta.lang_tags, (std::vector<std::string>{"<2cs>", "<2de>", "<2en>", "<2fr>"}));
  auto vocab = thor::Vocab::from_file((data / "spm.model").string());
  auto train = thor::Dataset::load((data / "train.bin").string());
  ASSERT_EQ(train.size(), 540u);
  for (size_t p = 0; p < meta.pairs.size(); ++p) {
    const int tag = vocab.piece_to_id(thor::lang_tag(meta.pairs[p].tgt));
    ASSERT_NE(tag, thor::Vocab::kUnk);
    const auto first = meta.first_of(p, "train");
    for (int64_t i = first; i < first + meta.pairs[p].splits.at("train"); ++i)
      ASSERT_EQ(train.src_ids(static_cast<size_t>(i)).front(), tag) << meta.pairs[p].name() << " example " << i;
    EXPECT_EQ(thor::testing::read_file(thor::raw_file(data.string(), meta, "valid", p, meta.pairs[p].tgt)).size(),
              static_cast<size_t>(meta.pairs[p].splits.at("valid")));
  }
  // targets are never tagged; a French target is French
  EXPECT_EQ(vocab.decode(train.tgt_ids(300)).front(), 'y');
  EXPECT_THROW(thor::parse_lang_pairs("en-de,ende"), thor::Error);
  EXPECT_THROW(thor::parse_lang_pairs("en-en"), thor::Error);
  EXPECT_THROW(thor::parse_lang_pairs("en-de,en-de"), thor::Error);
}

// fairseq's temperature sampling: T = 1 keeps the sizes' proportions, larger T moves toward
// equal shares; an epoch holds as many examples as the data, each pair's share of them, its
// examples repeated (up-sampled) or a subset (down-sampled), the same for the same epoch.
TEST(Multilingual, TemperatureSamplingSharesAndEpochs) {
  const std::vector<int64_t> sizes = {300, 100};
  auto t1 = thor::temperature_shares(sizes, 1.0);
  EXPECT_NEAR(t1[0], 0.75, 1e-12);
  auto t5 = thor::temperature_shares(sizes, 5.0);
  const double w0 = std::pow(300.0, 0.2), w1 = std::pow(100.0, 0.2);
  EXPECT_NEAR(t5[0], w0 / (w0 + w1), 1e-12);
  EXPECT_NEAR(thor::temperature_shares(sizes, 1e9)[1], 0.5, 1e-6);
  EXPECT_THROW(thor::temperature_shares(sizes, 0.0), thor::Error);
  auto e = thor::sample_epoch(sizes, 5.0, 1, 1);
  EXPECT_EQ(e.size(), 400u);
  std::map<int64_t, int> count;
  int first_pair = 0;
  for (auto i : e) {
    ASSERT_GE(i, 0);
    ASSERT_LT(i, 400);
    ++count[i];
    first_pair += i < 300;
  }
  EXPECT_EQ(first_pair, static_cast<int>(std::llround(t5[0] * 400)));
  for (int64_t i = 300; i < 400; ++i) EXPECT_GE(count[i], 1) << "an up-sampled pair keeps every example";
  for (int64_t i = 0; i < 300; ++i) EXPECT_LE(count[i], 1) << "a down-sampled pair repeats none";
  EXPECT_EQ(thor::sample_epoch(sizes, 5.0, 1, 1), e);
  EXPECT_NE(thor::sample_epoch(sizes, 5.0, 1, 2), e);
  // batching a sample covers exactly its examples, repeats included
  auto data = multilingual_data();
  auto ds = thor::Dataset::load((data / "train.bin").string());
  auto sample = thor::sample_epoch({240, 240, 60}, 3.0, 7, 1);
  std::map<int64_t, int> want, got;
  for (auto i : sample) ++want[i];
  for (auto& b : thor::make_batches(ds, sample, 400, 0, 3))
    for (auto i : b) ++got[i];
  EXPECT_EQ(got, want);
}

// Validation reports every pair and their means; translate puts the target tag where
// prepare put it, and the model's metadata decides what --target-lang accepts.
TEST(Multilingual, TrainValidatesEveryPairAndTranslatesIntoTheChosenLanguage) {
  auto dir = thor::testing::temp_dir("multilingual_train");
  auto o = tiny_train(dir / "ck", 6);
  o.sampling_temperature = 2.0;
  torch::manual_seed(3);
  thor::train(o, tiny_model());
  nlohmann::json valid;
  for (auto& l : thor::testing::read_file(dir / "ck" / "train_log.jsonl")) {
    auto j = nlohmann::json::parse(l);
    if (j.contains("valid_loss")) valid = j;
  }
  ASSERT_TRUE(valid.contains("valid_pairs")) << valid.dump();
  double loss = 0, bleu = 0;
  for (auto name : {"en-de", "en-fr", "en-cs"}) {
    ASSERT_TRUE(valid["valid_pairs"].contains(name)) << valid.dump();
    loss += valid["valid_pairs"][name]["loss"].get<double>() / 3;
    bleu += valid["valid_pairs"][name]["bleu"].get<double>() / 3;
  }
  EXPECT_NEAR(valid["valid_loss"].get<double>(), loss, 1e-9);
  EXPECT_NEAR(valid["valid_bleu"].get<double>(), bleu, 1e-9);

  auto lm = thor::load_model((dir / "ck" / "checkpoint_last.pt").string(), torch::kCPU);
  const auto meta = lm.train_state["meta"];
  const int de = thor::target_lang_prefix(meta, lm.vocab, "de");
  EXPECT_EQ(de, lm.vocab.piece_to_id("<2de>"));
  EXPECT_THROW(thor::target_lang_prefix(meta, lm.vocab, ""), thor::Error);
  EXPECT_THROW(thor::target_lang_prefix(meta, lm.vocab, "en"), thor::Error);  // a tag, not a target
  // translate puts the tag where prepare put it: before the source's own pieces (not as
  // text, which SentencePiece would give a word boundary piece of its own)
  const auto data = multilingual_data();
  auto dmeta = thor::read_meta(data.string());
  auto valid_set = thor::Dataset::load((data / "valid.bin").string());
  const auto first_de = thor::testing::read_file(thor::raw_file(data.string(), dmeta, "valid", 0, "en")).front();
  auto ids = lm.vocab.encode(first_de);
  ids.insert(ids.begin(), de);
  EXPECT_EQ(valid_set.src_ids(static_cast<size_t>(dmeta.first_of(0, "valid"))), ids);
  std::vector<std::string> lines = {"red dog runs.", "the old man sees a ball."};
  thor::TranslateOptions to;
  to.search.beam = 2;
  to.source_prefix = de;
  auto with_prefix = thor::translate_lines(lm.model, lm.vocab, lines, to, torch::kCPU);
  ASSERT_EQ(with_prefix.size(), 2u);
  EXPECT_FALSE(with_prefix[0].empty());
  // a bilingual model takes no tag, and names its one target
  nlohmann::json bilingual = {{"tgt_lang", "de"}, {"target_tags", false}};
  EXPECT_EQ(thor::target_lang_prefix(bilingual, lm.vocab, ""), -1);
  EXPECT_EQ(thor::target_lang_prefix(bilingual, lm.vocab, "de"), -1);
  EXPECT_THROW(thor::target_lang_prefix(bilingual, lm.vocab, "fr"), thor::Error);
}
