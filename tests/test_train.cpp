// Checkpoints: save -> load gives identical outputs; resuming equals training straight
// through (model, optimizer, schedule, RNG and data position restored).
#include <gtest/gtest.h>

#include <fstream>
#include <cstdio>
#include <random>
#include <map>
#include <iterator>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/common/file_io.h"
#include "thor/data/prepare.h"
#include "thor/train/checkpoint.h"
#include "thor/train/trainer.h"

namespace fs = std::filesystem;

namespace {

fs::path prepared_toy_data() { return thor::testing::prepared_toy_data("train_data", 200, 12, 11); }

thor::ModelConfig tiny_model() {
  thor::ModelConfig c;
  c.d_model = 32, c.ffn_dim = 64, c.heads = 2, c.encoder_layers = 1, c.decoder_layers = 1;
  c.dropout = 0.3;  // dropout on: resume must restore the RNG
  c.share_all_embeddings = true;
  return c;
}

thor::TrainOptions tiny_train(const fs::path& save_dir, int64_t max_update) {
  thor::TrainOptions o;
  o.data_dir = prepared_toy_data().string();
  o.save_dir = save_dir.string();
  o.device = "cpu";
  o.max_tokens = 300;  // several batches per epoch, so resume lands mid-epoch
  o.update_freq = 2;
  o.lr = 1e-3;
  o.warmup_updates = 3;
  o.weight_decay = 1e-4;
  o.clip_norm = 1.0;
  o.max_update = max_update;
  o.log_interval = 2;
  o.eval_beam = 2;
  o.eval_max_sentences = 4;
  o.progress = false;
  return o;
}

void expect_same_parameters(thor::Transformer& a, thor::Transformer& b) {
  auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (auto& kv : pa) EXPECT_TRUE(torch::equal(kv.value(), pb[kv.key()])) << kv.key();
}

// checkpoint_last.pt of two save dirs: the same parameters, bit for bit
void expect_same_last_checkpoints(const fs::path& a, const fs::path& b) {
  auto ma = thor::load_model((a / "checkpoint_last.pt").string(), torch::kCPU);
  auto mb = thor::load_model((b / "checkpoint_last.pt").string(), torch::kCPU);
  expect_same_parameters(ma.model, mb.model);
}

TEST(Checkpoint, SaveLoadGivesIdenticalOutputs) {
  auto save = thor::testing::temp_dir("ckpt_saveload");
  thor::train(tiny_train(save, 2), tiny_model());
  auto a = thor::load_model((save / "checkpoint_last.pt").string(), torch::kCPU);
  auto b = thor::load_model((save / "checkpoint_last.pt").string(), torch::kCPU);
  auto src = torch::randint(4, a.config.vocab_size, {2, 6}, torch::kLong);
  auto tgt = torch::randint(4, a.config.vocab_size, {2, 5}, torch::kLong);
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(a.model->forward(src, tgt), b.model->forward(src, tgt)));
  EXPECT_EQ(a.train_state.at("position").at("num_updates"), 2);
  EXPECT_EQ(a.vocab.serialized(), b.vocab.serialized());
  EXPECT_TRUE(fs::exists(save / "checkpoint_best.pt"));
  // One JSON line per log interval in the save dir.
  auto log = thor::testing::read_file(save / "train_log.jsonl");
  ASSERT_FALSE(log.empty());
  auto first = nlohmann::json::parse(log.front());
  for (auto key : {"update", "loss", "nll", "lr", "tgt_tok_s", "elapsed_s"}) EXPECT_TRUE(first.contains(key)) << key;
}

