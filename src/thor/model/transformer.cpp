// See transformer.h.
#include "thor/model/transformer.h"

#include <cmath>
#include <optional>

#include "thor/common/runtime.h"
#include "thor/ops/dropout.h"
#include "thor/ops/gemm.h"

namespace thor {

torch::Tensor sinusoidal_positions(int64_t n, int64_t dim) {
  int64_t half = dim / 2;
  double scale = std::log(10000.0) / static_cast<double>(std::max<int64_t>(1, half - 1));
  auto freq = torch::exp(torch::arange(half, torch::kFloat) * -scale);           // [half]
  auto args = torch::arange(n, torch::kFloat).unsqueeze(1) * freq.unsqueeze(0);   // [n, half]
  auto table = torch::cat({torch::sin(args), torch::cos(args)}, 1);               // [n, 2*half]
  if (dim % 2 == 1) table = torch::cat({table, torch::zeros({n, 1})}, 1);
  return table;
}

namespace {
torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}));
}
}  // namespace

EncoderLayerImpl::EncoderLayerImpl(const ModelConfig& c, int64_t experts, int64_t moe_index)
    : dropout_(c.dropout), pre_norm_(c.pre_norm) {
  self_attn = register_module("self_attn", MultiheadAttention(c.d_model, c.heads, c.attention_dropout));
  self_attn_layer_norm = register_module("self_attn_layer_norm", layer_norm(c.d_model));
  ffn = register_module("ffn", ExpertFFN(c, experts, moe_index));
  final_layer_norm = register_module("final_layer_norm", layer_norm(c.d_model));
}

torch::Tensor EncoderLayerImpl::forward(const torch::Tensor& x_in, const torch::Tensor& pad_mask,
                                        const torch::Tensor& tokens, const RoutingContext& ctx,
                                        const Packing* packed) {
  auto x = x_in;
  auto h = pre_norm_ ? self_attn_layer_norm(x) : x;
  h = packed ? self_attn->self_attend_packed(h, *packed, pad_mask) : self_attn(h, h, pad_mask, /*causal=*/false);
  x = thor::dropout_add(x, h, dropout_, is_training());
  if (!pre_norm_) x = self_attn_layer_norm(x);
  h = pre_norm_ ? final_layer_norm(x) : x;
  // packed: one row per token for the feed-forward block
  h = packed ? ffn(h.unsqueeze(1), tokens.unsqueeze(1), ctx).squeeze(1) : ffn(h, tokens, ctx);
  x = thor::dropout_add(x, h, dropout_, is_training());
  if (!pre_norm_) x = final_layer_norm(x);
  return x;
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, int64_t experts, int64_t moe_index)
    : dropout_(c.dropout), pre_norm_(c.pre_norm) {
  self_attn = register_module("self_attn", MultiheadAttention(c.d_model, c.heads, c.attention_dropout));
  self_attn_layer_norm = register_module("self_attn_layer_norm", layer_norm(c.d_model));
  encoder_attn = register_module("encoder_attn", MultiheadAttention(c.d_model, c.heads, c.attention_dropout));
  encoder_attn_layer_norm = register_module("encoder_attn_layer_norm", layer_norm(c.d_model));
  ffn = register_module("ffn", ExpertFFN(c, experts, moe_index));
  final_layer_norm = register_module("final_layer_norm", layer_norm(c.d_model));
}

torch::Tensor DecoderLayerImpl::residual(const torch::Tensor& x, const torch::Tensor& y,
                                         torch::nn::LayerNorm& ln) {
  auto out = thor::dropout_add(x, y, dropout_, is_training());
  return pre_norm_ ? out : ln(out);
}

torch::Tensor DecoderLayerImpl::ffn_block(const torch::Tensor& x, const torch::Tensor& tokens,
                                          const RoutingContext& ctx) {
  auto h = pre_norm_ ? final_layer_norm(x) : x;
  return residual(x, ffn(h, tokens, ctx), final_layer_norm);
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x_in, const torch::Tensor& enc,
                                        const torch::Tensor& enc_pad_mask, const torch::Tensor& tokens,
                                        const RoutingContext& ctx) {
  auto x = x_in;
  auto h = pre_norm_ ? self_attn_layer_norm(x) : x;
  x = residual(x, self_attn(h, h, torch::Tensor(), /*causal=*/true), self_attn_layer_norm);
  h = pre_norm_ ? encoder_attn_layer_norm(x) : x;
  x = residual(x, encoder_attn(h, enc, enc_pad_mask, false), encoder_attn_layer_norm);
  return ffn_block(x, tokens, ctx);
}

