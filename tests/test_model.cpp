// Transformer: incremental decoding equals full recomputation; padding and causal masks;
// batched beam search equals one sentence at a time; the FLOP count.
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/decode/translator.h"
#include "thor/model/attention.h"
#include "thor/model/flops.h"
#include "thor/model/transformer.h"

using thor::ModelConfig;
using thor::Transformer;

namespace {

ModelConfig small_config(bool pre_norm) {
  auto c = thor::testing::small_model_config(32, 4, 0.2);  // dropout must be inactive in eval mode
  c.pre_norm = pre_norm;
  return c;
}

torch::Tensor random_tokens(int64_t B, int64_t T, int64_t V) { return torch::randint(4, V, {B, T}, torch::kLong); }

class ModelTest : public ::testing::TestWithParam<bool> {};

TEST_P(ModelTest, IncrementalDecodingEqualsFullRecomputation) {
  torch::manual_seed(0);
  Transformer m(small_config(GetParam()));
  m->eval();
  torch::NoGradGuard ng;
  auto src = random_tokens(3, 7, 40);
  src.index_put_({1, torch::indexing::Slice(4, torch::indexing::None)}, 0);  // padded row
  auto tgt = random_tokens(3, 6, 40);
  tgt.select(1, 0).fill_(2);  // bos
  auto full = m->forward(src, tgt);  // [3, 6, V]
  auto state = m->init_state(src);
  for (int64_t t = 0; t < 6; ++t) {
    auto step = m->step(tgt.select(1, t), t, state);  // [3, V]
    thor::testing::expect_close(step, full.select(1, t), 1e-4, 1e-4);
  }
}

TEST_P(ModelTest, PaddingDoesNotChangeOutputs) {
  torch::manual_seed(1);
  Transformer m(small_config(GetParam()));
  m->eval();
  torch::NoGradGuard ng;
  auto short_src = random_tokens(1, 4, 40);
  auto long_src = random_tokens(1, 9, 40);
  auto padded = torch::zeros({2, 9}, torch::kLong);
  padded.index_put_({0, torch::indexing::Slice(0, 4)}, short_src[0]);
  padded[1] = long_src[0];
  auto tgt = random_tokens(1, 5, 40);
  auto alone = m->forward(short_src, tgt);
  auto batched = m->forward(padded, tgt.expand({2, 5}).contiguous());
  thor::testing::expect_close(batched.narrow(0, 0, 1), alone, 1e-4, 1e-4);
  auto enc_alone = m->encode(short_src);
  auto enc_batched = m->encode(padded);
  thor::testing::expect_close(enc_batched.narrow(0, 0, 1).narrow(1, 0, 4), enc_alone, 1e-4, 1e-4);
}

TEST_P(ModelTest, CausalMaskHidesFutureTokens) {
  torch::manual_seed(2);
  Transformer m(small_config(GetParam()));
  m->eval();
  torch::NoGradGuard ng;
  auto src = random_tokens(2, 5, 40);
  auto tgt = random_tokens(2, 6, 40);
  auto changed = tgt.clone();
  changed.select(1, 4).fill_(7);
  changed.select(1, 5).fill_(9);
  auto a = m->forward(src, tgt), b = m->forward(src, changed);
  thor::testing::expect_close(a.narrow(1, 0, 4), b.narrow(1, 0, 4), 1e-5, 1e-5);
  EXPECT_FALSE(torch::allclose(a.narrow(1, 4, 2), b.narrow(1, 4, 2)));
}

INSTANTIATE_TEST_SUITE_P(PostAndPreNorm, ModelTest, ::testing::Values(false, true));

TEST(Model, SharedEmbeddingsAreOneTensor) {
  auto c = small_config(false);
  Transformer shared(c);
  EXPECT_EQ(shared->output_projection.data_ptr(), shared->encoder_embed->weight.data_ptr());
  EXPECT_EQ(shared->decoder_embed->weight.data_ptr(), shared->encoder_embed->weight.data_ptr());
  c.share_all_embeddings = false;
  Transformer separate(c);
  EXPECT_NE(separate->decoder_embed->weight.data_ptr(), separate->encoder_embed->weight.data_ptr());
  int64_t n_shared = 0, n_sep = 0;
  for (auto& p : shared->parameters()) n_shared += p.numel();
  for (auto& p : separate->parameters()) n_sep += p.numel();
  EXPECT_EQ(n_sep - n_shared, 2 * c.vocab_size * c.d_model);
}

TEST(Model, SinusoidsMatchFormula) {
  auto t = thor::sinusoidal_positions(10, 8);
  double scale = std::log(10000.0) / 3;
  EXPECT_NEAR(t[5][1].item<double>(), std::sin(5 * std::exp(-1 * scale)), 1e-5);
  EXPECT_NEAR(t[5][4 + 2].item<double>(), std::cos(5 * std::exp(-2 * scale)), 1e-5);
}

TEST(Model, DropoutActiveOnlyInTraining) {
  torch::manual_seed(3);
  Transformer m(small_config(false));
  auto src = random_tokens(2, 5, 40), tgt = random_tokens(2, 4, 40);
  m->train();
  auto a = m->forward(src, tgt), b = m->forward(src, tgt);
  EXPECT_FALSE(torch::allclose(a, b));
  m->eval();
  thor::testing::expect_close(m->forward(src, tgt), m->forward(src, tgt), 0, 0);
}

}  // namespace