TEST(Checkpoint, ResumeEqualsUninterruptedTraining) {
  auto straight = thor::testing::temp_dir("ckpt_straight");
  auto resumed = thor::testing::temp_dir("ckpt_resumed");
  // two workers: their per-batch dropout seeds come from the checkpointed global RNG
  auto train_opt = [](const fs::path& save, int64_t max_update) {
    auto o = tiny_train(save, max_update);
    o.workers = 2;
    return o;
  };
  torch::manual_seed(123);
  thor::train(train_opt(straight, 6), tiny_model());
  torch::manual_seed(123);
  thor::train(train_opt(resumed, 3), tiny_model());
  // resumed again at its budget (a chunked study rerun): nothing trained, validated or logged
  const auto log_at_3 = thor::testing::read_file(resumed / "train_log.jsonl");
  auto again = train_opt(resumed, 3);
  again.resume = true;
  thor::train(again, tiny_model());
  EXPECT_EQ(thor::testing::read_file(resumed / "train_log.jsonl"), log_at_3);
  auto opt = train_opt(resumed, 6);
  opt.resume = true;
  torch::manual_seed(999);  // resume must not depend on the caller's RNG
  thor::train(opt, tiny_model());
  auto a = thor::load_model((straight / "checkpoint_last.pt").string(), torch::kCPU);
  auto b = thor::load_model((resumed / "checkpoint_last.pt").string(), torch::kCPU);
  auto pa = a.train_state.at("position"), pb = b.train_state.at("position");
  pa.erase("elapsed_s"), pb.erase("elapsed_s");
  // the interrupted run also validated at update 3, so its best may come from there
  pa.erase("best_update"), pb.erase("best_update");
  EXPECT_EQ(pa, pb);
  expect_same_parameters(a.model, b.model);
}

// A run killed between periodic saves leaves checkpoint_N.pt files: --resume continues from
// the newest of them when checkpoint_last.pt is gone, removes interrupted writes, and equals
// training straight through.
TEST(Checkpoint, ResumeFallsBackToTheNewestNumberedCheckpoint) {
  auto straight = thor::testing::temp_dir("ckpt_numbered_straight");
  auto killed = thor::testing::temp_dir("ckpt_numbered_killed");
  auto opt = [](const fs::path& save, int64_t max_update) {
    auto o = tiny_train(save, max_update);
    o.save_interval_updates = 2;
    o.eval_bleu = false;
    return o;
  };
  torch::manual_seed(7);
  thor::train(opt(straight, 6), tiny_model());
  torch::manual_seed(7);
  thor::train(opt(killed, 4), tiny_model());
  ASSERT_TRUE(fs::exists(killed / "checkpoint_2.pt"));
  ASSERT_TRUE(fs::exists(killed / "checkpoint_4.pt"));
  // every periodic save also made checkpoint_last.pt the newest state
  EXPECT_EQ(thor::read_train_state((killed / "checkpoint_last.pt").string())["position"]["num_updates"], 4);
  fs::remove(killed / "checkpoint_last.pt");
  fs::remove(killed / "checkpoint_best.pt");
  thor::testing::write_file(killed / "checkpoint_6.pt.tmp", {"half a checkpoint"});
  EXPECT_EQ(thor::find_resume_checkpoint(killed.string()), (killed / "checkpoint_4.pt").string());
  EXPECT_FALSE(fs::exists(killed / "checkpoint_6.pt.tmp"));
  auto o = opt(killed, 6);
  o.resume = true;
  thor::train(o, tiny_model());
  auto a = thor::load_model((straight / "checkpoint_last.pt").string(), torch::kCPU);
  auto b = thor::load_model((killed / "checkpoint_last.pt").string(), torch::kCPU);
  EXPECT_EQ(b.train_state["position"]["num_updates"], 6);
  expect_same_parameters(a.model, b.model);
}

// --keep-last N keeps the newest N numbered checkpoints (fairseq's --keep-interval-updates).
TEST(Checkpoint, KeepLastRemovesOlderNumberedCheckpoints) {
  auto dir = thor::testing::temp_dir("ckpt_keep_last");
  auto o = tiny_train(dir, 10);
  o.save_interval_updates = 2;
  o.keep_last = 2;
  o.eval_bleu = false;
  thor::train(o, tiny_model());
  std::vector<int64_t> kept;
  for (auto& [n, path] : thor::numbered_checkpoints(dir.string())) kept.push_back(n);
  EXPECT_EQ(kept, (std::vector<int64_t>{8, 10}));
  EXPECT_TRUE(fs::exists(dir / "checkpoint_last.pt"));
}