torch::Tensor DecoderLayerImpl::step(const torch::Tensor& x_in, DecoderState& st, const std::string& id,
                                     const torch::Tensor& enc_k,
                                     const torch::Tensor& enc_v, const torch::Tensor& enc_pad_mask, int64_t beam,
                                     const torch::Tensor& tokens, const RoutingContext& ctx) {
  auto x = x_in;  // [N, 1, C], N = sentences * beam
  auto h = pre_norm_ ? self_attn_layer_norm(x) : x;
  auto [q, k, v] = self_attn->project_qkv(h);  // [N, H, 1, Dh]
  if (st.paged) {
    auto k_buf = cache_write(st, "self_k." + id, k), v_buf = cache_write(st, "self_v." + id, v);
    auto start = st.rows.find(kStart);
    x = residual(x, self_attn->attend_paged(q, k_buf, v_buf, st.rows.at(kHistory), st.filled + 1,
                                            start != st.rows.end() ? start->second : torch::Tensor()),
                 self_attn_layer_norm);
  } else {
    auto self_k = cache_append(st, "self_k." + id, k), self_v = cache_append(st, "self_v." + id, v);
    x = residual(x, self_attn->attend_heads(q, self_k, self_v, st.step_mask, false), self_attn_layer_norm);
  }
  h = pre_norm_ ? encoder_attn_layer_norm(x) : x;
  // The beams of a sentence attend to its one copy of the encoder output as `beam` query
  // positions: [N, 1, C] -> [sentences, beam, C]; sentences joining the batch at this step
  // (one row each, after the others) as one query position.
  const auto N = x.size(0), C = x.size(2);
  auto attend = [&](int64_t first_row, int64_t rows, int64_t first_sentence, int64_t width) {
    const int64_t n = rows / width;
    return encoder_attn
        ->attend(h.narrow(0, first_row, rows).view({n, width, C}), enc_k.narrow(0, first_sentence, n),
                 enc_v.narrow(0, first_sentence, n), enc_pad_mask.narrow(0, first_sentence, n), false)
        .view({rows, 1, C});
  };
  const int64_t joining = st.joining, beams = N - joining;
  auto cross = joining == 0 ? attend(0, N, 0, beam)
               : beams == 0 ? attend(0, N, 0, 1)
                            : torch::cat({attend(0, beams, 0, beam), attend(beams, joining, beams / beam, 1)}, 0);
  x = residual(x, cross, encoder_attn_layer_norm);
  return ffn_block(x, tokens, ctx);
}

TransformerImpl::TransformerImpl(const ModelConfig& c) : cfg_(c) {
  c.validate();
  auto make_embedding = [&]() {
    torch::nn::Embedding e(torch::nn::EmbeddingOptions(c.vocab_size, c.d_model).padding_idx(c.pad_id));
    torch::nn::init::normal_(e->weight, 0.0, std::pow(static_cast<double>(c.d_model), -0.5));
    torch::NoGradGuard ng;
    e->weight[c.pad_id].zero_();
    return e;
  };
  encoder_embed = register_module("encoder_embed", make_embedding());
  decoder_embed = c.share_all_embeddings ? encoder_embed
                                         : register_module("decoder_embed", make_embedding());
  if (c.share_all_embeddings || c.share_decoder_input_output_embed) {
    output_projection = decoder_embed->weight;
  } else {
    output_projection = register_parameter(
        "output_projection",
        torch::randn({c.vocab_size, c.d_model}) * std::pow(static_cast<double>(c.d_model), -0.5));
  }
  encoder_layers = register_module("encoder_layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.encoder_layers; ++i) {
    bool moe = c.has_experts(i);
    encoder_layers->push_back(EncoderLayer(c, moe ? c.num_experts : 1, moe ? num_expert_layers_++ : -1));
  }
  decoder_layers = register_module("decoder_layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.decoder_layers; ++i) {
    bool moe = c.has_experts(i);
    decoder_layers->push_back(DecoderLayer(c, moe ? c.num_experts : 1, moe ? num_expert_layers_++ : -1));
  }
  // The expert layers, in order, once: the trainer asks for them every batch.
  for (auto& m : *encoder_layers)
    if (auto f = m->as<EncoderLayerImpl>()->ffn; f->experts() > 1) expert_layers_.push_back(f);
  for (auto& m : *decoder_layers)
    if (auto f = m->as<DecoderLayerImpl>()->ffn; f->experts() > 1) expert_layers_.push_back(f);
  for (auto& l : expert_layers_) stochastic_experts_ = stochastic_experts_ || l->stochastic();
  if (c.pre_norm) {
    encoder_norm = register_module("encoder_norm", layer_norm(c.d_model));
    decoder_norm = register_module("decoder_norm", layer_norm(c.d_model));
  }
  positions_ = register_buffer("positions", sinusoidal_positions(c.max_positions + 1, c.d_model));
}

