// Checkpoints: one archive carrying everything needed to translate (config, SentencePiece
// model, weights) and, for training checkpoints, everything needed to resume exactly
// (optimizer, trainer position, RNG). Serialised once and written durably (temporary name,
// fsync, rename, directory fsync) to every path it is saved under.
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
  // Expert parallel: the model and optimizer saved are rank 0's (its own experts); the other
  // ranks' experts are in the files this names, beside the checkpoint:
  // {"shards": W, "update": N, "files": [expert_shard_name(N, 1, W), ...]}. Null otherwise.
  nlohmann::json expert_shards;
};

// Expert-parallel checkpoints (docs/SCALING.md): every rank r > 0 writes the rows of its
// experts (values and Adam moments) to expert_shard_name(update, r, W) beside the checkpoint
// before rank 0 writes the checkpoint itself, which names them; no rank ever holds more
// than its own experts. load_model and load_training_state assemble the whole model, so
// such a checkpoint translates, averages, exports and resumes on any number of ranks as a
// one-process one does.
std::string expert_shard_name(int64_t update, int64_t shard, int64_t shards);
struct ShardTensor {
  int64_t index;  // the parameter's position in Transformer::parameters()
  torch::Tensor value, exp_avg, exp_avg_sq;  // this rank's rows
};
void save_expert_shard(const std::string& path, int64_t update, int64_t shard, int64_t shards,
                       const std::vector<ShardTensor>& tensors);
// Removes the expert shard files of SAVE_DIR whose update is not in `referenced` (the
// updates of the checkpoints kept).
void remove_unreferenced_expert_shards(const std::string& save_dir, const std::vector<int64_t>& referenced);

// Streamed durably to paths[0] (common/file_io.h), the other paths made names of the same
// file: one serialisation, no copy of the checkpoint in memory.
void save_checkpoint(const std::vector<std::string>& paths, Transformer& model, const Vocab& vocab,
                     const CheckpointExtras& extras);
void save_checkpoint(const std::string& path, Transformer& model, const Vocab& vocab,
                     const CheckpointExtras& extras);

// The trainer state stored in a checkpoint (throws Error naming the file if unreadable).
nlohmann::json read_train_state(const std::string& path);

// The checkpoint `--resume` continues from in SAVE_DIR: of checkpoint_last.pt,
// checkpoint_N.pt and checkpoint_best.pt, the readable one with the most updates
// (checkpoint_last.pt first among equals); unreadable ones are skipped with a warning.
// Empty when the directory holds no checkpoint; throws when it holds some but none is
// readable (a run must never start over silently beside its own checkpoints).
// Leftover NAME.pt.tmp files (a write that was interrupted) are removed.
std::string find_resume_checkpoint(const std::string& save_dir);

// The checkpoint_N.pt of SAVE_DIR by update number, oldest first.
std::vector<std::pair<int64_t, std::string>> numbered_checkpoints(const std::string& save_dir);
// Removes all but the newest `keep` checkpoint_N.pt (fairseq's --keep-interval-updates).
void remove_old_checkpoints(const std::string& save_dir, int64_t keep);

struct LoadedModel {
  ModelConfig config;
  Transformer model{nullptr};
  Vocab vocab;
  nlohmann::json train_state;
};

// Loads config, vocabulary and weights (model in eval mode on `device`).
LoadedModel load_model(const std::string& path, const torch::Device& device);

// CRC32 of every parameter's values in Transformer::parameters() order: equal digests mean
// bit-identical parameters (kill drills compare a resumed run with an uninterrupted one).
uint32_t parameter_digest(Transformer& model);

// Restores optimizer state and the global RNG from a training checkpoint.
void load_training_state(const std::string& path, Adam& optimizer);

}  // namespace thor
