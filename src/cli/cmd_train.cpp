// `thor train DATA_DIR`: fairseq-train-like flags; --arch picks a preset and every model
// flag given explicitly overrides it.
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/config_file.h"
#include "thor/common/config.h"
#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/dist/communicator.h"
#include "thor/dist/env.h"
#include "thor/dist/launch.h"
#include "thor/train/trainer.h"

namespace thor::cli {

void add_train(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("train", "train a Transformer on a prepared dataset");
  static TrainOptions o;
  static ModelConfig m;  // explicit overrides land here
  static std::string arch = "transformer_tiny";
  static double max_time_min = 0;
  cmd->add_option("data", o.data_dir, "dataset directory made by thor prepare")->required();
  cmd->add_option("--arch,-a", arch, "architecture preset")->capture_default_str();
  // Model overrides (fairseq names).
  auto* g = cmd->add_option_group("model");
  g->add_option("--encoder-embed-dim", m.d_model, "embedding/model dimension");
  g->add_option("--ffn-dim", m.ffn_dim, "feed-forward inner dimension");
  g->add_option("--attention-heads", m.heads, "attention heads");
  g->add_option("--encoder-layers", m.encoder_layers, "encoder layers");
  g->add_option("--decoder-layers", m.decoder_layers, "decoder layers");
  g->add_option("--dropout", m.dropout, "dropout")->capture_default_str();
  g->add_option("--attention-dropout", m.attention_dropout, "attention dropout")->capture_default_str();
  g->add_option("--activation-dropout", m.activation_dropout, "activation dropout")->capture_default_str();
  g->add_flag("--pre-norm", m.pre_norm, "layer norm before each block (default: after)");
  g->add_flag("--share-all-embeddings", m.share_all_embeddings, "encoder, decoder and output share one embedding");
  g->add_flag("--share-decoder-input-output-embed", m.share_decoder_input_output_embed, "decoder input and output share one embedding");
  g->add_option("--max-positions", m.max_positions, "longest sequence the model accepts")->capture_default_str();
  // Experts (THOR and the gated MoE baselines).
  auto* x = cmd->add_option_group("experts");
  x->add_option("--num-experts", m.num_experts, "experts per expert layer (1 = dense)")->capture_default_str();
  x->add_option("--expert-layers", m.expert_layers, "layers with experts: even (index % 2 == 0), odd, all")
      ->check(CLI::IsMember({"even", "odd", "all"}))->capture_default_str();
  x->add_option("--router", m.router, "thor | random | switch | gshard | hash | alf")->capture_default_str();
  x->add_option("--route-level", m.route_level, "thor/random draws: batch | sentence | token")
      ->check(CLI::IsMember({"batch", "sentence", "token"}))->capture_default_str();
  x->add_option("--consistency-alpha", o.consistency_alpha, "thor: weight of the consistency loss")->capture_default_str();
  x->add_option("--consistency-warmup", o.consistency_warmup,
                "thor: the consistency weight grows linearly from 0 to --consistency-alpha over this many updates (0 = none)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  x->add_option("--consistency-on", o.consistency_on,
                "thor: probs (the paper's symmetric KL of the two passes' probabilities) or logits (1/2 mean squared difference)")
      ->check(CLI::IsMember({"probs", "logits"}))->capture_default_str();
  x->add_option("--expert-init", o.expert_init,
                "independent: every expert initialised apart; copy: every expert of a layer starts as a copy of its first")
      ->check(CLI::IsMember({"independent", "copy"}))->capture_default_str();
  x->add_option("--capacity-factor", m.capacity_factor, "switch/gshard capacity in training (0 = none)")->capture_default_str();
  x->add_option("--eval-capacity-factor", m.eval_capacity_factor, "switch/gshard capacity in evaluation")->capture_default_str();
  x->add_option("--balance-alpha", m.balance_alpha, "load-balancing loss coefficient")->capture_default_str();
  x->add_option("--router-z-loss", m.router_z_loss, "router z-loss coefficient (0 = off)")->capture_default_str();
  x->add_option("--second-expert-policy", m.second_expert_policy, "gshard: all | random | threshold")
      ->check(CLI::IsMember({"all", "random", "threshold"}))->capture_default_str();
  x->add_option("--hash-seed", m.hash_seed, "hash router: seed of the token -> expert table")->capture_default_str();
  x->add_option("--alf-update-rate", m.alf_update_rate, "alf: bias update step u")->capture_default_str();
  x->add_option("--alf-top-k", m.alf_top_k, "alf: experts per token")->capture_default_str();
  // Optimisation.
  cmd->add_option("--save-dir", o.save_dir, "checkpoint directory")->capture_default_str();
  cmd->add_option("--device", o.device, "auto, cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--precision", o.precision,
                  "float32 | bf16 | auto: bf16 rounds the operands of the linear layers' products (forward and "
                  "backward) to bfloat16, accumulating in float32; parameters, gradients, optimizer, "
                  "loss, softmax and layer norm stay float32 (CPU); auto: bf16 where the CPU has native bf16 "
                  "products (AVX512-BF16 / AMX), float32 elsewhere")
      ->capture_default_str();
  cmd->add_option("--max-tokens", o.max_tokens, "tokens per batch (padded)")->capture_default_str();
  cmd->add_option("--batch-size", o.max_sentences, "max sentences per batch (0 = no limit)")->capture_default_str();
  cmd->add_option("--update-freq", o.update_freq, "batches accumulated per update")->capture_default_str();
  cmd->add_option("--workers", o.workers,
                  "shards of every batch trained at once, each with threads/workers intra-op threads (0 = one per "
                  "thread on the CPU, 1 on CUDA); a run is reproducible for a given number of workers")
      ->capture_default_str();
  cmd->add_option("--lr", o.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--warmup-updates", o.warmup_updates, "linear warm-up updates")->capture_default_str();
  cmd->add_option("--warmup-init-lr", o.warmup_init_lr, "learning rate at update 0")->capture_default_str();
  cmd->add_option("--adam-beta1", o.adam_beta1)->capture_default_str();
  cmd->add_option("--adam-beta2", o.adam_beta2)->capture_default_str();
  cmd->add_option("--adam-eps", o.adam_eps)->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "decoupled weight decay")->capture_default_str();
  cmd->add_option("--clip-norm", o.clip_norm, "gradient norm clip (0 = off)")->capture_default_str();
  cmd->add_option("--label-smoothing", o.label_smoothing)->capture_default_str();
  cmd->add_option("--max-update", o.max_update, "stop after this many updates (0 = no limit)")->capture_default_str();
  cmd->add_option("--max-epoch", o.max_epoch, "stop after this many epochs (0 = no limit)")->capture_default_str();
  cmd->add_option("--max-time", max_time_min, "stop after this many minutes of training (0 = no limit)")->capture_default_str();
  cmd->add_option("--log-interval", o.log_interval, "updates per JSON log line")->capture_default_str();
  cmd->add_option("--profile-updates", o.profile_updates,
                  "time N updates per operation class (after 5 untimed); table on stderr, SAVE_DIR/profile.json")
      ->capture_default_str();
  cmd->add_option("--validate-interval-updates", o.validate_interval_updates, "validate every N updates (0 = every epoch)")->capture_default_str();
  cmd->add_option("--save-interval-updates", o.save_interval_updates, "also keep checkpoint_N.pt every N updates")->capture_default_str();
  cmd->add_option("--keep-last", o.keep_last, "keep only the newest N checkpoint_N.pt (0 = all; fairseq's --keep-interval-updates)")
      ->capture_default_str();
  cmd->add_option("--max-bad-updates", o.max_bad_updates,
                  "stop after this many updates in a row with a non-finite loss or gradient (each is skipped)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--eval-beam", o.eval_beam, "beam for validation BLEU")->capture_default_str();
  cmd->add_option("--eval-lenpen", o.eval_lenpen)->capture_default_str();
  cmd->add_option("--eval-max-sentences", o.eval_max_sentences, "validation BLEU on the first N sentences of each language pair (0 = all)")->capture_default_str();
  cmd->add_option("--sampling-temperature", o.sampling_temperature,
                  "multilingual data: sample language pair p in proportion to size_p^(1/T) (1 = by size, "
                  "large = uniform; fairseq's --sampling-temperature)")
      ->capture_default_str();
  cmd->add_flag("--no-eval-bleu{false}", o.eval_bleu, "select the best checkpoint by validation loss instead of BLEU");
  cmd->add_option("--seed", o.seed)->capture_default_str();
  cmd->add_flag("--resume", o.resume, "continue from the newest readable checkpoint in SAVE_DIR (checkpoint_last.pt, else checkpoint_N.pt / checkpoint_best.pt); fresh only when SAVE_DIR holds none");
  cmd->add_flag("--no-progress{false}", o.progress, "no progress bar");
  // Distributed (torchrun / mpirun / srun environments are read by themselves).
  static int nproc_per_node = 1;
  static std::string backend = "auto";
  static double dist_timeout_s = 300;
  auto* d = cmd->add_option_group("distributed");
  d->add_option("--nproc-per-node", nproc_per_node,
                "start N data-parallel ranks on this machine (no launcher needed); under torchrun, mpirun or "
                "srun the launcher's environment says the ranks instead")
      ->capture_default_str();
  d->add_option("--distributed-backend", backend, "gloo | nccl | auto (nccl on CUDA devices)")
      ->check(CLI::IsMember({"gloo", "nccl", "auto"}))->capture_default_str();
  d->add_option("--distributed-timeout", dist_timeout_s,
                "seconds a rank waits for the others before the run ends with an error naming the silent rank")
      ->capture_default_str();
  d->add_option("--bucket-cap-mb", o.bucket_cap_mb, "gradient all-reduce bucket size in MB (the first bucket 1 MB)")
      ->capture_default_str();
  d->add_flag("--expert-parallel", o.expert_parallel,
              "shard the experts over the ranks (E / ranks each; thor and random draw among a rank's own experts, "
              "so no token leaves its rank; thor needs >= 2 experts per rank)");
  d->add_flag("--no-comm-overlap{false}", o.overlap_comm,
              "reduce gradients after the backward pass instead of from its hooks (to measure what overlap hides)");
  cmd->callback([cmd, &common] {
    const bool launched_by_thor = std::getenv("THOR_LAUNCHER") != nullptr;
    if (nproc_per_node < 1) throw Error("--nproc-per-node must be >= 1");
    if (nproc_per_node > 1 && !launched_by_thor) {
      if (dist::detect_env()) throw Error("--nproc-per-node: this process is already a rank of a launcher's run");
      apply_common(common);
      int code = dist::launch_local(dist::without_option(common.argv, "--nproc-per-node"),
                                    dist::LaunchOptions{nproc_per_node});
      if (code != 0) throw Error("the distributed run failed (exit code " + std::to_string(code) + ")");
      return;
    }
    auto env = dist::detect_env();
    if (env) {
      log_prefix() = "rank " + std::to_string(env->rank) + " ";
      if (env->rank != 0) log_level() = 0;  // rank 0 reports; the others only warn
      if (common.threads == 0)  // the machine's cores shared by its ranks
        common.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / env->local_world_size);
      if (o.device == "auto" && torch::cuda::is_available()) o.device = "cuda:" + std::to_string(env->local_rank);
    }
    apply_common(common);
    // Every model flag lands in m; the preset supplies the fields it governs unless the
    // flag for that field was given.
    ModelConfig preset;
    apply_arch(arch, preset);
    ModelConfig cfg = m;
    cfg.arch = preset.arch;
    auto keep_flag_or_preset = [&](const char* flag, auto& dst, const auto& from_preset) {
      if (cmd->count(flag) == 0) dst = from_preset;
    };
    keep_flag_or_preset("--encoder-embed-dim", cfg.d_model, preset.d_model);
    keep_flag_or_preset("--ffn-dim", cfg.ffn_dim, preset.ffn_dim);
    keep_flag_or_preset("--attention-heads", cfg.heads, preset.heads);
    keep_flag_or_preset("--encoder-layers", cfg.encoder_layers, preset.encoder_layers);
    keep_flag_or_preset("--decoder-layers", cfg.decoder_layers, preset.decoder_layers);
    o.max_time_s = max_time_min * 60.0;
    if (!env || env->rank == 0) {
      // the run's every option, re-runnable: thor train --config SAVE_DIR/train_config.json
      std::filesystem::create_directories(o.save_dir);
      write_json_config(cmd, (std::filesystem::path(o.save_dir) / "train_config.json").string(),
                        {{"data", std::filesystem::absolute(o.data_dir).string()},
                         {"save-dir", std::filesystem::absolute(o.save_dir).string()}});
    }
    if (!env) {
      train(o, cfg);
      return;
    }
    dist::CommOptions co;
    co.backend = backend;
    co.timeout = std::chrono::milliseconds(static_cast<int64_t>(dist_timeout_s * 1000));
    co.cuda = o.device.rfind("cuda", 0) == 0;
    THOR_LOG("dist") << "rank " << env->rank << " of " << env->world_size << " (" << env->launcher
                     << "), rendezvous " << env->master_addr << ":" << env->master_port;
    auto comm = dist::connect(*env, co);
    train(o, cfg, comm.get());
  });
}

}  // namespace thor::cli