torch::Tensor TransformerImpl::embed(torch::nn::Embedding& emb, const torch::Tensor& tokens, int64_t offset,
                                     const torch::Tensor& row_starts) {
  auto T = tokens.size(1);
  auto x = emb(tokens) * std::sqrt(static_cast<double>(cfg_.d_model));  // [B, T, C]
  if (row_starts.defined()) {
    auto first = (offset - row_starts).to(positions_.device());  // [B]: each row's first position
    TORCH_CHECK(first.max().item<int64_t>() + T <= cfg_.max_positions, "sequence longer than max_positions (",
                cfg_.max_positions, ")");
    auto index = (first.unsqueeze(1) + torch::arange(1, T + 1, first.options()).unsqueeze(0)).view(-1);
    x = x + positions_.index_select(0, index).view({tokens.size(0), T, -1});
  } else {
    TORCH_CHECK(offset + T <= cfg_.max_positions, "sequence longer than max_positions (", cfg_.max_positions, ")");
    x = x + positions_.narrow(0, offset + 1, T).unsqueeze(0);
  }
  return thor::dropout(x, cfg_.dropout, is_training());
}

torch::Tensor TransformerImpl::project(const torch::Tensor& h) {
  return linear(h, output_projection, torch::Tensor());
}

torch::Tensor TransformerImpl::encode(const torch::Tensor& src) { return encode_with(src, ctx_); }

torch::Tensor TransformerImpl::encode_with(const torch::Tensor& src, const RoutingContext& ctx, const Packing* packed) {
  auto pad_mask = src.eq(cfg_.pad_id);  // [B, S]
  auto x = embed(encoder_embed, src, 0);
  auto tokens = src;
  RoutingContext layer_ctx = ctx;
  if (packed) {  // [T, C] rows; a sentence's expert draws on each of its tokens
    x = packed->pack(x), tokens = packed->pack(src);
    if (ctx.row_experts.defined()) layer_ctx.row_experts = ctx.row_experts.index_select(0, packed->rows());
  }
  for (auto& m : *encoder_layers) x = m->as<EncoderLayerImpl>()->forward(x, pad_mask, tokens, layer_ctx, packed);
  if (encoder_norm) x = encoder_norm(x);
  return x;
}

bool TransformerImpl::packs_encoder(const torch::Tensor& pad_mask, const RoutingContext& ctx) const {
  if (is_training() || torch::GradMode::is_enabled() || !pad_mask.device().is_cpu() ||
      encoder_embed->weight.scalar_type() != torch::kFloat || !pad_mask.any().item<bool>())
    return false;
  for (const auto& m : *encoder_layers)
    if (!m->as<EncoderLayerImpl>()->ffn->position_wise(ctx)) return false;
  return true;
}

torch::Tensor TransformerImpl::decode(const torch::Tensor& tgt_in, const torch::Tensor& enc,
                                      const torch::Tensor& src_pad_mask) {
  return decode_with(tgt_in, enc, src_pad_mask, ctx_);
}

torch::Tensor TransformerImpl::decode_with(const torch::Tensor& tgt_in, const torch::Tensor& enc,
                                           const torch::Tensor& src_pad_mask, const RoutingContext& ctx) {
  auto x = embed(decoder_embed, tgt_in, 0);
  for (auto& m : *decoder_layers) x = m->as<DecoderLayerImpl>()->forward(x, enc, src_pad_mask, tgt_in, ctx);
  if (decoder_norm) x = decoder_norm(x);
  return project(x);
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& src, const torch::Tensor& tgt_in) {
  return forward(src, tgt_in, ctx_);
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& src, const torch::Tensor& tgt_in,
                                       const RoutingContext& ctx) {
  auto enc = encode_with(src, ctx);
  return decode_with(tgt_in, enc, src.eq(cfg_.pad_id), ctx);
}

std::vector<std::vector<int64_t>> TransformerImpl::draw_group_experts(int64_t groups) const {
  std::vector<std::vector<int64_t>> out;
  for (const auto& layer : expert_layers_) {
    if (!layer->router) return {};
    auto draw = layer->router->draw_groups(groups);  // {} unless a random draw per group
    if (draw.empty()) return {};
    out.push_back(std::move(draw));
  }
  return out;
}

void TransformerImpl::set_expert_select(ExpertSelect select, int64_t fixed_expert) {
  ctx_.select = select;
  ctx_.fixed_expert = fixed_expert;
}

std::vector<std::string> TransformerImpl::expert_layer_names() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < encoder_layers->size(); ++i)
    if (cfg_.has_experts(static_cast<int64_t>(i))) out.push_back("encoder." + std::to_string(i));
  for (size_t i = 0; i < decoder_layers->size(); ++i)
    if (cfg_.has_experts(static_cast<int64_t>(i))) out.push_back("decoder." + std::to_string(i));
  return out;
}