// A damaged newest checkpoint is skipped for an older readable one; a directory whose
// checkpoints are all unreadable is an error, never a silent fresh start.
TEST(Checkpoint, ResumeNeverStartsFreshBesideCheckpoints) {
  auto dir = thor::testing::temp_dir("ckpt_resume_damaged");
  torch::manual_seed(8);
  auto o = tiny_train(dir, 2);
  o.save_interval_updates = 2;
  o.eval_bleu = false;
  thor::train(o, tiny_model());
  thor::testing::write_file(dir / "checkpoint_last.pt", {"damaged"});
  EXPECT_EQ(thor::find_resume_checkpoint(dir.string()), (dir / "checkpoint_2.pt").string());
  for (auto name : {"checkpoint_2.pt", "checkpoint_best.pt"}) thor::testing::write_file(dir / name, {"damaged"});
  o.resume = true;
  o.max_update = 4;
  try {
    thor::train(o, tiny_model());
    FAIL() << "resumed from nothing";
  } catch (const thor::Error& e) {
    EXPECT_NE(std::string(e.what()).find("none is readable"), std::string::npos) << e.what();
  }
  auto empty = thor::testing::temp_dir("ckpt_resume_empty");
  EXPECT_EQ(thor::find_resume_checkpoint(empty.string()), "");
  EXPECT_EQ(thor::find_resume_checkpoint((empty / "absent").string()), "");
}

// Checkpoints stream to their first name and the others are names of the same file; a
// later save of one name replaces that name only. An abandoned write leaves nothing.
TEST(Checkpoint, DurableFilesAndSecondNames) {
  auto dir = thor::testing::temp_dir("ckpt_durable");
  {
    thor::DurableFile f((dir / "a").string());
    f.write("first", 5);
    f.commit();
  }
  thor::link_durably((dir / "a").string(), (dir / "b").string());
  EXPECT_EQ(thor::testing::read_file(dir / "b"), std::vector<std::string>{"first"});
  {
    thor::DurableFile f((dir / "a").string());
    f.write("second", 6);
    f.commit();
  }
  EXPECT_EQ(thor::testing::read_file(dir / "a"), std::vector<std::string>{"second"});
  EXPECT_EQ(thor::testing::read_file(dir / "b"), std::vector<std::string>{"first"});
  {
    thor::DurableFile f((dir / "a").string());
    f.write("half", 4);  // never committed
  }
  EXPECT_EQ(thor::testing::read_file(dir / "a"), std::vector<std::string>{"second"});
  EXPECT_FALSE(fs::exists(dir / "a.tmp"));
  EXPECT_THROW(thor::DurableFile((dir / "no" / "such" / "dir").string()), thor::Error);
}

namespace {
std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void put_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}
// The message load_model throws for `path` ("" when it loads).
std::string load_error(const fs::path& path) {
  try {
    thor::load_model(path.string(), torch::kCPU);
    return "";
  } catch (const thor::Error& e) {
    return e.what();
  }
}
}  // namespace

