// Encoder-decoder Transformer, fairseq-equivalent: post-norm by default (pre-norm
// option), sinusoidal positions, scaled embeddings, optional shared embeddings.
// Every feed-forward block is an ExpertFFN: one expert (dense) or E experts with a router
// at the layers ModelConfig::has_experts selects (THOR: index % 2 == 0).
#pragma once
#include <torch/torch.h>

#include "thor/common/config.h"
#include "thor/model/attention.h"
#include "thor/model/state.h"
#include "thor/moe/expert_ffn.h"

namespace thor {

class EncoderLayerImpl : public torch::nn::Module {
 public:
  EncoderLayerImpl(const ModelConfig& c, int64_t experts, int64_t moe_index);
  // x [B,S,C]; tokens [B,S] (for routing). With `packed` (inference): x [T, C] and tokens [T]
  // are the batch's real tokens, ctx's row_experts one row per token.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pad_mask, const torch::Tensor& tokens,
                        const RoutingContext& ctx, const Packing* packed = nullptr);
  MultiheadAttention self_attn{nullptr};
  torch::nn::LayerNorm self_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  ExpertFFN ffn{nullptr};

 private:
  double dropout_;
  bool pre_norm_;
};
TORCH_MODULE(EncoderLayer);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& c, int64_t experts, int64_t moe_index);
  // Full (teacher-forced) pass: x [B,T,C], enc [B,S,C], tokens [B,T] decoder inputs.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& enc,
                        const torch::Tensor& enc_pad_mask, const torch::Tensor& tokens,
                        const RoutingContext& ctx);
  // One step: x [N,1,C] with N = sentences * beam; this step's self-attention keys/values
  // go to st's caches `self_k.ID` / `self_v.ID` at position st.filled;
  // enc_k/enc_v [sentences,H,S,Dh] and enc_pad_mask [sentences,S], shared by each sentence's beams.
  torch::Tensor step(const torch::Tensor& x, DecoderState& st, const std::string& id,
                     const torch::Tensor& enc_k, const torch::Tensor& enc_v,
                     const torch::Tensor& enc_pad_mask, int64_t beam, const torch::Tensor& tokens,
                     const RoutingContext& ctx);
  MultiheadAttention self_attn{nullptr}, encoder_attn{nullptr};
  torch::nn::LayerNorm self_attn_layer_norm{nullptr}, encoder_attn_layer_norm{nullptr},
      final_layer_norm{nullptr};
  ExpertFFN ffn{nullptr};

 private:
  torch::Tensor residual(const torch::Tensor& x, const torch::Tensor& y, torch::nn::LayerNorm& ln);
  torch::Tensor ffn_block(const torch::Tensor& x, const torch::Tensor& tokens, const RoutingContext& ctx);
  double dropout_;
  bool pre_norm_;
};
TORCH_MODULE(DecoderLayer);

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const ModelConfig& c);

  // src [B,S] -> encoder output [B,S,C]
  torch::Tensor encode(const torch::Tensor& src);
  // The same with a routing context of the caller's (sentence-level draws in row_experts).
  torch::Tensor encode(const torch::Tensor& src, const RoutingContext& ctx) { return encode_with(src, ctx); }
  // tgt_in [B,T] teacher-forced -> logits [B,T,V]
  torch::Tensor decode(const torch::Tensor& tgt_in, const torch::Tensor& enc,
                       const torch::Tensor& src_pad_mask);
  torch::Tensor forward(const torch::Tensor& src, const torch::Tensor& tgt_in);
  // The same with a routing context of the caller's (see routing()): parallel forwards of
  // one model each pass their own.
  torch::Tensor forward(const torch::Tensor& src, const torch::Tensor& tgt_in, const RoutingContext& ctx);

  // Incremental decoding: encoder runs once here; cross-attention keys/values are
  // projected once; self-attention keys/values are cached per layer.
  // Sentence-level expert draws come from runtime::thread_generator() (default: the global one).
  DecoderState init_state(const torch::Tensor& src);
  // Continuous batching: the sentences src [n, S] join `state` (encoded here, one row each
  // until the next reorder) and take their first step at the state's next position
  // (admit_state).
  void admit(DecoderState& state, const torch::Tensor& src);
  // last [N] tokens at position `step` -> logits [N, V], or [N, V'] over state.vocab.
  // Rows that joined later (state.rows[kStart]) count their positions from their start.
  torch::Tensor step(const torch::Tensor& last, int64_t step, DecoderState& state);
  // Scores only the token ids `vocab` (sorted, int64 [V']) in this state's steps: their
  // rows of the output projection are gathered once per batch.
  void restrict_output(DecoderState& state, const torch::Tensor& vocab);

  const ModelConfig& config() const { return cfg_; }

  // Expert routing for the next calls: rows form `groups` equal groups with their own
  // draws (THOR's stacked passes); `select` is the inference policy of stochastic experts.
  const RoutingContext& routing() const { return ctx_; }
  // What the stochastic routers of a batch-level draw would pick for `groups` row groups,
  // one list per expert layer, drawn now (see RouterImpl::draw_groups): forwards over
  // parts of one batch pin it to share the batch's experts. {} when no layer draws so.
  std::vector<std::vector<int64_t>> draw_group_experts(int64_t groups) const;
  void set_expert_select(ExpertSelect select, int64_t fixed_expert = 0);
  ExpertSelect expert_select() const { return ctx_.select; }
  bool stochastic_experts() const { return stochastic_experts_; }  // a stochastic router (thor, random)
  // Pins stochastic experts: pinned[l][g] = expert of row group g at expert layer l ({} = draw).
  void pin_experts(std::vector<std::vector<int64_t>> pinned) { ctx_.pinned = std::move(pinned); }
  // Expert layers in order (encoder, then decoder); empty for a dense model.
  const std::vector<ExpertFFN>& expert_layers() const { return expert_layers_; }
  std::vector<std::string> expert_layer_names() const;

  torch::nn::Embedding encoder_embed{nullptr}, decoder_embed{nullptr};
  torch::Tensor output_projection;  // [V, C]; aliases decoder_embed->weight when shared
  torch::nn::ModuleList encoder_layers{nullptr}, decoder_layers{nullptr};
  torch::nn::LayerNorm encoder_norm{nullptr}, decoder_norm{nullptr};  // pre-norm only

 private:
  // src [B, S] -> [B, S, C]; with `packed` (inference without the padding's work, see
  // packs_encoder) -> the packed tokens' outputs [T, C].
  torch::Tensor encode_with(const torch::Tensor& src, const RoutingContext& ctx, const Packing* packed = nullptr);
  // Whether this batch and context allow packing (every encoder block position-wise) and
  // profit from it (the batch has padding).
  bool packs_encoder(const torch::Tensor& pad_mask, const RoutingContext& ctx) const;
  torch::Tensor decode_with(const torch::Tensor& tgt_in, const torch::Tensor& enc, const torch::Tensor& src_pad_mask,
                            const RoutingContext& ctx);
  // tokens [B, T] at positions offset.. (or, given row_starts [B], row b's from offset -
  // row_starts[b]: rows that joined a running batch) -> scaled embeddings + positions.
  torch::Tensor embed(torch::nn::Embedding& emb, const torch::Tensor& tokens, int64_t offset,
                      const torch::Tensor& row_starts = {});
  torch::Tensor project(const torch::Tensor& h);  // [.., C] -> [.., V]
  ModelConfig cfg_;
  RoutingContext ctx_;
  int64_t num_expert_layers_ = 0;
  std::vector<ExpertFFN> expert_layers_;
  bool stochastic_experts_ = false;
  torch::Tensor positions_;  // [max_positions + 1, C] sinusoids (buffer)
};
TORCH_MODULE(Transformer);

// [n, dim] sinusoidal table as in fairseq (sin half, then cos half).
torch::Tensor sinusoidal_positions(int64_t n, int64_t dim);

}  // namespace thor