DecoderState TransformerImpl::init_state(const torch::Tensor& src) {
  DecoderState st;
  // Sentence-level stochastic experts: one draw per sentence and expert layer, kept in the
  // state so every decoding step and every beam of that sentence uses the same experts
  // (the official THOR code redraws at every step). The routing context is a copy: decoding
  // workers share the model, each batch has its own draws.
  RoutingContext ctx = ctx_;
  if (stochastic_experts_ && !is_training() && ctx.select == ExpertSelect::Sentence) {
    ctx.row_experts = (torch::randint(cfg_.local_experts(), {src.size(0), num_expert_layers_}, runtime::thread_generator(),
                                      torch::TensorOptions().dtype(torch::kLong)) +
                       cfg_.first_local_expert())
                          .to(src.device());
    st.sentences["row_experts"] = ctx.row_experts;
  }
  const auto pad_mask = src.eq(cfg_.pad_id);
  // The encoder and the cross-attention keys and values on the real tokens only, where
  // the batch has padding and every block is position-wise (the same values as padded).
  std::optional<Packing> packed;
  if (packs_encoder(pad_mask, ctx)) packed = Packing::of(pad_mask);
  auto enc = encode_with(src, ctx, packed ? &*packed : nullptr);
  // CPU inference reads the self-attention history through an index (no copies on reorder).
  st.paged = src.device().is_cpu() && !torch::GradMode::is_enabled() && !is_training() &&
             enc.scalar_type() == torch::kFloat;
  st.sentences["src_pad_mask"] = pad_mask;
  for (size_t i = 0; i < decoder_layers->size(); ++i) {
    auto layer = decoder_layers[i]->as<DecoderLayerImpl>();
    auto [k, v] = layer->encoder_attn->project_kv(enc, packed ? &*packed : nullptr);
    st.sentences["enc_k." + std::to_string(i)] = k;
    st.sentences["enc_v." + std::to_string(i)] = v;
  }
  return st;
}

torch::Tensor TransformerImpl::step(const torch::Tensor& last, int64_t step, DecoderState& st) {
  TORCH_CHECK(step == st.filled, "step ", step, " on a state that holds ", st.filled, " positions");
  // rows that joined a running batch (kStart) count their positions from their start
  auto start = st.rows.find(kStart);
  const bool joined = start != st.rows.end();
  auto x = embed(decoder_embed, last.view({-1, 1}), step, joined ? start->second : torch::Tensor());  // [N, 1, C]
  st.step_mask = joined && !st.paged ? torch::arange(step + 1, start->second.options())
                                           .unsqueeze(0)
                                           .lt(start->second.unsqueeze(1))
                                           .to(x.device())
                                     : torch::Tensor();
  const auto& mask = st.sentences.at("src_pad_mask");
  auto tokens = last.view({-1, 1});
  if (st.paged) history_step(st, x.size(0));
  RoutingContext ctx = ctx_;
  if (auto it = st.sentences.find("row_experts"); it != st.sentences.end())
    ctx.row_experts = sentence_rows(st, it->second);
  for (size_t i = 0; i < decoder_layers->size(); ++i) {
    auto id = std::to_string(i);
    auto layer = decoder_layers[i]->as<DecoderLayerImpl>();
    x = layer->step(x, st, id, st.sentences.at("enc_k." + id), st.sentences.at("enc_v." + id), mask, st.beam,
                    tokens, ctx);
  }
  st.filled = step + 1;
  if (decoder_norm) x = decoder_norm(x);
  // [N, V], or [N, V'] over the batch's shortlist rows of the output projection
  auto it = st.batch.find("output_weight");
  return linear(x.squeeze(1), it != st.batch.end() ? it->second : output_projection, torch::Tensor());
}

void TransformerImpl::admit(DecoderState& st, const torch::Tensor& src) {
  auto add = init_state(src);
  add.paged = st.paged;  // the running batch's cache layout (nothing is cached yet)
  admit_state(st, std::move(add));
}

void TransformerImpl::restrict_output(DecoderState& st, const torch::Tensor& vocab) {
  auto ids = vocab.to(torch::kCPU).to(torch::kLong).contiguous();
  TORCH_CHECK(ids.dim() == 1 && ids.numel() > 0, "restrict_output: expected a non-empty id list");
  TORCH_CHECK(ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < output_projection.size(0),
              "restrict_output: ids outside the vocabulary");
  st.vocab = ids;
  st.batch["output_weight"] = output_projection.index_select(0, ids.to(output_projection.device()));
}

}  // namespace thor