// Checkpoints carry a format version and a CRC32 of their payload: a truncated, bit-flipped,
// zero-length, foreign or newer-format file is refused with one line naming the file and
// what is wrong; a file of the older format (the bare archive) still loads; --resume skips a
// damaged checkpoint_last.pt for the newest good one.
TEST(Checkpoint, DamagedFilesAreRefusedWithWhatIsWrong) {
  auto dir = thor::testing::temp_dir("ckpt_damaged");
  torch::manual_seed(9);
  auto o = tiny_train(dir / "run", 2);
  o.save_interval_updates = 2;
  o.eval_bleu = false;
  thor::train(o, tiny_model());
  const auto good = file_bytes(dir / "run" / "checkpoint_last.pt");
  ASSERT_GT(good.size(), 1000u);
  EXPECT_EQ(good.substr(0, 8), "THORCKPT");
  auto expect_refused = [&](const std::string& name, const std::string& bytes, const std::string& what) {
    put_bytes(dir / name, bytes);
    auto msg = load_error(dir / name);
    EXPECT_NE(msg.find((dir / name).string() + ": "), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << name << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  };
  expect_refused("truncated.pt", good.substr(0, good.size() / 2), "truncated thor checkpoint");
  expect_refused("header_only.pt", good.substr(0, 12), "truncated thor checkpoint");
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  expect_refused("flipped.pt", flipped, "checksum mismatch");
  expect_refused("empty.pt", "", "empty file (0 bytes)");
  expect_refused("foreign.pt", "#!/bin/sh\necho not a model\n", "not a thor checkpoint");
  std::string newer = good;
  newer[8] = 3;  // format version 3
  expect_refused("newer.pt", newer, "written by a newer thor (checkpoint format 3");
  expect_refused("trailing.pt", good + "x", "1 bytes after the payload");
  // format 1: the archive alone, as thor wrote it before the frame
  put_bytes(dir / "v1.pt", good.substr(32));
  EXPECT_EQ(load_error(dir / "v1.pt"), "");
  auto a = thor::load_model((dir / "run" / "checkpoint_last.pt").string(), torch::kCPU);
  auto b = thor::load_model((dir / "v1.pt").string(), torch::kCPU);
  expect_same_parameters(a.model, b.model);
  // a damaged newest checkpoint (a new file: checkpoint_2.pt keeps the good one)
  put_bytes(dir / "run" / "flipped.tmp", flipped);
  fs::rename(dir / "run" / "flipped.tmp", dir / "run" / "checkpoint_last.pt");
  fs::remove(dir / "run" / "checkpoint_best.pt");
  EXPECT_EQ(thor::find_resume_checkpoint((dir / "run").string()), (dir / "run" / "checkpoint_2.pt").string());
  o.resume = true;
  o.max_update = 3;
  EXPECT_EQ(thor::train(o, tiny_model())["num_updates"], 3);
}

// 1,000 random mutations of a checkpoint (truncations, byte flips anywhere, header
// included, swapped sections): every one is refused with an Error, none crashes and none
// loads silently.
TEST(Checkpoint, ThousandMutationsAreAllRefused) {
  auto dir = thor::testing::temp_dir("ckpt_mutations");
  torch::manual_seed(10);
  auto o = tiny_train(dir / "run", 1);
  o.eval_bleu = false;
  thor::train(o, tiny_model());
  const auto good = file_bytes(dir / "run" / "checkpoint_last.pt");
  std::mt19937_64 rng(2026);
  std::map<std::string, int> kinds;
  int refused = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string bad = good;
    const int kind = static_cast<int>(rng() % 3);
    if (kind == 0) {  // truncated anywhere, the header included
      bad.resize(rng() % good.size());
    } else if (kind == 1) {  // 1-4 bytes changed anywhere
      for (int k = 0, n = 1 + static_cast<int>(rng() % 4); k < n; ++k)
        bad[rng() % bad.size()] ^= static_cast<char>(1 + rng() % 255);
    } else {  // two different sections of the payload swapped
      const size_t len = 1 + rng() % 512, a = 32 + rng() % (good.size() - 32 - len), b = 32 + rng() % (good.size() - 32 - len);
      if (bad.compare(a, len, bad, b, len) == 0) bad[a] ^= 1;  // (equal sections: make the change real)
      else for (size_t k = 0; k < len; ++k) std::swap(bad[a + k], bad[b + k]);
      if (bad == good) bad[40] ^= 1;
    }
    put_bytes(dir / "m.pt", bad);
    auto msg = load_error(dir / "m.pt");
    if (!msg.empty()) ++refused;
    else ADD_FAILURE() << "mutation " << i << " (kind " << kind << ") loaded";
    ++kinds[msg.substr(msg.find(": ") + 2, 12)];
  }
  EXPECT_EQ(refused, 1000);
  std::string summary;
  for (auto& [k, n] : kinds) summary += k + "... x" + std::to_string(n) + "; ";
  std::printf("[mutations] 1000 refused: %s\n", summary.c_str());
}

TEST(Checkpoint, NotACheckpointIsAnError) {
  auto dir = thor::testing::temp_dir("ckpt_bad");
  thor::testing::write_file(dir / "x.pt", {"garbage"});
  EXPECT_THROW(thor::load_model((dir / "x.pt").string(), torch::kCPU), thor::Error);
  EXPECT_THROW(thor::load_model((dir / "missing.pt").string(), torch::kCPU), thor::Error);
}

thor::ModelConfig tiny_thor_model(double dropout) {
  auto c = tiny_model();
  c.encoder_layers = c.decoder_layers = 2;
  c.num_experts = 2;
  c.router = "thor";
  c.dropout = dropout;
  return c;
}

std::vector<nlohmann::json> train_log(const fs::path& save) {
  std::vector<nlohmann::json> out;
  for (auto& l : thor::testing::read_file(save / "train_log.jsonl")) {
    auto j = nlohmann::json::parse(l);
    if (j.contains("gnorm")) out.push_back(j);
  }
  return out;
}

