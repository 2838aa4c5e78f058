// Model configuration: one plain struct with every default in one place, named
// architecture presets (fairseq's register_model_architecture), and JSON round-trip so
// every checkpoint carries the config it was trained with.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace thor {

struct ModelConfig {
  std::string arch = "transformer_tiny";
  int64_t vocab_size = 0;
  int64_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;
  int64_t d_model = 256;
  int64_t ffn_dim = 1024;
  int64_t heads = 4;
  int64_t encoder_layers = 3;
  int64_t decoder_layers = 3;
  double dropout = 0.1;
  double attention_dropout = 0.0;
  double activation_dropout = 0.0;
  bool pre_norm = false;                 // fairseq default: post-norm
  bool share_all_embeddings = false;     // encoder emb = decoder emb = output projection
  bool share_decoder_input_output_embed = false;
  int64_t max_positions = 1024;
  // Experts (THOR / MoE). num_experts == 1 is the dense Transformer.
  int64_t num_experts = 1;
  std::string expert_layers = "even";   // even | odd | all: which layer indices get experts
  std::string router = "thor";          // thor | random | switch | gshard | hash | alf
  std::string route_level = "batch";    // thor/random training draws: batch | sentence | token
  double capacity_factor = 1.0;         // switch/gshard, training (0 = no capacity limit)
  double eval_capacity_factor = 2.0;    // switch/gshard, evaluation and decoding
  double balance_alpha = 0.01;          // load-balancing loss coefficient
  double router_z_loss = 1e-3;          // router z-loss coefficient (0 = off)
  std::string second_expert_policy = "random";  // gshard: all | random | threshold
  int64_t hash_seed = 1;
  double alf_update_rate = 1e-3;        // alf: bias step u
  int64_t alf_top_k = 1;
  // Expert parallelism: the layout of a run, never saved with the model. This process holds
  // experts [first_local_expert(), first_local_expert() + local_experts()) of every expert
  // layer, and stochastic routers draw among those only.
  int64_t expert_shards = 1, expert_shard = 0;
  int64_t local_experts() const { return num_experts / expert_shards; }
  int64_t first_local_expert() const { return expert_shard * local_experts(); }

  bool has_experts(int64_t layer_index) const;  // expert FFN at this layer index?

  void validate() const;  // throws thor::Error naming the offending option
};

void to_json(nlohmann::json& j, const ModelConfig& c);
void from_json(const nlohmann::json& j, ModelConfig& c);

// Applies a named preset (throws thor::Error on an unknown name).
void apply_arch(const std::string& name, ModelConfig& c);
std::vector<std::string> arch_names();

}  // namespace thor
