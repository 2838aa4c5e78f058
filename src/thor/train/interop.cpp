// See interop.h.
#include "thor/train/interop.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "thor/common/error.h"
#include "thor/common/file_io.h"
#include "thor/common/log.h"
#include "thor/common/safetensors.h"
#include "thor/train/checkpoint.h"
#include "thor/train/export.h"

namespace fs = std::filesystem;

namespace thor {

namespace {

constexpr const char* kWeights = "model.safetensors";
constexpr const char* kConfig = "config.json";
constexpr const char* kSpm = "sentencepiece.model";

void write_text(const std::string& path, const std::string& text) {
  DurableFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

nlohmann::json hf_config(const ModelConfig& c, const nlohmann::json& meta) {
  nlohmann::json j = {
      {"model_type", "thor"},
      {"architectures", {"ThorForConditionalGeneration"}},
      {"d_model", c.d_model},
      {"encoder_layers", c.encoder_layers},
      {"decoder_layers", c.decoder_layers},
      {"encoder_attention_heads", c.heads},
      {"decoder_attention_heads", c.heads},
      {"encoder_ffn_dim", c.ffn_dim},
      {"decoder_ffn_dim", c.ffn_dim},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_positions},
      {"dropout", c.dropout},
      {"attention_dropout", c.attention_dropout},
      {"activation_dropout", c.activation_dropout},
      {"activation_function", "relu"},
      {"normalize_before", c.pre_norm},
      {"scale_embedding", true},
      {"share_encoder_decoder_embeddings", c.share_all_embeddings},
      {"tie_word_embeddings", c.share_all_embeddings || c.share_decoder_input_output_embed},
      {"pad_token_id", c.pad_id},
      {"unk_token_id", c.unk_id},
      {"bos_token_id", c.bos_id},
      {"eos_token_id", c.eos_id},
      {"decoder_start_token_id", c.bos_id},
      {"num_experts", c.num_experts},
      {"expert_layers", c.expert_layers},
      {"router", c.router},
      {"thor", c},
  };
  if (meta.is_object()) {
    j["thor_meta"] = meta;
    if (meta.contains("src_lang")) j["source_lang"] = meta["src_lang"];
    if (meta.contains("tgt_lang")) j["target_lang"] = meta["tgt_lang"];
  }
  return j;
}

void export_safetensors(Transformer& model, const Vocab& vocab, const nlohmann::json& meta, const std::string& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw Error(out_dir + ": cannot create (" + ec.message() + ")");
  Safetensors st;
  for (const auto& kv : model->named_parameters()) st.tensors.emplace_back(kv.key(), kv.value());
  for (const auto& kv : model->named_buffers()) st.tensors.emplace_back(kv.key(), kv.value());
  st.metadata = {{"format", "pt"}, {"producer", "thor"}};
  write_safetensors((fs::path(out_dir) / kWeights).string(), st);
  write_text((fs::path(out_dir) / kConfig).string(), hf_config(model->config(), meta).dump(2) + "\n");
  write_text((fs::path(out_dir) / kSpm).string(), vocab.serialized());
  THOR_LOG("export") << out_dir << "/{" << kWeights << ", " << kConfig << ", " << kSpm << "}: " << st.tensors.size()
                     << " tensors";
}

void export_safetensors(const std::string& model_path, const std::string& out_dir, const std::string& expert) {
  auto lm = load_model(model_path, torch::kCPU);
  auto model = expert.empty() ? lm.model : make_dense(lm.model, expert);
  export_safetensors(model, lm.vocab, lm.train_state.value("meta", nlohmann::json()), out_dir);
}

void import_safetensors(const std::string& dir, const std::string& out_path) {
  const auto config_path = (fs::path(dir) / kConfig).string();
  nlohmann::json cj;
  try {
    cj = nlohmann::json::parse(read_text(config_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(config_path + ": not valid JSON (" + e.what() + ")");
  }
  if (!cj.is_object() || !cj.contains("thor"))
    throw Error(config_path + ": no \"thor\" model config (written by thor export or tools/convert_fairseq.py)");
  ModelConfig cfg;
  try {
    cfg = cj.at("thor").get<ModelConfig>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(config_path + ": the \"thor\" config is unreadable (" + e.what() + ")");
  }
  cfg.validate();
  auto vocab = Vocab::from_serialized(read_text((fs::path(dir) / kSpm).string()));
  if (vocab.size() != cfg.vocab_size)
    throw Error(dir + ": " + kSpm + " has " + std::to_string(vocab.size()) + " pieces, the config says vocab_size " +
                std::to_string(cfg.vocab_size));
  const auto weights_path = (fs::path(dir) / kWeights).string();
  auto st = read_safetensors(weights_path);
  std::map<std::string, torch::Tensor> given(st.tensors.begin(), st.tensors.end());
  Transformer model(cfg);
  torch::NoGradGuard ng;
  std::set<std::string> used;
  auto take = [&](const std::string& name, torch::Tensor& dst, bool required) {
    auto it = given.find(name);
    if (it == given.end()) {
      if (required) throw Error(weights_path + ": tensor '" + name + "' missing");
      return;
    }
    if (!it->second.sizes().equals(dst.sizes()) || it->second.scalar_type() != dst.scalar_type())
      throw Error(weights_path + ": tensor '" + name + "' is " + c10::toString(it->second.scalar_type()) +
                  std::string(" ") + c10::str(it->second.sizes()) + ", the model needs " +
                  c10::toString(dst.scalar_type()) + " " + c10::str(dst.sizes()));
    dst.copy_(it->second);
    used.insert(name);
  };
  for (auto& kv : model->named_parameters()) take(kv.key(), kv.value(), true);
  // buffers the model computes (sinusoidal positions, a hash router's table) may be absent
  for (auto& kv : model->named_buffers()) take(kv.key(), kv.value(), false);
  for (const auto& [name, t] : st.tensors)
    if (!used.count(name)) throw Error(weights_path + ": tensor '" + name + "' is not part of this model");
  CheckpointExtras ex;
  ex.train_state = {{"imported_from", dir}};
  if (cj.contains("thor_meta")) ex.train_state["meta"] = cj["thor_meta"];
  ex.save_rng = false;
  save_checkpoint(out_path, model, vocab, ex);
  THOR_LOG("import") << dir << " -> " << out_path << " (" << cfg.arch << ", " << cfg.num_experts << " expert"
                     << (cfg.num_experts > 1 ? "s" : "") << ", " << used.size() << " tensors)";
}

}  // namespace thor
