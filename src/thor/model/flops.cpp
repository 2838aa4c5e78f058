// See flops.h.
#include "thor/model/flops.h"

namespace thor {

namespace {
// Experts a token is computed by in an expert layer (gshard: top-2; alf: its top-k).
double experts_per_token(const ModelConfig& c) {
  if (c.router == "gshard") return 2.0;
  if (c.router == "alf") return static_cast<double>(c.alf_top_k);
  return 1.0;
}
// Router gate: one [d, E] product per token (switch, gshard, alf).
double gate_macs(const ModelConfig& c) {
  bool gated = c.router == "switch" || c.router == "gshard" || c.router == "alf";
  return gated ? static_cast<double>(c.d_model * c.num_experts) : 0.0;
}
}  // namespace

double forward_macs(const ModelConfig& c, int64_t rows, int64_t S, int64_t T) {
  const double d = static_cast<double>(c.d_model), f = static_cast<double>(c.ffn_dim);
  const double s = static_cast<double>(S), t = static_cast<double>(T), n = static_cast<double>(rows);
  auto ffn = [&](int64_t layer) {
    bool moe = c.num_experts > 1 && c.has_experts(layer);
    return moe ? experts_per_token(c) * 2.0 * d * f + gate_macs(c) : 2.0 * d * f;
  };
  double per_src = 0, per_tgt = 0;  // MACs per source / target position
  for (int64_t i = 0; i < c.encoder_layers; ++i)
    per_src += 4.0 * d * d            // q, k, v, out projections
               + 2.0 * s * d          // scores q.k and the weighted sum of v over S keys
               + ffn(i);
  for (int64_t i = 0; i < c.decoder_layers; ++i) {
    per_tgt += 4.0 * d * d + 2.0 * t * d  // self-attention (the causal mask still computes T scores)
               + 2.0 * d * d + 2.0 * s * d  // cross-attention q and out projections, scores, sum
               + ffn(i);
    per_src += 2.0 * d * d;  // cross-attention k and v projections of the encoder output
  }
  per_tgt += d * static_cast<double>(c.vocab_size);  // output projection
  return n * (s * per_src + t * per_tgt);
}

double training_flops(const ModelConfig& c, int64_t rows, int64_t S, int64_t T, bool two_pass) {
  return 2.0 * 3.0 * forward_macs(c, rows, S, T) * (two_pass ? 2.0 : 1.0);
}

}  // namespace thor