namespace {

// Sentences of the given lengths (random tokens), right-padded with 0 into one batch.
torch::Tensor padded_random_sources(const std::vector<int64_t>& lens) {
  const auto B = static_cast<int64_t>(lens.size());
  auto src = torch::zeros({B, *std::max_element(lens.begin(), lens.end())}, torch::kLong);
  for (int64_t b = 0; b < B; ++b) src[b].narrow(0, 0, lens[b]).copy_(random_tokens(1, lens[b], 40)[0]);
  return src;
}

// A post-norm small model in eval mode, its initialisation drawn after manual_seed(seed).
Transformer eval_model(uint64_t seed) {
  torch::manual_seed(seed);
  Transformer m(small_config(false));
  m->eval();
  return m;
}

thor::SearchOptions search_options(int64_t beam, int64_t nbest, double max_len_a, int64_t max_len_b) {
  thor::SearchOptions o;
  o.beam = beam, o.nbest = nbest, o.max_len_a = max_len_a, o.max_len_b = max_len_b;
  o.pad = 0, o.bos = 2, o.eos = 3;
  return o;
}

// Beam search over a real model: a batch (shared encoder states per sentence, step 0 on one
// row per sentence, sentences leaving the batch as they finish at different lengths) gives
// each sentence exactly what searching it alone gives.
TEST(Model, BatchedBeamSearchEqualsSentenceAlone) {
  auto m = eval_model(4);
  thor::TransformerStepModel step_model(m);
  auto o = search_options(3, 2, 1.0, 1);
  std::vector<int64_t> lens = {7, 2, 5, 3};
  auto src = padded_random_sources(lens);
  auto batched = thor::beam_search(step_model, src, o);
  for (int64_t b = 0; b < 4; ++b) {
    auto alone = thor::beam_search(step_model, src[b].narrow(0, 0, lens[b]).unsqueeze(0), o);
    ASSERT_EQ(batched[b].size(), alone[0].size());
    for (size_t h = 0; h < alone[0].size(); ++h) {
      EXPECT_EQ(batched[b][h].tokens, alone[0][h].tokens) << "sentence " << b << " hypothesis " << h;
      EXPECT_NEAR(batched[b][h].score, alone[0][h].score, 1e-4);
    }
    // at most max_len_a * len + max_len_b steps plus the forced end of sentence
    EXPECT_LE(static_cast<int64_t>(batched[b][0].tokens.size()), lens[b] + 2);
  }
}

// CPU inference keeps the self-attention history paged (a beam reorder permutes an index,
// the kernel reads through it); unpaged, the same search reorders the cached keys and
// values themselves. Both must find the same hypotheses with the same scores.
struct UnpagedStepModel : thor::StepModel {
  explicit UnpagedStepModel(thor::StepModel& inner) : inner(inner) {}
  thor::DecoderState start(const torch::Tensor& src) override {
    auto st = inner.start(src);
    st.paged = false;
    return st;
  }
  torch::Tensor step(const torch::Tensor& last, int64_t t, thor::DecoderState& st) override {
    return inner.step(last, t, st);
  }
  void admit(thor::DecoderState& st, const torch::Tensor& src) override { inner.admit(st, src); }
  thor::StepModel& inner;
};

TEST(Model, PagedHistoryBeamSearchEqualsReorderedCaches) {
  auto m = eval_model(5);
  thor::TransformerStepModel step_model(m);
  auto o = search_options(4, 3, 1.5, 3);
  std::vector<int64_t> lens = {9, 3, 6, 1, 8};
  auto src = padded_random_sources(lens);
  UnpagedStepModel unpaged_model(step_model);
  auto composite = thor::beam_search(unpaged_model, src, o);
  auto paged = thor::beam_search(step_model, src, o);
  {
    torch::NoGradGuard ng;
    EXPECT_TRUE(m->init_state(src).paged);
  }
  EXPECT_FALSE(m->init_state(src).paged);  // with autograd: caches reordered
  for (int64_t b = 0; b < 5; ++b) {
    ASSERT_EQ(paged[b].size(), composite[b].size());
    for (size_t h = 0; h < paged[b].size(); ++h) {
      EXPECT_EQ(paged[b][h].tokens, composite[b][h].tokens) << "sentence " << b << " hypothesis " << h;
      EXPECT_NEAR(paged[b][h].score, composite[b][h].score, 1e-4);
    }
  }
}

}  // namespace

