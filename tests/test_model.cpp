// Transformer: incremental decoding equals full recomputation; padding and causal masks.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "thor/model/transformer.h"

using thor::ModelConfig;
using thor::Transformer;

namespace {

ModelConfig small_config(bool pre_norm) {
  ModelConfig c;
  c.vocab_size = 40;
  c.d_model = 32;
  c.ffn_dim = 64;
  c.heads = 4;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.dropout = 0.2;  // must be inactive in eval mode
  c.pre_norm = pre_norm;
  c.share_all_embeddings = true;
  c.max_positions = 64;
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
