// Models in and out the way the ecosystem passes them: a directory with model.safetensors
// (tensor names = thor's state-dict keys), config.json (the model config, fields named as
// Hugging Face's translation configs name them where one exists, thor's own config under
// "thor") and the SentencePiece model. tools/convert_fairseq.py writes such a directory
// from a fairseq or official-THOR checkpoint, so `thor import` is the one way in.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "thor/common/config.h"
#include "thor/data/vocab.h"
#include "thor/model/transformer.h"

namespace thor {

// config.json of a model: HF-style fields plus {"thor": config, "thor_meta": languages}.
nlohmann::json hf_config(const ModelConfig& c, const nlohmann::json& meta);

// A model -> DIR/model.safetensors, DIR/config.json, DIR/sentencepiece.model; `meta`: the
// languages of its data (a checkpoint's train_state["meta"]; null when unknown).
void export_safetensors(Transformer& model, const Vocab& vocab, const nlohmann::json& meta, const std::string& out_dir);
// The same from a checkpoint; with `expert` (as thor export --expert: K or merge) a THOR
// model is made dense first.
void export_safetensors(const std::string& model_path, const std::string& out_dir, const std::string& expert = "");

// DIR as export_safetensors writes it -> a thor checkpoint at out_path. Every parameter and
// buffer of the model must be in model.safetensors with its shape (float32), and nothing
// else; errors name the file and the tensor.
void import_safetensors(const std::string& dir, const std::string& out_path);

}  // namespace thor
