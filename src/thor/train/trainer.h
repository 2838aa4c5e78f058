// The training loop: token-budget batches from length buckets, gradient accumulation
// (--update-freq), label-smoothed CE, Adam + inverse-sqrt, clipping, validation (loss and
// beam-search BLEU), checkpoints (last / best / every N) and exact resume. With the THOR
// router every batch runs once, stacked twice with independent expert draws per half
// (the paper's two passes), with CE1 + CE2 + alpha * consistency; gated routers add their
// auxiliary losses.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "thor/common/config.h"

namespace thor::dist {
class Communicator;
}

namespace thor {

struct TrainOptions {
  std::string data_dir, save_dir = "checkpoints";
  std::string device = "auto";
  std::string precision = "float32";  // float32 | bf16 (products of the linear layers, see ops/gemm.h)
  int64_t max_tokens = 4096, max_sentences = 0, update_freq = 1;
  // Every batch split into this many shards of sentences, run at once, each with
  // threads / workers intra-op threads (0 = one per thread on the CPU, 1 on CUDA).
  int64_t workers = 0;
  double lr = 5e-4, warmup_init_lr = 1e-7;
  int64_t warmup_updates = 4000;
  double adam_beta1 = 0.9, adam_beta2 = 0.98, adam_eps = 1e-8, weight_decay = 0.0;
  double clip_norm = 0.0, label_smoothing = 0.1;
  double consistency_alpha = 5.0;  // THOR router: weight of the consistency loss
  // THOR: the consistency weight grows linearly from 0 over the first consistency_warmup
  // updates (update u uses alpha * min(1, (u - 1) / warmup)); 0: the whole alpha from the start.
  int64_t consistency_warmup = 0;
  // THOR: what the consistency term compares: "probs" (the paper's symmetric KL) or
  // "logits" (1/2 mean squared difference of the two passes' logits).
  std::string consistency_on = "probs";
  // Expert initialisation of a fresh run: "independent" (every expert drawn apart) or
  // "copy" (every expert of a layer starts as a copy of the layer's first).
  std::string expert_init = "independent";
  int64_t max_update = 0, max_epoch = 0;  // 0 = no limit
  double max_time_s = 0;                  // 0 = no limit
  int64_t log_interval = 50;
  // Time updates (profile_start, profile_start + profile_updates] per operation class;
  // the table goes to stderr and SAVE_DIR/profile.json. 0 = off.
  int64_t profile_updates = 0, profile_start = 5;
  int64_t validate_interval_updates = 0;  // 0 = at the end of every epoch
  int64_t save_interval_updates = 0;      // 0 = only last/best
  int64_t keep_last = 0;                  // keep the newest N checkpoint_N.pt (0 = all)
  // An update whose loss or gradient is not finite is skipped; this many in a row stop the
  // run with an error (the checkpoints written before stay as they are).
  int64_t max_bad_updates = 10;
  // Multilingual data: pair p's examples are sampled with probability proportional to
  // (its size)^(1 / T) (fairseq's --sampling-temperature): 1 = by size, large = uniform.
  double sampling_temperature = 1.0;
  bool eval_bleu = true;
  int64_t eval_beam = 4, eval_max_sentences = 0;  // eval_max_sentences per language pair
  double eval_lenpen = 1.0;
  uint64_t seed = 1;
  bool resume = false;
  // distributed: start each gradient bucket's all-reduce from the backward pass (hooks)
  bool overlap_comm = true;
  // distributed, routers thor/random: every rank holds num_experts / ranks experts of every
  // expert layer and draws among its own (no token leaves its rank)
  bool expert_parallel = false;
  double bucket_cap_mb = 25;  // gradient bucket size (DDP's bucket_cap_mb; the first bucket 1 MB)
  bool progress = true;  // progress bar when stderr is a terminal
};

void to_json(nlohmann::json& j, const TrainOptions& o);

// Trains and returns the final trainer state (num_updates, best, ...). With a
// communicator of W ranks (dist/communicator.h), every update takes the next W x
// update_freq batches of the one global batch order, rank r the r-th run of update_freq
// of them, and sums the gradients over the ranks: the same update as one process with
// update_freq W x update_freq (and the same expert draws and dropout seeds per batch).
// Rank 0 alone writes the log and the checkpoints; the position in the data is global, so
// a checkpoint resumes on any number of ranks. Null: this process alone.
nlohmann::json train(const TrainOptions& opt, ModelConfig model_cfg, dist::Communicator* comm = nullptr);

}  // namespace thor