namespace {

// The FLOP formula against the model's own parameters: with one source and one target
// position every weight matrix is used once per token (expert banks once per chosen
// expert), plus the attention terms 2d per attention layer; then linear in the rows and
// quadratic in the lengths only through attention.
double macs_from_parameters(thor::Transformer& m, double experts_per_token) {
  const auto& c = m->config();
  std::set<const void*> seen;
  double macs = 0;
  for (auto& p : m->named_parameters()) {
    const auto& t = p.value();
    if (!seen.insert(t.data_ptr()).second) continue;  // shared embeddings count once
    const auto& name = p.key();
    if (name.size() > 3 && (name.substr(name.size() - 3) == ".b1" || name.substr(name.size() - 3) == ".b2"))
      continue;  // expert bias banks [E, f] / [E, d]: additions, not products
    if (t.dim() == 2) macs += static_cast<double>(t.numel());  // projections, gates, output
    if (t.dim() == 3) {                                       // expert banks [E, ., .]
      double per_expert = static_cast<double>(t.numel()) / static_cast<double>(t.size(0));
      macs += per_expert * (t.size(0) > 1 ? experts_per_token : 1.0);
    }
  }
  return macs + static_cast<double>(c.encoder_layers * 2 * c.d_model + c.decoder_layers * 4 * c.d_model);
}

TEST(Model, FlopCountMatchesParametersAndShapes) {
  for (std::string router : {"", "thor", "switch", "gshard"}) {
    auto c = small_config(false);
    if (!router.empty()) c.num_experts = 4, c.router = router;
    Transformer m(c);
    double k = router == "gshard" ? 2.0 : 1.0;
    EXPECT_NEAR(thor::forward_macs(c, 1, 1, 1), macs_from_parameters(m, k), 1e-6) << router;
    EXPECT_DOUBLE_EQ(thor::forward_macs(c, 3, 5, 4), 3 * thor::forward_macs(c, 1, 5, 4));
    // Lengths enter beyond the per-token cost only through the attention products.
    double d = static_cast<double>(c.d_model), S = 5, T = 4;
    double per_token_src = thor::forward_macs(c, 1, 1, 0) - 2 * d * c.encoder_layers;  // S=1, no target
    double attention = c.encoder_layers * 2 * S * S * d + c.decoder_layers * (2 * T * T * d + 2 * T * S * d);
    double rest = thor::forward_macs(c, 1, 5, 4) - attention;
    EXPECT_NEAR(rest, S * per_token_src + T * (thor::forward_macs(c, 1, 0, 1) - 2 * d * c.decoder_layers), 1e-6);
    EXPECT_DOUBLE_EQ(thor::training_flops(c, 2, 5, 4, true), 4 * 6 * thor::forward_macs(c, 1, 5, 4));
  }
}

}  // namespace

