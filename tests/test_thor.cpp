// THOR end to end inside the library: the stacked two-pass objective equals two separate
// passes; sentence-level experts stay fixed through incremental decoding; dense export
// equals fixed-expert / merged decoding; every router's checkpoint saves, loads, resumes.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/data/prepare.h"
#include "thor/decode/search.h"
#include "thor/decode/translator.h"
#include "thor/moe/router.h"
#include "thor/train/checkpoint.h"
#include "thor/train/export.h"
#include "thor/train/loss.h"
#include "thor/train/objective.h"
#include "thor/train/trainer.h"

namespace fs = std::filesystem;

namespace {

thor::ModelConfig thor_config(int64_t experts, const std::string& router = "thor") {
  auto c = thor::testing::small_model_config(16, 2, 0.0);
  c.num_experts = experts;
  c.router = router;
  return c;
}

thor::Batch toy_batch() {
  thor::Dataset ds;
  ds.add({5, 6, 7, 8}, {9, 10, 11}, 1);
  ds.add({12, 13}, {14, 15, 16, 17, 18}, 2);
  ds.add({19, 20, 21}, {22, 23}, 3);
  return thor::collate(ds, {0, 1, 2}, 0, 2, 3);
}

std::vector<torch::Tensor> grads_of(thor::Transformer& m) {
  std::vector<torch::Tensor> g;
  for (auto& p : m->parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return g;
}

TEST(Thor, StackedTwoPassEqualsTwoSeparatePasses) {
  torch::manual_seed(0);
  auto c = thor_config(2);
  c.encoder_layers = c.decoder_layers = 3;  // expert layers: encoder 0, 2 and decoder 0, 2
  thor::Transformer m(c);
  m->train();  // dropout is 0, so training mode is deterministic given the experts
  auto b = toy_batch();
  // Pass 1 uses experts (0 at every expert layer), pass 2 (1, 0, 1, 1), pinned so that the
  // separate passes below see exactly the draws of the stacked pass; the second expert
  // layer runs both passes as one product, the others split them.
  std::vector<int64_t> pass1 = {0, 0, 0, 0}, pass2 = {1, 0, 1, 1};
  ASSERT_EQ(m->expert_layers().size(), 4u);
  std::vector<std::vector<int64_t>> stacked;
  for (size_t l = 0; l < pass1.size(); ++l) stacked.push_back({pass1[l], pass2[l]});
  m->pin_experts(stacked);
  auto r = thor::compute_objective(m, b, {0.1, 5.0, true});
  r.loss.backward();
  auto g_stacked = grads_of(m);
  double loss_stacked = r.loss.item<double>();

  for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
  auto one_pass = [&](const std::vector<int64_t>& experts) {
    std::vector<std::vector<int64_t>> pin;
    for (auto e : experts) pin.push_back({e});
    m->pin_experts(pin);
    auto logits = m->forward(b.src, b.tgt_in);
    return torch::log_softmax(logits, -1).view({-1, logits.size(-1)});
  };
  auto lp = one_pass(pass1), lq = one_pass(pass2);
  auto target = b.tgt_out.reshape({-1});
  auto ce1 = thor::label_smoothed_nll_lprobs(lp, target, 0.1, 0);
  auto ce2 = thor::label_smoothed_nll_lprobs(lq, target, 0.1, 0);
  auto loss = ce1.loss + ce2.loss + 5.0 * thor::consistency_loss(lp, lq, target.ne(0));
  loss.backward();
  EXPECT_NEAR(loss.item<double>(), loss_stacked, 1e-4 * std::abs(loss_stacked));
  auto g_sep = grads_of(m);
  for (size_t i = 0; i < g_sep.size(); ++i) thor::testing::expect_close(g_stacked[i], g_sep[i], 1e-5, 1e-3);
  EXPECT_GT(r.consistency, 0.0);  // different experts -> different distributions
}

TEST(Thor, ExpertLayersFollowIndexParity) {
  auto c = thor_config(2);
  c.encoder_layers = 3, c.decoder_layers = 3;
  thor::Transformer m(c);
  EXPECT_EQ(m->expert_layer_names(), (std::vector<std::string>{"encoder.0", "encoder.2", "decoder.0", "decoder.2"}));
  c.num_experts = 1;
  thor::Transformer dense(c);
  EXPECT_TRUE(dense->expert_layers().empty());
}

TEST(Thor, SentenceLevelExpertsStayFixedAcrossDecodingSteps) {
  torch::manual_seed(1);
  auto c = thor_config(2);
  c.encoder_layers = 1, c.decoder_layers = 1;  // one expert layer on each side
  thor::Transformer m(c);
  m->eval();
  torch::NoGradGuard ng;
  m->set_expert_select(thor::ExpertSelect::Sentence);
  auto src = torch::randint(4, 40, {1, 6}, torch::kLong);
  auto tgt = torch::randint(4, 40, {1, 7}, torch::kLong);
  for (int trial = 0; trial < 4; ++trial) {
    auto st = m->init_state(src);
    auto chosen = st.sentences.at("row_experts").clone();  // [1, 2]
    std::vector<torch::Tensor> steps;
    for (int64_t t = 0; t < 7; ++t) steps.push_back(m->step(tgt.select(1, t), t, st));
    EXPECT_TRUE(torch::equal(st.sentences.at("row_experts"), chosen));
    // Full recomputation with the sentence's experts pinned reproduces every step.
    m->pin_experts({{chosen[0][0].item<int64_t>()}, {chosen[0][1].item<int64_t>()}});
    m->train();  // pinned experts apply in training mode too; dropout is 0
    auto full = m->forward(src, tgt);
    m->eval();
    m->pin_experts({});
    for (int64_t t = 0; t < 7; ++t) thor::testing::expect_close(steps[t], full.select(1, t)[0].unsqueeze(0), 1e-4, 1e-4);
  }
}

// Decoding encodes a padded batch on its real tokens only (Packing) where every block is
// position-wise: a dense model, THOR with sentence-level draws (spread onto each sentence's
// tokens). The cross-attention keys and values equal the padded encoder's at every real
// position, and are zeros at the padding (so the packed path did run). A Switch model keeps
// the padded encoder (its capacity depends on the whole batch): equal everywhere.
TEST(Thor, PackedEncoderEqualsPaddedWherePositionWise) {
  torch::NoGradGuard ng;
  std::vector<int64_t> lens = {6, 2, 5, 1};
  auto src = torch::zeros({4, 6}, torch::kLong);
  for (int64_t b = 0; b < 4; ++b) src[b].narrow(0, 0, lens[b]).copy_(torch::randint(4, 40, {lens[b]}, torch::kLong));
  auto pad = src.eq(0);
  for (std::string router : {"dense", "thor", "switch"}) {
    SCOPED_TRACE(router);
    torch::manual_seed(3);
    auto c = thor_config(router == "dense" ? 1 : 3, router == "dense" ? "thor" : router);
    thor::Transformer m(c);
    m->eval();
    m->set_expert_select(thor::ExpertSelect::Sentence);
    auto st = m->init_state(src);
    thor::RoutingContext ctx;
    ctx.select = thor::ExpertSelect::Sentence;
    if (router == "thor") ctx.row_experts = st.sentences.at("row_experts");
    auto enc = m->encode(src, ctx);
    for (size_t i = 0; i < m->decoder_layers->size(); ++i) {
      auto [k, v] = m->decoder_layers[i]->as<thor::DecoderLayerImpl>()->encoder_attn->project_kv(enc);
      auto got_k = st.sentences.at("enc_k." + std::to_string(i)).transpose(1, 2);  // [B, S, H, Dh]
      auto got_v = st.sentences.at("enc_v." + std::to_string(i)).transpose(1, 2);
      auto want_k = k.transpose(1, 2), want_v = v.transpose(1, 2);
      thor::testing::expect_close(got_k.index({~pad}), want_k.index({~pad}), 1e-5, 1e-5);
      thor::testing::expect_close(got_v.index({~pad}), want_v.index({~pad}), 1e-5, 1e-5);
      if (router == "switch") {
        EXPECT_TRUE(torch::equal(got_k, want_k));
        EXPECT_GT(got_k.index({pad}).abs().max().item<float>(), 0.0f);
      } else {
        EXPECT_EQ(got_k.index({pad}).abs().max().item<float>(), 0.0f);
        EXPECT_EQ(got_v.index({pad}).abs().max().item<float>(), 0.0f);
      }
    }
  }
}

TEST(Thor, DenseExportEqualsFixedExpertAndMerge) {
  torch::manual_seed(2);
  thor::Transformer m(thor_config(3));
  m->eval();
  torch::NoGradGuard ng;
  auto src = torch::randint(4, 40, {2, 5}, torch::kLong);
  auto tgt = torch::randint(4, 40, {2, 4}, torch::kLong);
  for (std::string which : {"0", "2", "merge"}) {
    auto dense = thor::make_dense(m, which);
    EXPECT_EQ(dense->config().num_experts, 1);
    if (which == "merge") {
      m->set_expert_select(thor::ExpertSelect::Merge);
    } else {
      m->set_expert_select(thor::ExpertSelect::Fixed, std::stoll(which));
    }
    EXPECT_TRUE(torch::equal(dense->forward(src, tgt), m->forward(src, tgt))) << which;
    // and beam search produces the same hypotheses
    thor::TransformerStepModel a(dense), b(m);
    thor::SearchOptions o;
    o.beam = 3;
    o.max_len_b = 20;
    auto ha = thor::beam_search(a, src, o), hb = thor::beam_search(b, src, o);
    for (size_t i = 0; i < ha.size(); ++i) EXPECT_EQ(ha[i][0].tokens, hb[i][0].tokens);
  }
  EXPECT_THROW(thor::make_dense(m, "3"), thor::Error);
  EXPECT_THROW(thor::make_dense(m, "x"), thor::Error);
}

fs::path prepared_data() { return thor::testing::prepared_toy_data("thor_routers", 120, 6, 31); }

class RouterCheckpointTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RouterCheckpointTest, SavesLoadsAndResumesExactly) {
  auto cfg = thor_config(2, GetParam());
  cfg.encoder_layers = cfg.decoder_layers = 1;
  cfg.dropout = 0.1;
  auto opts = [&](const fs::path& save, int64_t max_update) {
    thor::TrainOptions o;
    o.data_dir = prepared_data().string();
    o.save_dir = save.string();
    o.device = "cpu";
    o.max_tokens = 250;
    o.max_update = max_update;
    o.lr = 1e-3;
    o.warmup_updates = 2;
    o.log_interval = 1;
    o.eval_beam = 2;
    o.eval_max_sentences = 3;
    o.consistency_alpha = 1.0;
    o.progress = false;
    return o;
  };
  auto straight = thor::testing::temp_dir("router_straight_" + GetParam());
  auto resumed = thor::testing::temp_dir("router_resumed_" + GetParam());
  thor::train(opts(straight, 4), cfg);
  thor::train(opts(resumed, 2), cfg);
  auto o = opts(resumed, 4);
  o.resume = true;
  thor::train(o, cfg);
  auto a = thor::load_model((straight / "checkpoint_last.pt").string(), torch::kCPU);
  auto b = thor::load_model((resumed / "checkpoint_last.pt").string(), torch::kCPU);
  EXPECT_EQ(a.config.router, GetParam());
  EXPECT_EQ(a.model->expert_layers().size(), 2u);
  auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
  for (auto& kv : pa) EXPECT_TRUE(torch::equal(kv.value(), pb[kv.key()])) << GetParam() << " " << kv.key();
  auto ba = a.model->named_buffers(), bb = b.model->named_buffers();
  for (auto& kv : ba) EXPECT_TRUE(torch::equal(kv.value(), bb[kv.key()])) << GetParam() << " " << kv.key();
  // the log carries the expert statistics
  auto log = thor::testing::read_file(straight / "train_log.jsonl");
  auto j = nlohmann::json::parse(log.front());
  ASSERT_TRUE(j.contains("experts"));
  EXPECT_EQ(j["experts"].size(), 2u);
  // shares count expert slots per non-pad token: in (0, 1] for top-1, up to 2 for gshard
  double share = j["experts"][0]["share"][0].get<double>() + j["experts"][0]["share"][1].get<double>();
  EXPECT_GT(share, 0.0);
  EXPECT_LE(share, (GetParam() == "gshard" ? 2.0 : 1.0) + 1e-6);
}

INSTANTIATE_TEST_SUITE_P(AllRouters, RouterCheckpointTest,
                         ::testing::Values("thor", "random", "switch", "gshard", "hash", "alf"));

}  // namespace

