// Checkpoints: one archive carrying everything needed to translate (config, SentencePiece
// model, weights) and, for training checkpoints, everything needed to resume exactly
// (optimizer, trainer position, RNG). Written to a temporary name and renamed.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "thor/common/config.h"
#include "thor/data/vocab.h"
#include "thor/model/transformer.h"
#include "thor/train/optim.h"

namespace thor {

struct CheckpointExtras {
  nlohmann::json train_state;  // trainer position, best score, args
  const Adam* optimizer = nullptr;
  bool save_rng = true;
};

void save_checkpoint(const std::string& path, Transformer& model, const Vocab& vocab,
                     const CheckpointExtras& extras);

struct LoadedModel {
  ModelConfig config;
  Transformer model{nullptr};
  Vocab vocab;
  nlohmann::json train_state;
};

// Loads config, vocabulary and weights (model in eval mode on `device`).
LoadedModel load_model(const std::string& path, const torch::Device& device);

// Restores optimizer state and the global RNG from a training checkpoint.
void load_training_state(const std::string& path, Adam& optimizer);

}  // namespace thor
