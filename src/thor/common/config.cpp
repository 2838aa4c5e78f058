// See config.h.
#include "thor/common/config.h"

#include "thor/common/json_read.h"

#include <functional>
#include <map>

#include "thor/common/error.h"

namespace thor {

#define THOR_MODEL_FIELDS(X)                                                             \
  X(arch) X(vocab_size) X(pad_id) X(unk_id) X(bos_id) X(eos_id) X(d_model) X(ffn_dim)    \
  X(heads) X(encoder_layers) X(decoder_layers) X(dropout) X(attention_dropout)           \
  X(activation_dropout) X(pre_norm) X(share_all_embeddings)                              \
  X(share_decoder_input_output_embed) X(max_positions) X(num_experts) X(expert_layers) X(router)  \
  X(route_level) X(capacity_factor) X(eval_capacity_factor) X(balance_alpha) X(router_z_loss)    \
  X(second_expert_policy) X(hash_seed) X(alf_update_rate) X(alf_top_k)

void to_json(nlohmann::json& j, const ModelConfig& c) {
#define X(f) j[#f] = c.f;
  THOR_MODEL_FIELDS(X)
#undef X
}

void from_json(const nlohmann::json& j, ModelConfig& c) {
  // Missing keys keep their defaults so older checkpoints stay loadable.
#define X(f) \
  if (j.contains(#f)) read_json_value(j.at(#f), "model config", #f, c.f);
  THOR_MODEL_FIELDS(X)
#undef X
}

void ModelConfig::validate() const {
  auto need = [](bool ok, const std::string& msg) {
    if (!ok) throw Error(msg);
  };
  need(d_model > 0, "--encoder-embed-dim must be > 0");
  need(heads > 0 && d_model % heads == 0, "--attention-heads must divide the embedding dim");
  need(ffn_dim > 0, "--ffn-dim must be > 0");
  need(encoder_layers >= 1 && decoder_layers >= 1, "--encoder-layers/--decoder-layers must be >= 1");
  need(dropout >= 0 && dropout < 1, "--dropout must be in [0, 1)");
  need(attention_dropout >= 0 && attention_dropout < 1, "--attention-dropout must be in [0, 1)");
  need(activation_dropout >= 0 && activation_dropout < 1, "--activation-dropout must be in [0, 1)");
  need(num_experts >= 1, "--num-experts must be >= 1");
  need(vocab_size > 4, "vocabulary size must be > 4");
  need(expert_layers == "even" || expert_layers == "odd" || expert_layers == "all",
       "--expert-layers must be even, odd or all");
  need(capacity_factor >= 0 && eval_capacity_factor >= 0, "--capacity-factor must be >= 0");
}

bool ModelConfig::has_experts(int64_t i) const {
  if (num_experts <= 1) return false;
  if (expert_layers == "all") return true;
  return expert_layers == "even" ? i % 2 == 0 : i % 2 == 1;
}

namespace {
using Preset = std::function<void(ModelConfig&)>;
const std::map<std::string, Preset>& presets() {
  static const std::map<std::string, Preset> table = {
      {"transformer_tiny",
       [](ModelConfig& c) {
         c.d_model = 256, c.ffn_dim = 1024, c.heads = 4, c.encoder_layers = 3, c.decoder_layers = 3;
       }},
      {"transformer_iwslt_de_en",
       [](ModelConfig& c) {
         c.d_model = 512, c.ffn_dim = 1024, c.heads = 4, c.encoder_layers = 6, c.decoder_layers = 6;
       }},
      {"transformer_base",
       [](ModelConfig& c) {
         c.d_model = 512, c.ffn_dim = 2048, c.heads = 8, c.encoder_layers = 6, c.decoder_layers = 6;
       }},
  };
  return table;
}
}  // namespace

void apply_arch(const std::string& name, ModelConfig& c) {
  auto it = presets().find(name);
  if (it == presets().end()) {
    std::string known;
    for (auto& kv : presets()) known += (known.empty() ? "" : ", ") + kv.first;
    throw Error("--arch: unknown architecture '" + name + "' (known: " + known + ")");
  }
  c.arch = name;
  it->second(c);
}

std::vector<std::string> arch_names() {
  std::vector<std::string> v;
  for (auto& kv : presets()) v.push_back(kv.first);
  return v;
}

}  // namespace thor
