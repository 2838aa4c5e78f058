// See export.h.
#include "thor/train/export.h"

#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/train/checkpoint.h"

namespace thor {

Transformer make_dense(Transformer& model, const std::string& expert) {
  const auto& cfg = model->config();
  if (cfg.num_experts <= 1) throw Error("export: the model is already dense");
  if (model->expert_layers().empty() || !model->expert_layers().front()->stochastic())
    throw Error("export: only stochastic-expert models (router thor or random) export to dense; router '" +
                cfg.router + "' needs its gate");
  int64_t k = -1;  // -1 = merge
  if (expert != "merge") {
    try {
      size_t used = 0;
      k = std::stoll(expert, &used);
      if (used != expert.size()) k = -2;
    } catch (const std::exception&) {
      k = -2;
    }
    if (k < 0 || k >= cfg.num_experts)
      throw Error("--expert: expected merge or an expert index in [0, " + std::to_string(cfg.num_experts) +
                  "), got '" + expert + "'");
  }
  ModelConfig dense_cfg = cfg;
  dense_cfg.num_experts = 1;
  Transformer dense(dense_cfg);
  torch::NoGradGuard ng;
  auto src = model->named_parameters(), src_buf = model->named_buffers();
  for (auto& kv : dense->named_parameters()) {
    const auto& name = kv.key();
    auto* from = src.find(name);
    if (!from) throw Error("export: parameter " + name + " missing in the source model");
    auto value = *from;
    if (value.dim() >= 1 && value.size(0) == cfg.num_experts && kv.value().dim() == value.dim() &&
        kv.value().size(0) == 1 && name.find(".ffn.") != std::string::npos) {
      value = k >= 0 ? value.narrow(0, k, 1) : value.mean(0, true);
    }
    kv.value().copy_(value);
  }
  for (auto& kv : dense->named_buffers())
    if (auto* from = src_buf.find(kv.key())) kv.value().copy_(*from);
  dense->eval();
  return dense;
}

void export_dense(const std::string& model_path, const std::string& expert, const std::string& out_path) {
  auto lm = load_model(model_path, torch::kCPU);
  auto dense = make_dense(lm.model, expert);
  CheckpointExtras ex;
  ex.train_state = {{"exported_from", model_path}, {"expert", expert}};
  if (lm.train_state.contains("position")) ex.train_state["position"] = lm.train_state["position"];
  if (lm.train_state.contains("meta")) ex.train_state["meta"] = lm.train_state["meta"];  // its languages
  ex.save_rng = false;
  save_checkpoint(out_path, dense, lm.vocab, ex);
  THOR_LOG("export") << model_path << " (" << lm.config.num_experts << " experts) -> " << out_path
                     << " (dense, expert " << expert << ")";
}

}  // namespace thor