namespace {

// Attention (fused q/k/v and k/v projections) against the textbook computation with the
// three projections applied one by one and a loop over heads.
torch::Tensor naive_attention(thor::MultiheadAttention& a, const torch::Tensor& x, const torch::Tensor& kv,
                              const torch::Tensor& kpm, bool causal) {
  const int64_t B = x.size(0), T = x.size(1), S = kv.size(1), C = x.size(2), H = a->heads(), Dh = C / H;
  auto q = a->q_proj(x), k = a->k_proj(kv), v = a->v_proj(kv);
  auto out = torch::zeros({B, T, C});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      auto qh = q[b].narrow(1, h * Dh, Dh), kh = k[b].narrow(1, h * Dh, Dh), vh = v[b].narrow(1, h * Dh, Dh);
      auto s = qh.matmul(kh.t()) / std::sqrt(static_cast<double>(Dh));  // [T, S]
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < S; ++j)
          if ((causal && j > i) || (kpm.defined() && kpm[b][j].item<bool>())) s[i][j] = -1e30;
      out[b].narrow(1, h * Dh, Dh).copy_(torch::softmax(s, 1).matmul(vh));
    }
  return a->out_proj(out);
}

TEST(Model, AttentionEqualsNaivePerHeadComputation) {
  torch::manual_seed(5);
  thor::MultiheadAttention a(32, 4, 0.0);
  torch::NoGradGuard ng;
  auto x = torch::randn({2, 5, 32}), kv = torch::randn({2, 7, 32});
  auto kpm = torch::zeros({2, 7}, torch::kBool);
  kpm[1].narrow(0, 4, 3).fill_(true);
  auto self_mask = kpm.narrow(1, 0, 5).clone();
  thor::testing::expect_close(a(x, x, self_mask, false), naive_attention(a, x, x, self_mask, false), 1e-5, 1e-5);
  thor::testing::expect_close(a(x, x, torch::Tensor(), true), naive_attention(a, x, x, torch::Tensor(), true), 1e-5,
                              1e-5);
  thor::testing::expect_close(a(x, kv, kpm, false), naive_attention(a, x, kv, kpm, false), 1e-5, 1e-5);
}

}  // namespace

namespace {

// Without autograd the fused q/k/v weights are cached; a parameter changed in place (as the
// optimizer or a checkpoint load does) must invalidate them.
TEST(Model, FusedProjectionCacheFollowsParameterChanges) {
  torch::manual_seed(12);
  thor::MultiheadAttention a(16, 4, 0.0);
  a->eval();
  auto x = torch::randn({2, 5, 16});
  auto with_grad = a->forward(x, x, torch::Tensor(), true);
  torch::Tensor cached, after;
  {
    torch::NoGradGuard ng;
    cached = a->forward(x, x, torch::Tensor(), true);
    a->forward(x, x, torch::Tensor(), true);  // served from the cache
    a->k_proj->weight.mul_(0.5);
    after = a->forward(x, x, torch::Tensor(), true);
  }
  thor::testing::expect_close(cached, with_grad, 1e-6, 1e-6);
  auto reference = a->forward(x, x, torch::Tensor(), true);  // autograd path: no cache
  thor::testing::expect_close(after, reference, 1e-6, 1e-6);
  EXPECT_FALSE(torch::allclose(after, cached));
}

}  // namespace