// Shards of a batch on parallel workers compute the batch's gradient: without dropout the
// same run as one worker, up to the order of float sums (THOR: both share the expert draws).
TEST(Train, WorkersComputeTheSameUpdatesAsOneWorker) {
  std::vector<fs::path> saves;
  for (int64_t workers : {1, 3}) {
    saves.push_back(thor::testing::temp_dir("train_workers" + std::to_string(workers)));
    auto o = tiny_train(saves.back(), 6);
    o.workers = workers;
    o.log_interval = 1;
    o.eval_bleu = false;
    torch::manual_seed(5);
    thor::train(o, tiny_thor_model(0.0));
  }
  auto a = train_log(saves[0]), b = train_log(saves[1]);
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) {
    for (auto key : {"loss", "nll", "gnorm", "consistency"})
      EXPECT_NEAR(a[i][key].get<double>(), b[i][key].get<double>(), 1e-4 * std::abs(a[i][key].get<double>()))
          << key << " at update " << i + 1;
    // the same experts drawn: the same token shares per layer
    EXPECT_EQ(a[i]["experts"].dump(), b[i]["experts"].dump()) << i + 1;
  }
  auto ma = thor::load_model((saves[0] / "checkpoint_last.pt").string(), torch::kCPU);
  auto mb = thor::load_model((saves[1] / "checkpoint_last.pt").string(), torch::kCPU);
  auto pb = mb.model->named_parameters();
  for (auto& kv : ma.model->named_parameters())
    thor::testing::expect_close(kv.value(), pb[kv.key()], 1e-4, 1e-5);
}

// With dropout, two workers draw their masks from generators seeded per batch and add
// their gradients in a fixed order: the same run twice is the same bit for bit.
TEST(Train, ParallelWorkersAreReproducible) {
  std::vector<fs::path> saves;
  for (int run = 0; run < 2; ++run) {
    saves.push_back(thor::testing::temp_dir("train_workers_repro" + std::to_string(run)));
    auto o = tiny_train(saves.back(), 4);
    o.workers = 2;
    o.eval_bleu = false;
    torch::manual_seed(6);
    thor::train(o, tiny_thor_model(0.3));
  }
  expect_same_last_checkpoints(saves[0], saves[1]);
}

// A run shorter than --log-interval still logs its (partial) interval, expert shares
// included, before its validation and at the end.
TEST(Train, ShortRunLogsItsPartialInterval) {
  auto save = thor::testing::temp_dir("train_short_log");
  auto o = tiny_train(save, 3);
  o.log_interval = 50;
  o.update_freq = 1;
  o.eval_bleu = false;
  thor::train(o, tiny_thor_model(0.1));
  auto lines = train_log(save);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["update"], 3);
  ASSERT_EQ(lines[0]["experts"].size(), 2u);
  double share = 0;
  for (auto& x : lines[0]["experts"][0]["share"]) share += x.get<double>();
  EXPECT_NEAR(share, 1.0, 1e-5);
  EXPECT_TRUE(lines[0].contains("consistency"));
}

// --consistency-warmup: the first update has no consistency term (the same parameters as a
// run with alpha 0), and from update warmup + 1 on the whole alpha applies: 2 updates with
// warm-up 1 equal 1 update with alpha 0 resumed for 1 with alpha 5. Without warm-up alpha
// changes the first update. The log reports the weight of the interval's last update.
TEST(Train, ConsistencyWarmupRampsAlphaFromZero) {
  auto run = [](const fs::path& save, double alpha, int64_t warmup, int64_t updates, bool resume = false) {
    auto o = tiny_train(save, updates);
    o.eval_bleu = false;
    o.consistency_alpha = alpha, o.consistency_warmup = warmup;
    o.resume = resume;
    thor::train(o, tiny_thor_model(0.3));
    return save;
  };
  using thor::testing::temp_dir;
  auto warm = run(temp_dir("cw_warm"), 5.0, 100, 1), zero = run(temp_dir("cw_zero"), 0.0, 0, 1),
       full = run(temp_dir("cw_full"), 5.0, 0, 1);
  expect_same_last_checkpoints(warm, zero);
  auto mz = thor::load_model((zero / "checkpoint_last.pt").string(), torch::kCPU);
  auto mf = thor::load_model((full / "checkpoint_last.pt").string(), torch::kCPU);
  bool differ = false;
  for (auto& kv : mz.model->named_parameters()) differ |= !torch::equal(kv.value(), mf.model->named_parameters()[kv.key()]);
  EXPECT_TRUE(differ) << "alpha did not change the first update";

  auto ramp = run(temp_dir("cw_ramp"), 5.0, 1, 2);
  auto phased = run(temp_dir("cw_phased"), 0.0, 0, 1);
  run(phased, 5.0, 0, 2, /*resume=*/true);
  expect_same_last_checkpoints(ramp, phased);
  double logged = -1;
  for (auto& j : train_log(ramp))
    if (j.contains("consistency_alpha")) logged = j["consistency_alpha"];
  EXPECT_EQ(logged, 5.0);
}