namespace {

// Parallel decoding workers share the model; each batch draws its sentence-level experts
// from a generator seeded with (seed, batch index), so the output is the same for any
// number of workers, and it still depends on the seed.
TEST(Thor, TranslationIsTheSameForAnyNumberOfWorkers) {
  auto data = thor::testing::prepared_toy_data("thor_workers", 120, 30, 41);
  auto vocab = thor::Vocab::from_file((data / "spm.model").string());
  auto cfg = thor_config(2);
  cfg.vocab_size = vocab.size();
  torch::manual_seed(42);
  thor::Transformer m(cfg);
  m->eval();
  m->set_expert_select(thor::ExpertSelect::Sentence);
  auto lines = thor::testing::read_file(data / "valid.raw.src");
  ASSERT_GE(lines.size(), 20u);
  thor::TranslateOptions o;
  o.search.beam = 2;
  o.search.max_len_a = 0;
  o.search.max_len_b = 6;
  o.batch_size = 3;
  auto texts = [&](int64_t workers, uint64_t seed) {
    o.workers = workers, o.seed = seed;
    std::vector<std::string> t;
    for (auto& n : thor::translate_lines(m, vocab, lines, o, torch::kCPU)) t.push_back(n.front().text);
    return t;
  };
  auto one = texts(1, 5);
  EXPECT_EQ(texts(3, 5), one);
  EXPECT_EQ(texts(1, 5), one);  // and not the global generator's state either
  EXPECT_NE(texts(1, 6), one);  // the draws matter: another seed, other experts, other outputs
  // Token-level draws (at every step) come from the batch's generator too.
  m->set_expert_select(thor::ExpertSelect::Token);
  auto token = texts(1, 5);
  EXPECT_EQ(texts(3, 5), token);
  m->set_expert_select(thor::ExpertSelect::Sentence);
  // A dense model: workers only change the schedule.
  auto dcfg = thor::testing::small_model_config(16, 2, 0.0);
  dcfg.vocab_size = vocab.size();
  thor::Transformer d(dcfg);
  d->eval();
  auto dense = [&](int64_t workers) {
    o.workers = workers;
    std::vector<std::string> t;
    for (auto& n : thor::translate_lines(d, vocab, lines, o, torch::kCPU)) t.push_back(n.front().text);
    return t;
  };
  EXPECT_EQ(dense(4), dense(1));
}

}  // namespace