namespace {

// Continuous batching: sentences join a BeamStream at different steps (one while the batch
// is at step 0, others after beams widened, one into a batch of a single sentence) and each
// must get exactly the hypotheses it gets alone; with a long stream the state forgets the
// positions no row reads any more.
void expect_stream_equals_alone(thor::StepModel& step_model, const thor::SearchOptions& o) {
  std::vector<int64_t> lens = {6, 2, 9, 4, 3, 7, 5, 8, 1, 6, 4, 9};
  auto src = padded_random_sources(lens);
  // step at which each sentence joins
  std::vector<int64_t> joins = {0, 0, 0, 3, 3, 4, 11, 15, 22, 30, 38, 47};
  thor::BeamStream stream(step_model, o);
  std::map<int64_t, std::vector<thor::Hypothesis>> got;
  int64_t steps = 0, most_positions = 0;
  size_t next = 0;
  while (next < lens.size() || stream.active() > 0) {
    std::vector<int64_t> ids;
    while (next < lens.size() && joins[next] <= steps) ids.push_back(static_cast<int64_t>(next++));
    if (!ids.empty()) {
      int64_t longest = 0;
      for (auto i : ids) longest = std::max(longest, lens[i]);
      auto part = torch::zeros({static_cast<int64_t>(ids.size()), longest}, torch::kLong);
      for (size_t k = 0; k < ids.size(); ++k) part[k].narrow(0, 0, lens[ids[k]]).copy_(src[ids[k]].narrow(0, 0, lens[ids[k]]));
      stream.admit(part, ids);
    }
    if (stream.active() == 0) {
      ++steps;
      continue;
    }
    for (auto& [id, hyps] : stream.step()) got[id] = std::move(hyps);
    most_positions = std::max(most_positions, stream.positions());
    ++steps;
  }
  ASSERT_EQ(got.size(), lens.size());
  for (size_t b = 0; b < lens.size(); ++b) {
    auto alone = thor::beam_search(step_model, src[b].narrow(0, 0, lens[b]).unsqueeze(0), o);
    ASSERT_EQ(got[b].size(), alone[0].size()) << "sentence " << b;
    for (size_t h = 0; h < alone[0].size(); ++h) {
      EXPECT_EQ(got[b][h].tokens, alone[0][h].tokens) << "sentence " << b << " hypothesis " << h;
      EXPECT_NEAR(got[b][h].score, alone[0][h].score, 1e-4);
    }
  }
  EXPECT_LT(most_positions, steps - 10) << "the state never forgot a position";
}

}  // namespace

TEST(Model, StreamWithSentencesJoiningEqualsSentenceAlone) {
  auto m = eval_model(6);
  thor::TransformerStepModel step_model(m);
  expect_stream_equals_alone(step_model, search_options(3, 2, 1.0, 8));
  expect_stream_equals_alone(step_model, search_options(1, 1, 1.0, 8));  // greedy
  UnpagedStepModel unpaged_model(step_model);
  expect_stream_equals_alone(unpaged_model, search_options(3, 2, 1.0, 8));
}

TEST(Model, StreamWithAShortlistRefusesToAdmitMidway) {
  auto m = eval_model(7);
  thor::Shortlist list;
  list.vocab_size = m->output_projection.size(0);
  list.candidates.assign(static_cast<size_t>(list.vocab_size), std::vector<int32_t>{4, 5, 6});
  thor::TransformerStepModel step_model(m, &list);
  thor::BeamStream stream(step_model, search_options(2, 1, 1.0, 4));
  auto src = padded_random_sources({3, 4});
  stream.admit(src.narrow(0, 0, 1), {0});
  stream.step();
  EXPECT_THROW(stream.admit(src.narrow(0, 1, 1), {1}), thor::Error);
}