// --consistency-on logits reaches the objective: the first update differs from the one on
// probabilities, and the logged consistency is the logits' (1/2 mean squared difference, far
// larger than the symmetric KL of two nearly equal distributions).
TEST(Train, ConsistencyOnLogitsChangesTheUpdate) {
  std::map<std::string, fs::path> dirs;
  std::map<std::string, double> logged;
  for (std::string on : {"probs", "logits"}) {
    dirs[on] = thor::testing::temp_dir("con_" + on);
    auto o = tiny_train(dirs[on], 2);
    o.eval_bleu = false;
    o.consistency_on = on;
    thor::train(o, tiny_thor_model(0.3));
    for (auto& j : train_log(dirs[on]))
      if (j.contains("consistency")) logged[on] = j["consistency"];
  }
  auto a = thor::load_model((dirs["probs"] / "checkpoint_last.pt").string(), torch::kCPU);
  auto b = thor::load_model((dirs["logits"] / "checkpoint_last.pt").string(), torch::kCPU);
  bool differ = false;
  for (auto& kv : a.model->named_parameters()) differ |= !torch::equal(kv.value(), b.model->named_parameters()[kv.key()]);
  EXPECT_TRUE(differ);
  ASSERT_EQ(logged.size(), 2u);
  EXPECT_GT(logged["logits"], logged["probs"]);
  auto o = tiny_train(thor::testing::temp_dir("con_bad"), 1);
  o.consistency_on = "kl";
  EXPECT_THROW(thor::train(o, tiny_thor_model(0.3)), thor::Error);
}

// --expert-init copy: every expert of a layer starts as the layer's first (after one update
// at a negligible learning rate they are still equal); independent draws differ. A dense
// model has no experts to copy.
TEST(Train, ExpertInitCopyStartsEveryExpertAsTheFirst) {
  for (std::string init : {"copy", "independent"}) {
    auto save = thor::testing::temp_dir("einit_" + init);
    auto o = tiny_train(save, 1);
    o.eval_bleu = false;
    o.lr = 1e-9, o.warmup_init_lr = 0;
    o.expert_init = init;
    auto c = tiny_thor_model(0.3);
    c.num_experts = 3;
    thor::train(o, c);
    auto m = thor::load_model((save / "checkpoint_last.pt").string(), torch::kCPU);
    ASSERT_FALSE(m.model->expert_layers().empty());
    for (auto& layer : m.model->expert_layers())
      for (auto* t : {&layer->w1, &layer->w2, &layer->b1}) {
        auto spread = (*t - t->narrow(0, 0, 1)).abs().max().item<float>();
        if (init == "copy") {
          EXPECT_LT(spread, 1e-6f);
        } else if (t != &layer->b1) {  // biases start at zero either way
          EXPECT_GT(spread, 1e-3f);
        }
      }
  }
  auto o = tiny_train(thor::testing::temp_dir("einit_dense"), 1);
  o.expert_init = "copy";
  EXPECT_THROW(thor::train(o, tiny_model()), thor::Error);
}

TEST(Train, LossGoesDown) {
  auto save = thor::testing::temp_dir("train_learns");
  auto o = tiny_train(save, 40);
  o.log_interval = 10;
  o.eval_bleu = false;
  thor::train(o, tiny_model());
  auto log = thor::testing::read_file(save / "train_log.jsonl");
  std::vector<double> losses;
  for (auto& l : log) {
    auto j = nlohmann::json::parse(l);
    if (j.contains("loss")) losses.push_back(j["loss"]);
  }
  ASSERT_GE(losses.size(), 3u);
  EXPECT_LT(losses.back(), losses.front() - 0.5);
}

}  // namespace
