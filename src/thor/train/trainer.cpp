// See trainer.h.
#include "thor/train/trainer.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <array>
#include <numeric>
#include <optional>
#include <set>
#include <random>
#include <sstream>

#include "thor/common/error.h"
#include "thor/common/file_io.h"
#include "thor/common/log.h"
#include "thor/common/progress.h"
#include "thor/common/op_profile.h"
#include "thor/common/runtime.h"
#include "thor/common/stop_signals.h"
#include "thor/data/corpus.h"
#include "thor/data/dataset.h"
#include "thor/data/meta.h"
#include "thor/data/sampling.h"
#include "thor/decode/translator.h"
#include "thor/dist/communicator.h"
#include "thor/dist/grad_reducer.h"
#include "thor/eval/metrics.h"
#include "thor/ops/gemm.h"
#include "thor/model/flops.h"
#include "thor/model/transformer.h"
#include "thor/train/checkpoint.h"
#include "thor/train/loss.h"
#include "thor/train/objective.h"
#include "thor/train/optim.h"

namespace fs = std::filesystem;

namespace thor {

namespace {

// A run killed after its last save had logged updates past that checkpoint; resumed from
// it, the run logs those updates again. Their old lines are dropped first (durably), so
// every update appears once in train_log.jsonl and its curves stay functions of the update.
void drop_log_lines_after(const std::string& path, int64_t update) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  std::string kept;
  bool dropped = false;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("update") && j["update"].is_number_integer() &&
        j["update"].get<int64_t>() > update) {
      dropped = true;
      continue;
    }
    kept += line + "\n";
  }
  if (!dropped) return;
  DurableFile out(path);
  out.write(kept.data(), kept.size());
  out.commit();
  THOR_LOG("train") << path << ": lines of updates after " << update << " dropped (a run stopped before saving them)";
}

}  // namespace

void to_json(nlohmann::json& j, const TrainOptions& o) {
  j = {{"data_dir", o.data_dir}, {"save_dir", o.save_dir}, {"max_tokens", o.max_tokens},
       {"max_sentences", o.max_sentences}, {"update_freq", o.update_freq}, {"workers", o.workers}, {"lr", o.lr},
       {"warmup_init_lr", o.warmup_init_lr}, {"warmup_updates", o.warmup_updates},
       {"adam_betas", {o.adam_beta1, o.adam_beta2}}, {"adam_eps", o.adam_eps},
       {"weight_decay", o.weight_decay}, {"clip_norm", o.clip_norm},
       {"label_smoothing", o.label_smoothing}, {"max_update", o.max_update},
       {"max_epoch", o.max_epoch}, {"max_time_s", o.max_time_s}, {"seed", o.seed},
       {"eval_beam", o.eval_beam}, {"eval_lenpen", o.eval_lenpen}, {"consistency_alpha", o.consistency_alpha},
       {"consistency_warmup", o.consistency_warmup}, {"consistency_on", o.consistency_on}, {"expert_init", o.expert_init},
       {"precision", o.precision}, {"keep_last", o.keep_last}, {"max_bad_updates", o.max_bad_updates}, {"sampling_temperature", o.sampling_temperature}};
}

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kLn2 = 0.69314718055994530942;

struct Position {
  int64_t epoch = 1, batch = 0, num_updates = 0;
  double best = -1e30, elapsed_s = 0;
  bool has_best = false;
  int64_t best_update = -1;  // the update checkpoint_best.pt holds
};

nlohmann::json to_json(const Position& p) {
  return {{"epoch", p.epoch}, {"batch", p.batch}, {"num_updates", p.num_updates},
          {"best", p.best}, {"has_best", p.has_best}, {"best_update", p.best_update}, {"elapsed_s", p.elapsed_s}};
}

Position position_from(const nlohmann::json& j) {
  Position p;
  p.epoch = j.at("epoch");
  p.batch = j.at("batch");
  p.num_updates = j.at("num_updates");
  p.best = j.at("best");
  p.has_best = j.at("has_best");
  p.best_update = j.value("best_update", int64_t{-1});
  p.elapsed_s = j.at("elapsed_s");
  return p;
}

std::vector<int64_t> epoch_order(size_t nbatches, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(nbatches);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed * 1000003ULL + static_cast<uint64_t>(epoch));
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

int64_t target_tokens(const Dataset& ds, const std::vector<int64_t>& idx) {
  int64_t n = 0;
  for (auto i : idx) n += ds.tgt_len(static_cast<size_t>(i)) + 1;  // + eos
  return n;
}

// The draws one batch of an update uses: its experts (per layer and pass) and the seed of
// its shards' dropout generators. Made for every batch of the update in the global order
// on every rank, so the RNG stream and the draws do not depend on the number of ranks.
struct BatchDraws {
  std::vector<std::vector<int64_t>> experts;
  uint64_t seed = 0;
};

// The expert layers' token exchange (moe/exchange.h) over the run's communicator.
class CommExchange : public TokenExchange {
 public:
  explicit CommExchange(dist::Communicator& comm) : comm_(comm) {}
  int ranks() const override { return comm_.size(); }
  int rank() const override { return comm_.rank(); }
  torch::Tensor alltoall(const torch::Tensor& input, const std::vector<int64_t>& send,
                         const std::vector<int64_t>& recv) override {
    auto in = input.contiguous();
    int64_t rows = 0;
    for (auto n : recv) rows += n;
    std::vector<int64_t> shape = in.sizes().vec();
    shape[0] = rows;
    auto out = torch::empty(shape, in.options());
    comm_.alltoall(out, in, recv, send);
    return out;
  }
  torch::Tensor allgather(const torch::Tensor& t) override { return torch::stack(comm_.allgather(t.contiguous())); }

 private:
  dist::Communicator& comm_;
};

class Trainer {
 public:
  Trainer(const TrainOptions& opt, ModelConfig cfg, dist::Communicator& comm)
      : opt_(opt), device_(runtime::parse_device(opt.device)), comm_(comm), lead_(comm.rank() == 0) {
    opt_.precision = precision_name(use_precision(opt.precision, device_, /*training=*/true));  // "auto" resolved
    meta_ = read_meta(opt.data_dir);
    vocab_ = Vocab::from_file((fs::path(opt.data_dir) / "spm.model").string());
    train_ = Dataset::load((fs::path(opt.data_dir) / "train.bin").string());
    valid_ = Dataset::load((fs::path(opt.data_dir) / "valid.bin").string());
    if (train_.size() == 0) throw Error(opt.data_dir + "/train.bin: no training pairs");
    load_valid_pairs();
    if (lead_) fs::create_directories(opt.save_dir);
    last_path_ = (fs::path(opt.save_dir) / "checkpoint_last.pt").string();

    torch::manual_seed(opt.seed);
    // rank 0 chooses; every rank reads that file (a multi-machine run needs SAVE_DIR on a
    // shared file system, as fairseq's)
    std::string resume_from = lead_ && opt.resume ? find_resume_checkpoint(opt.save_dir) : std::string();
    resume_from = comm_.allgather_string("resume", resume_from).front();
    std::optional<LoadedModel> full;  // an expert-parallel resume slices the whole model
    if (!resume_from.empty()) {
      auto lm = load_model(resume_from, device_);
      if (lm.vocab.serialized() != vocab_.serialized())
        throw Error("--resume: " + resume_from + " was trained with another vocabulary (" +
                    std::to_string(lm.vocab.size()) + " pieces) than " + opt.data_dir + "/spm.model (" +
                    std::to_string(vocab_.size()) + "): resume on the data it was trained on");
      cfg = lm.config;  // the checkpoint's architecture wins on resume
      pos_ = position_from(lm.train_state.at("position"));
      if (shard_experts(cfg)) {
        model_ = Transformer(cfg);
        model_->to(device_);
        copy_shard_from(lm.model);
        full = std::move(lm);
      } else {
        model_ = lm.model;
      }
      THOR_LOG("train") << "resuming from " << resume_from << " at update " << pos_.num_updates
                        << " (epoch " << pos_.epoch << ", batch " << pos_.batch << ")";
    } else {
      if (opt.resume) THOR_LOG("train") << "--resume: no checkpoint in " << opt.save_dir << ", starting fresh";
      cfg.vocab_size = vocab_.size();
      const bool sharded = shard_experts(cfg);
      model_ = Transformer(cfg);
      if (opt.expert_init == "copy") {
        if (model_->expert_layers().empty())
          throw Error("--expert-init copy: the model has no expert layers (--num-experts > 1)");
        if (sharded) throw Error("--expert-init copy: not with --expert-parallel over several ranks");
        for (ExpertFFN layer : model_->expert_layers()) layer->copy_first_expert();  // holders share the module
      } else if (opt.expert_init != "independent") {
        throw Error("--expert-init " + opt.expert_init + ": expected independent or copy");
      }
      model_->to(device_);
    }
    model_->train();
    // One worker per intra-op thread on the CPU: a 4096-token product keeps one core busy,
    // but two threads per product leave ~30 % idle (small operations, barriers).
    workers_ = opt.workers > 0 ? opt.workers : (device_.is_cpu() ? at::get_num_threads() : 1);
    if (gated_ep_) {
      // every rank must run the same collectives in the same order: one shard per rank
      if (workers_ != 1)
        throw Error("--expert-parallel with router " + cfg.router + " exchanges tokens in every forward: use --workers 1 (" +
                    std::to_string(workers_) + " asked)");
      exchange_ = std::make_unique<CommExchange>(comm_);
      for (auto l : model_->expert_layers()) l->set_exchange(exchange_.get());
    }
    for (auto& l : model_->expert_layers())
      if (cfg.expert_shards > 1)
        for (auto* t : {&l->w1, &l->b1, &l->w2, &l->b2}) sharded_.insert(t->unsafeGetTensorImpl());
    for (auto& p : model_->parameters())
      if (p.requires_grad()) {
        params_.push_back(p);
        if (!is_sharded(p)) reduced_params_.push_back(p);
      }
    agree_and_share_start(cfg);
    optim_ = std::make_unique<Adam>(model_->parameters(),
                                    AdamOptions{opt.adam_beta1, opt.adam_beta2, opt.adam_eps, opt.weight_decay});
    if (full) {
      // the whole model's optimizer state, then this rank's slice of it
      Adam whole(full->model->parameters(), AdamOptions{}, /*with_state=*/false);
      load_training_state(resume_from, whole);
      auto mine = model_->parameters();
      optim_->set_steps(whole.steps());
      for (size_t i = 0; i < mine.size(); ++i) {
        optim_->exp_avg(i).copy_(local_slice(mine[i], whole.exp_avg(i)));
        optim_->exp_avg_sq(i).copy_(local_slice(mine[i], whole.exp_avg_sq(i)));
      }
    } else if (!resume_from.empty()) {
      load_training_state(resume_from, *optim_);
    }
    sched_ = InverseSqrtSchedule{opt.lr, opt.warmup_init_lr, opt.warmup_updates};

    int64_t dropped = 0;
    batches_ = make_batches(train_, opt.max_tokens, opt.max_sentences, opt.seed, &dropped);
    if (dropped) THOR_WARN("train") << dropped << " training pairs exceed --max-tokens and are skipped";
    for (size_t p = 0; p < vpairs_.size(); ++p) {
      std::vector<int64_t> examples(static_cast<size_t>(vpairs_[p].count));
      std::iota(examples.begin(), examples.end(), vpairs_[p].first);
      for (auto& b : make_batches(valid_, examples, opt.max_tokens, opt.max_sentences, opt.seed)) {
        valid_batches_.push_back(std::move(b));
        valid_batch_pair_.push_back(p);
      }
    }
    auto share = temperature_shares(train_pair_sizes(), opt.sampling_temperature);  // (checks T)
    sampled_ = meta_.pairs.size() > 1 && opt.sampling_temperature != 1.0;
    if (sampled_) {
      std::ostringstream os;
      for (size_t p = 0; p < share.size(); ++p) os << " " << meta_.pairs[p].name() << " " << share[p];
      THOR_LOG("train") << "sampling the language pairs at temperature " << opt.sampling_temperature
                        << ", shares:" << os.str();
    }
    int64_t nparams = 0;
    for (auto& p : model_->parameters()) nparams += p.numel();
    THOR_LOG("train") << "model " << cfg.arch << ": " << nparams << " parameters, d=" << cfg.d_model
                      << " ffn=" << cfg.ffn_dim << " layers=" << cfg.encoder_layers << "+"
                      << cfg.decoder_layers << " on " << device_ << ", " << at::get_num_threads()
                      << " threads, " << workers_ << (workers_ == 1 ? " worker, " : " workers, ")
                      << precision_name(matmul_precision()) << " products";
    auto experts = model_->expert_layers();
    two_pass_ = !experts.empty() && experts.front()->router->two_pass();
    consistency_on_ = parse_consistency(opt.consistency_on);
    if (!experts.empty())
      THOR_LOG("train") << experts.size() << " expert layers x " << cfg.num_experts << " experts, router "
                        << cfg.router << (two_pass_ ? " (two stochastic passes + consistency)" : "");
    if (cfg.expert_shards > 1)
      THOR_LOG("train") << "expert parallel: rank " << comm_.rank() << " holds experts " << cfg.first_local_expert()
                        << ".." << cfg.first_local_expert() + cfg.local_experts() - 1
                        << " of every expert layer and draws among them (no token leaves its rank)";
    stats_.reset(experts.size(), cfg.num_experts);
    THOR_LOG("train") << train_.size() << " training pairs in " << batches_.size()
                      << " batches of <= " << opt.max_tokens << " tokens, update-freq " << opt.update_freq;
    if (comm_.size() > 1)
      THOR_LOG("train") << "data parallel over " << comm_.size() << " ranks (" << comm_.backend() << "): "
                        << comm_.size() * opt.update_freq << " batches per update, gradients summed in "
                        << reducer_->buckets() << " buckets";
    if (lead_) {
      const auto log_path = (fs::path(opt.save_dir) / "train_log.jsonl").string();
      if (!resume_from.empty()) drop_log_lines_after(log_path, pos_.num_updates);
      log_.open(log_path, std::ios::app);
      if (!log_) throw Error(opt.save_dir + "/train_log.jsonl: cannot open for writing: " + std::strerror(errno));
    }
  }

  // --expert-parallel: checks the layout and writes this rank's shard into cfg. True when
  // the experts are sharded (more than one rank).
  bool shard_experts(ModelConfig& cfg) {
    if (!opt_.expert_parallel) return false;
    const int64_t W = comm_.size();
    if (cfg.num_experts <= 1) throw Error("--expert-parallel needs an expert model (--num-experts > 1)");
    if (cfg.num_experts % W != 0)
      throw Error("--expert-parallel: --num-experts " + std::to_string(cfg.num_experts) + " is not a multiple of the " +
                  std::to_string(W) + " ranks");
    if (cfg.router == "thor" && cfg.num_experts / W < 2)
      throw Error("--expert-parallel with router thor needs at least two experts per rank (--num-experts " +
                  std::to_string(cfg.num_experts) + " over " + std::to_string(W) +
                  " ranks): with one, both passes would draw the same expert and the consistency loss would tie "
                  "no two experts together");
    if (W == 1) return false;
    gated_ep_ = cfg.router != "thor" && cfg.router != "random";
    cfg.expert_shards = W;
    cfg.expert_shard = comm_.rank();
    return true;
  }

  bool is_sharded(const torch::Tensor& p) const { return sharded_.count(p.unsafeGetTensorImpl()) > 0; }

  // This rank's rows of a whole-model tensor `whole` for the local parameter `p`.
  torch::Tensor local_slice(const torch::Tensor& p, const torch::Tensor& whole) const {
    if (!is_sharded(p)) return whole;
    const auto& c = model_->config();
    return whole.narrow(0, c.first_local_expert(), c.local_experts());
  }

  // The whole model's parameters and buffers -> this rank's (its experts' rows).
  void copy_shard_from(Transformer& whole) {
    torch::NoGradGuard ng;
    const auto& c = model_->config();
    auto mine = model_->named_parameters();
    auto src = whole->named_parameters();
    for (auto& kv : mine) {
      auto from = src[kv.key()].to(kv.value().device());
      if (from.sizes() != kv.value().sizes()) from = from.narrow(0, c.first_local_expert(), c.local_experts());
      kv.value().copy_(from);
    }
    auto buf = whole->named_buffers();
    for (auto& kv : model_->named_buffers())
      if (auto* b = buf.find(kv.key())) kv.value().copy_(*b);
  }

  // Ranks that would train different things are refused before any work; then every rank
  // starts from rank 0's parameters (the same seed gives the same ones: this makes sure).
  void agree_and_share_start(const ModelConfig& cfg) {
    if (opt_.bucket_cap_mb <= 0) throw Error("--bucket-cap-mb must be > 0");
    const auto cap = static_cast<int64_t>(opt_.bucket_cap_mb * (1 << 20));
    reducer_ = std::make_unique<dist::GradientReducer>(comm_, reduced_params_, cap, std::min<int64_t>(cap, 1 << 20));
    if (comm_.size() == 1) return;
    nlohmann::json args = opt_;
    args.erase("save_dir");
    nlohmann::json model_json = cfg;
    comm_.require_agreement("the code version", THOR_VERSION_STRING);
    comm_.require_agreement("the model configuration", model_json.dump());
    comm_.require_agreement("the training options", args.dump());
    comm_.require_agreement("the data (" + opt_.data_dir + ")",
                            meta_json(meta_).dump() + " train " + std::to_string(train_.size()) + " pairs, " +
                                std::to_string(train_.tgt_tok.size()) + " target tokens; valid " +
                                std::to_string(valid_.size()));
    comm_.require_agreement("the position resumed from", to_json(pos_).dump());
    torch::NoGradGuard ng;
    for (auto& p : model_->parameters())
      if (!is_sharded(p)) comm_.broadcast(p.detach(), 0);  // (a rank's own experts are its own)
    for (auto& b : model_->buffers()) comm_.broadcast(b, 0);
    comm_.bytes_sent().clear();
  }

  nlohmann::json run() {
    if (opt_.max_update > 0 && pos_.num_updates >= opt_.max_update) {
      // a resumed run already at its budget: nothing to train, and no second validation
      // (it would change nothing but the log, and draw THOR's experts again)
      if (lead_) THOR_LOG("train") << "already at update " << pos_.num_updates << " (--max-update " << opt_.max_update << "): nothing to do";
      return to_json(pos_);
    }
    auto t_start = Clock::now();
    start_update_ = pos_.num_updates;
    double elapsed0 = pos_.elapsed_s;
    auto elapsed = [&] { return elapsed0 + std::chrono::duration<double>(Clock::now() - t_start).count(); };
    auto interval_start = Clock::now();
    double int_loss = 0, int_nll = 0, int_gnorm = 0, int_flops = 0;
    int64_t int_tokens = 0, int_src_tokens = 0, int_updates = 0, int_bad = 0;
    int64_t bad_in_a_row = 0;
    bool tty = opt_.progress && isatty(STDERR_FILENO);
    // on a terminal: update, loss, tokens/s, elapsed and ETA (to --max-update / --max-time)
    if (tty && lead_)
      progress_ = std::make_unique<Progress>("train", opt_.max_update > 0 ? opt_.max_update - start_update_ : 0, "updates", true);
    int64_t run_tokens = 0;
    bool validated_now = false;
    bool stop_requested = false;

    auto stop = [&] {
      if (opt_.max_update > 0 && pos_.num_updates >= opt_.max_update) return true;
      if (opt_.max_epoch > 0 && pos_.epoch > opt_.max_epoch) return true;
      if (opt_.max_time_s > 0 && elapsed() >= opt_.max_time_s) return true;
      return false;
    };

    // One JSON line for the updates since the last one: every --log-interval, and for a
    // partial interval before each validation and at the end (as fairseq's epoch summary),
    // so a run shorter than the interval still logs its losses and expert shares.
    auto log_interval_now = [&] {
      if (int_updates == 0) {
        if (int_bad > 0) write_log({{"update", pos_.num_updates}, {"bad_updates", int_bad}}, tty);
        int_bad = 0;
        return;
      }
      double secs = std::chrono::duration<double>(Clock::now() - interval_start).count();
      nlohmann::json j = {{"update", pos_.num_updates}, {"epoch", pos_.epoch},
                          {"loss", int_loss / int_tokens / kLn2}, {"nll", int_nll / int_tokens / kLn2},
                          {"ppl", std::pow(2.0, int_nll / int_tokens / kLn2)},
                          {"lr", sched_.at(pos_.num_updates - 1)}, {"gnorm", int_gnorm / int_updates},
                          {"tgt_tok_s", int_tokens / secs}, {"src_tok_s", int_src_tokens / secs},
                          {"s_per_update", secs / int_updates}, {"gflop_s", int_flops / secs / 1e9},
                          {"rss_mb", runtime::current_rss_mb()},
                          {"elapsed_s", elapsed()}};
      if (int_bad > 0) j["bad_updates"] = int_bad;
      if (comm_.size() > 1) {
        j["comm_exposed_s"] = reducer_->exposed_s() / int_updates;
        j["comm_s"] = reducer_->comm_s() / int_updates;
        reducer_->reset_timers();
        for (auto& [kind, bytes] : comm_.bytes_sent()) j["sent_mb_" + kind] = bytes / 1e6 / int_updates;
        comm_.bytes_sent().clear();
      }
      reduce_expert_stats();
      stats_.add_to(j, model_->expert_layer_names(), int_tokens);
      if (!two_pass_) j.erase("consistency");  // only THOR's two passes have one
      // the weight of the interval's last update
      if (two_pass_ && opt_.consistency_warmup > 0) j["consistency_alpha"] = consistency_alpha(pos_.num_updates - 1);
      write_log(j, tty);
      interval_start = Clock::now();
      int_loss = int_nll = int_gnorm = int_flops = 0, int_tokens = int_src_tokens = int_updates = int_bad = 0;
    };

    while (!stop()) {
      if (sampled_) batches_ = sampled_batches(pos_.epoch);
      auto order = epoch_order(batches_.size(), opt_.seed, pos_.epoch);
      while (pos_.batch < static_cast<int64_t>(order.size()) && !stop()) {
        // the update's batches: the next W x update-freq of the global order; this rank's
        // are the run [rank x update-freq, (rank + 1) x update-freq) of them
        const int64_t per_rank = opt_.update_freq;
        if (gated_ep_ && pos_.batch + per_rank * comm_.size() > static_cast<int64_t>(order.size())) {
          // tokens cross ranks in every forward, so every rank needs its batches: the epoch's
          // last batches that cannot fill every rank are left out
          pos_.batch = static_cast<int64_t>(order.size());
          break;
        }
        int64_t end = std::min<int64_t>(pos_.batch + per_rank * comm_.size(), static_cast<int64_t>(order.size()));
        int64_t mine_begin = std::min(end, pos_.batch + per_rank * comm_.rank());
        int64_t mine_end = std::min(end, mine_begin + per_rank);
        std::vector<std::vector<Batch>> group;  // each batch as the shards its workers run
        std::vector<BatchDraws> draws;
        int64_t ntok = 0;  // target tokens of the whole update, over all ranks
        double src_tokens = 0, flops = 0;
        const auto& cfg = model_->config();
        for (int64_t i = pos_.batch; i < end; ++i) {
          RECORD_FUNCTION("thor::data", std::vector<c10::IValue>());
          BatchDraws d;
          d.experts = model_->draw_group_experts(two_pass_ ? 2 : 1);
          d.seed = runtime::draw_seed();
          ntok += target_tokens(train_, batches_[order[i]]);
          if (i < mine_begin || i >= mine_end) continue;
          draws.push_back(std::move(d));
          group.emplace_back();
          for (const auto& part : split_batch(train_, batches_[order[i]], workers_)) {
            auto b = collate(train_, part, cfg.pad_id, cfg.bos_id, cfg.eos_id);
            src_tokens += static_cast<double>(b.src_tokens);
            flops += training_flops(cfg, b.src.size(0), b.src.size(1), b.tgt_in.size(1), two_pass_);
            group.back().push_back(b.to(device_));
          }
        }
        if (opt_.profile_updates > 0 && pos_.num_updates == start_update_ + opt_.profile_start)
          profile_ = std::make_unique<OpProfile>();
        auto [loss, nll, gnorm] = update_or_explain(group, draws, ntok);
        {
          // the update's sums over the ranks, with the stop requests (every rank stops after
          // the same update), in one collective (alone: nothing)
          auto totals = torch::tensor({loss, nll, src_tokens, flops, StopSignals::requested() != 0 ? 1.0 : 0.0}, torch::kDouble);
          comm_.allreduce_sum({totals});
          const double* t = totals.data_ptr<double>();
          loss = t[0], nll = t[1];
          int_src_tokens += static_cast<int64_t>(t[2]);
          int_flops += t[3];
          stop_requested = t[4] > 0;
        }
        if (profile_ && pos_.num_updates + 1 == start_update_ + opt_.profile_start + opt_.profile_updates)
          finish_profile();
        pos_.batch = end;
        ++pos_.num_updates;
        validated_now = false;
        if (std::isfinite(gnorm)) {
          int_loss += loss, int_nll += nll, int_gnorm += gnorm, int_tokens += ntok, ++int_updates;
          bad_in_a_row = 0;
        } else {
          // skipped (update()); its sums would make the interval's figures NaN
          ++int_bad;
          if (++bad_in_a_row >= opt_.max_bad_updates) {
            log_interval_now();
            throw Error("train: " + std::to_string(bad_in_a_row) +
                        " updates in a row had a non-finite loss or gradient (the last: update " +
                        std::to_string(pos_.num_updates) + "); stopping at --max-bad-updates " +
                        std::to_string(opt_.max_bad_updates) + ". The checkpoints in " + opt_.save_dir +
                        " are those of earlier updates; try a lower --lr, --clip-norm or float32 products");
          }
        }

        if (progress_) {
          run_tokens += ntok;
          double frac = -1;
          if (opt_.max_update > 0)
            frac = static_cast<double>(pos_.num_updates - start_update_) / static_cast<double>(opt_.max_update - start_update_);
          if (opt_.max_time_s > 0) frac = std::max(frac, (elapsed() - elapsed0) / (opt_.max_time_s - elapsed0));
          char extra[160];
          std::snprintf(extra, sizeof extra, "update %lld | epoch %lld | loss %.3f | %.0f tok/s",
                        static_cast<long long>(pos_.num_updates), static_cast<long long>(pos_.epoch), loss / ntok / kLn2,
                        run_tokens / std::max(1e-9, std::chrono::duration<double>(Clock::now() - t_start).count()));
          progress_->update(pos_.num_updates - start_update_, extra, frac);
        }
        if (pos_.num_updates % opt_.log_interval == 0) log_interval_now();
        if (opt_.validate_interval_updates > 0 && pos_.num_updates % opt_.validate_interval_updates == 0) {
          log_interval_now();
          pos_.elapsed_s = elapsed();
          validate_and_save(tty);
          validated_now = true;
        }
        if (opt_.save_interval_updates > 0 && pos_.num_updates % opt_.save_interval_updates == 0) {
          pos_.elapsed_s = elapsed();
          // checkpoint_last.pt first: whatever instant a kill comes, it holds the newest state
          save({last_path_,
                (fs::path(opt_.save_dir) / ("checkpoint_" + std::to_string(pos_.num_updates) + ".pt")).string()});
        }
        if (stop_requested) {
          // SIGINT / SIGTERM: this update is done; its state goes to checkpoint_last.pt
          log_interval_now();
          if (pos_.batch >= static_cast<int64_t>(order.size())) ++pos_.epoch, pos_.batch = 0;
          pos_.elapsed_s = elapsed();
          save({last_path_});
          if (progress_) progress_->finish();
          if (lead_)
            THOR_WARN("train") << "stopped by a signal after update " << pos_.num_updates << "; state saved in "
                               << last_path_ << " (continue with --resume)";
          return to_json(pos_);
        }
      }
      if (pos_.batch >= static_cast<int64_t>(order.size())) {
        ++pos_.epoch;
        pos_.batch = 0;
        if (opt_.validate_interval_updates == 0 && !validated_now) {
          log_interval_now();
          pos_.elapsed_s = elapsed();
          validate_and_save(tty);
          validated_now = true;
        }
      }
    }
    if (progress_) progress_->finish();
    log_interval_now();
    pos_.elapsed_s = elapsed();
    if (!validated_now) validate_and_save(false);
    comm_.barrier();
    THOR_LOG("train") << "done: " << pos_.num_updates << " updates, " << pos_.elapsed_s << " s";
    return to_json(pos_);
  }

 private:
  // Forward + backward of one batch, its shards at once on the workers (data parallelism
  // within the batch). The shards share the batch's expert draws (one per layer and pass,
  // as the official THOR code) and draw their dropout masks from generators seeded from the
  // global one; their gradients are added to the parameters' in shard order after all have
  // finished (not as each backward ends), so a run is reproducible bit for bit for a given
  // number of workers. Returns the loss to report (CE, averaged over the two passes for
  // THOR) and accumulates expert statistics.
  // With `overlap` (one shard; the update's last batch of a distributed run) the backward
  // pass accumulates into the parameters' gradients itself, and the reducer's hooks start
  // each bucket's all-reduce as soon as its gradients are final.
  // The consistency weight of the update that follows `done` updates (--consistency-warmup).
  double consistency_alpha(int64_t done) const {
    if (opt_.consistency_warmup <= 0) return opt_.consistency_alpha;
    return opt_.consistency_alpha *
           std::min(1.0, static_cast<double>(done) / static_cast<double>(opt_.consistency_warmup));
  }

  std::pair<double, double> forward_backward(const std::vector<Batch>& shards, const BatchDraws& draws,
                                             int64_t ntok_update, bool overlap) {
    const ObjectiveOptions o{opt_.label_smoothing, consistency_alpha(pos_.num_updates), two_pass_, consistency_on_};
    const auto& pinned = draws.experts;
    const uint64_t seed = draws.seed;
    std::vector<ObjectiveResult> res(shards.size());
    if (overlap && shards.size() == 1) {
      runtime::GeneratorScope rng(at::detail::createCPUGenerator(seed));
      auto r = compute_objective(model_, shards[0], o, pinned);
      reducer_->arm_overlap();
      (r.loss / static_cast<double>(ntok_update)).backward();
      r.loss = torch::Tensor();
      res[0] = std::move(r);
      return summarize(shards, res);
    }
    std::vector<std::vector<torch::Tensor>> grads(shards.size());
    runtime::run_workers(static_cast<int64_t>(shards.size()), [&](int64_t s) {
      runtime::GeneratorScope rng(at::detail::createCPUGenerator(seed + static_cast<uint64_t>(s) * 0x9E3779B97F4A7C15ULL));
      auto r = compute_objective(model_, shards[static_cast<size_t>(s)], o, pinned);
      grads[static_cast<size_t>(s)] = torch::autograd::grad({r.loss / static_cast<double>(ntok_update)}, params_, {},
                                                            /*retain_graph=*/false, /*create_graph=*/false,
                                                            /*allow_unused=*/true);
      r.loss = torch::Tensor();
      res[static_cast<size_t>(s)] = std::move(r);
    });
    for (size_t i = 0; i < params_.size(); ++i) {
      torch::Tensor sum;
      for (auto& g : grads) {
        if (!g[i].defined()) continue;
        // summed in place only when no other parameter got the same tensor (as backward's
        // gradient accumulation: it steals a gradient only when nothing else holds it)
        if (!sum.defined()) sum = g[i].use_count() == 1 ? std::move(g[i]) : g[i].clone();
        else sum.add_(g[i]);
      }
      if (!sum.defined()) continue;  // an expert no shard used
      auto& grad = params_[i].mutable_grad();
      grad = grad.defined() ? grad.add_(sum) : sum;
    }
    return summarize(shards, res);
  }

  // The batch's loss sums and its expert statistics (accumulated into stats_).
  std::pair<double, double> summarize(const std::vector<Batch>& shards, const std::vector<ObjectiveResult>& res) {
    double ce = 0, nll = 0, ntok = 0;
    for (size_t s = 0; s < shards.size(); ++s) {
      ce += res[s].ce, nll += res[s].nll, ntok += static_cast<double>(shards[s].ntokens);
      stats_.consistency += res[s].consistency;
    }
    // a layer's statistics of the batch: shares weighted by each shard's routed tokens,
    // auxiliary losses (per-shard means) by its target tokens
    for (size_t i = 0; i < stats_.share.size(); ++i) {
      auto share = torch::zeros_like(stats_.share[i]);
      double valid = 0;
      for (size_t s = 0; s < shards.size(); ++s) {
        if (res[s].experts.size() <= i) continue;
        const auto& st = res[s].experts[i];
        if (st.share.defined()) share += st.share * st.valid, valid += st.valid;
        for (auto& [name, value] : st.aux)
          stats_.aux[i][name] += value.item<double>() * static_cast<double>(shards[s].ntokens) / std::max(1.0, ntok);
      }
      stats_.share[i] += share / std::max(1.0, valid);
    }
    ++stats_.batches;
    return {ce, nll};
  }

  std::tuple<double, double, double> update(const std::vector<std::vector<Batch>>& group,
                                            const std::vector<BatchDraws>& draws, int64_t ntok) {
    optim_->zero_grad();
    double loss_sum = 0, nll_sum = 0;
    for (size_t i = 0; i < group.size(); ++i) {
      const bool last = i + 1 == group.size();
      auto [l, n] = forward_backward(group[i], draws[i], ntok, /*overlap=*/last && comm_.size() > 1 && opt_.overlap_comm);
      loss_sum += l;
      nll_sum += n;
    }
    reducer_->finish();  // gradients summed over the ranks (nothing to do alone); the loss sums: by run()
    inject_fault();
    // With no clipping the limit is infinite: the call then only measures the norm.
    double limit = opt_.clip_norm > 0 ? opt_.clip_norm : std::numeric_limits<double>::infinity();
    double gnorm = sharded_.empty() ? torch::nn::utils::clip_grad_norm_(model_->parameters(), limit)
                                    : clip_global_norm(limit);
    if (!std::isfinite(gnorm)) {
      THOR_WARN("train") << "non-finite gradient norm at update " << pos_.num_updates + 1 << ", update skipped";
      optim_->zero_grad();
      return {loss_sum, nll_sum, gnorm};
    }
    {
      RECORD_FUNCTION("thor::optimizer", std::vector<c10::IValue>());
      optim_->step(sched_.at(pos_.num_updates));
    }
    std::vector<torch::Tensor> router_stats;
    for (auto& l : model_->expert_layers())
      for (auto& t : l->router->update_statistics()) router_stats.push_back(t);
    if (!router_stats.empty()) comm_.allreduce_sum(router_stats);
    for (auto& l : model_->expert_layers()) l->router->after_update();
    return {loss_sum, nll_sum, gnorm};
  }

  // update(), with running out of memory explained in terms of the option that sizes it.
  std::tuple<double, double, double> update_or_explain(const std::vector<std::vector<Batch>>& group,
                                                       const std::vector<BatchDraws>& draws, int64_t ntok) {
    auto explain = [&](const std::string& what) {
      return Error("train: out of memory in update " + std::to_string(pos_.num_updates + 1) + " (batches of up to " +
                   std::to_string(opt_.max_tokens) + " tokens, --max-tokens): lower --max-tokens, and raise "
                   "--update-freq to keep the tokens per update (" + what + ")");
    };
    try {
      return update(group, draws, ntok);
    } catch (const c10::Error& e) {
      const std::string msg = e.what_without_backtrace();
      if (msg.find("can't allocate memory") == std::string::npos && msg.find("out of memory") == std::string::npos)
        throw;
      throw explain(msg.substr(0, msg.find('\n')));
    } catch (const std::bad_alloc&) {
      throw explain("std::bad_alloc");
    }
  }

  // Fault drills: THOR_FAULT_NAN_GRAD=A-B makes the gradients of updates A..B (1-based) NaN,
  // as a diverging run would, so the bad-update handling can be exercised for real.
  void inject_fault() {
    static const char* spec = std::getenv("THOR_FAULT_NAN_GRAD");
    if (!spec || !*spec) return;
    long long a = 0, b = 0;
    if (std::sscanf(spec, "%lld-%lld", &a, &b) != 2) b = a = std::atoll(spec);
    const int64_t u = pos_.num_updates + 1;
    if (u < a || u > b) return;
    for (auto& p : model_->parameters())
      if (p.grad().defined()) {
        p.mutable_grad().fill_(std::numeric_limits<float>::quiet_NaN());
        break;
      }
  }

  void finish_profile() {
    profile_->stop();
    auto j = profile_->to_json();
    j["updates"] = opt_.profile_updates;
    std::ofstream(fs::path(opt_.save_dir) / "profile.json") << j.dump(2) << "\n";
    THOR_LOG("profile") << opt_.profile_updates << " updates, " << profile_->wall_s() << " s\n" << profile_->table();
    profile_.reset();
  }

  // Expert parallel: the norm of the whole model's gradient (replicated parameters once,
  // every rank's own experts summed), and every gradient scaled as clip_grad_norm_ does.
  double clip_global_norm(double limit) {
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> replicated, own;  // per-parameter norms (no copy, one sync below)
    for (auto& p : model_->parameters())
      if (p.grad().defined()) (is_sharded(p) ? own : replicated).push_back(p.grad().norm().to(torch::kDouble));
    auto sq = [](const std::vector<torch::Tensor>& v) {
      return v.empty() ? torch::zeros({}, torch::kDouble) : torch::stack(v).pow(2).sum();
    };
    auto both = torch::stack({sq(replicated), sq(own)}).to(torch::kCPU);  // [2]
    auto own_sum = both.narrow(0, 1, 1).contiguous();
    comm_.allreduce_sum({own_sum});
    const double norm = std::sqrt(both[0].item<double>() + own_sum.item<double>());
    const double coef = limit / (norm + 1e-6);
    if (std::isfinite(norm) && coef < 1)
      for (auto& p : model_->parameters())
        if (p.grad().defined()) p.mutable_grad().mul_(coef);
    return norm;
  }

  // Every rank's expert statistics of the interval, summed (shares are per batch).
  void reduce_expert_stats() {
    if (comm_.size() == 1 || stats_.share.empty()) return;
    std::vector<torch::Tensor> t = stats_.share;
    t.push_back(torch::tensor({stats_.consistency, static_cast<double>(stats_.batches)}, torch::kDouble));
    comm_.allreduce_sum(t);
    stats_.consistency = t.back()[0].item<double>();
    stats_.batches = static_cast<int64_t>(t.back()[1].item<double>());
  }

  void write_log(const nlohmann::json& j, bool tty) {
    if (!lead_) return;
    log_ << j.dump() << '\n';
    log_.flush();
    if (progress_) progress_->clear();
    THOR_LOG("train") << j.dump();
  }

  // The validation set of every language pair (one for a bilingual dataset): its examples
  // in valid.bin, its raw source and reference lines, its target tag.
  void load_valid_pairs() {
    int64_t total = 0;
    for (size_t p = 0; p < meta_.pairs.size(); ++p) {
      const auto& pair = meta_.pairs[p];
      ValidPair v;
      v.name = pair.name();
      v.first = total;
      v.count = pair.splits.count("valid") ? pair.splits.at("valid") : 0;
      total += v.count;
      v.src = read_lines(raw_file(opt_.data_dir, meta_, "valid", p, pair.src));
      v.ref = read_lines(raw_file(opt_.data_dir, meta_, "valid", p, pair.tgt));
      if (opt_.eval_max_sentences > 0 && static_cast<int64_t>(v.src.size()) > opt_.eval_max_sentences) {
        v.src.resize(opt_.eval_max_sentences);
        v.ref.resize(opt_.eval_max_sentences);
      }
      v.prefix = meta_.target_tags ? vocab_.piece_to_id(lang_tag(pair.tgt)) : -1;
      vpairs_.push_back(std::move(v));
    }
    if (total != static_cast<int64_t>(valid_.size()))
      throw Error(opt_.data_dir + "/meta.json: its language pairs hold " + std::to_string(total) +
                  " validation pairs, valid.bin " + std::to_string(valid_.size()));
  }

  std::vector<int64_t> train_pair_sizes() const {
    std::vector<int64_t> n;
    for (const auto& pair : meta_.pairs) n.push_back(pair.splits.at("train"));
    return n;
  }

  // An epoch of temperature-sampled training data (data/sampling.h), batched; the same on
  // every rank and after a resume.
  std::vector<std::vector<int64_t>> sampled_batches(int64_t epoch) const {
    return make_batches(train_, sample_epoch(train_pair_sizes(), opt_.sampling_temperature, opt_.seed, epoch),
                        opt_.max_tokens, opt_.max_sentences, opt_.seed + static_cast<uint64_t>(epoch));
  }

  static constexpr size_t kValidSums = 13;  // per language pair: loss, nll, tokens, 10 BLEU statistics

  // Validation sums of the part `part` of `parts` (loss batches round-robin, BLEU
  // sentences in contiguous runs of every pair): kValidSums per language pair.
  std::vector<double> validation_sums(Transformer& m, size_t parts, size_t part) {
    std::vector<double> out(kValidSums * vpairs_.size(), 0.0);
    const auto& c = m->config();
    for (size_t i = part; i < valid_batches_.size(); i += parts) {
      // random experts drawn per batch from its own generator: the same on any number of ranks
      runtime::GeneratorScope batch_rng(at::detail::createCPUGenerator(opt_.seed * 0x9E3779B97F4A7C15ULL + i));
      auto b = collate(valid_, valid_batches_[i], c.pad_id, c.bos_id, c.eos_id).to(device_);
      auto res = label_smoothed_nll(m->forward(b.src, b.tgt_in), b.tgt_out, opt_.label_smoothing, c.pad_id);
      double* sums = out.data() + kValidSums * valid_batch_pair_[i];
      sums[0] += res.loss.item<double>();
      sums[1] += res.nll.item<double>();
      sums[2] += static_cast<double>(b.ntokens);
    }
    if (!opt_.eval_bleu) return out;
    for (size_t p = 0; p < vpairs_.size(); ++p) {
      const auto& v = vpairs_[p];
      TranslateOptions to;
      to.search.beam = opt_.eval_beam;
      to.search.lenpen = opt_.eval_lenpen;
      to.search.max_len_a = 1.2;
      to.search.max_len_b = 10;
      to.source_prefix = v.prefix;
      const size_t n = v.src.size(), from = n * part / parts, to_line = n * (part + 1) / parts;
      std::vector<std::string> src(v.src.begin() + from, v.src.begin() + to_line);
      std::vector<std::string> refs(v.ref.begin() + from, v.ref.begin() + to_line);
      std::vector<std::string> hyps;
      if (!src.empty())
        for (auto& t : translate_lines(m, vocab_, src, to, device_)) hyps.push_back(t.front().text);
      auto stats = bleu_stats(hyps, refs).to_vector();
      std::copy(stats.begin(), stats.end(), out.begin() + kValidSums * p + 3);
    }
    return out;
  }

  void validate_and_save(bool tty) {
    torch::NoGradGuard ng;
    // Validation may draw random experts; it must not shift the training RNG stream, or a
    // resumed run would diverge from an uninterrupted one.
    auto rng_state = runtime::cpu_rng_state();
    model_->eval();
    // Split over the ranks and the sums reduced: the numbers of a one-process validation.
    // With a gated router sharded over the ranks, decoding cannot keep the ranks in step
    // (each sentence ends at its own step): rank 0 validates the gathered whole model alone.
    std::vector<double> sums(kValidSums * vpairs_.size(), 0.0);
    if (gated_ep_) {
      auto whole = gather_whole();
      if (lead_) {
        whole->to(device_);
        whole->eval();
        sums = validation_sums(whole, 1, 0);
      }
    } else {
      sums = validation_sums(model_, static_cast<size_t>(comm_.size()), static_cast<size_t>(comm_.rank()));
    }
    if (comm_.size() > 1) {
      auto t = torch::tensor(sums, torch::kDouble);
      comm_.allreduce_sum({t});
      sums.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
    }
    // each pair's loss (per token) and BLEU; a multilingual run's figures are their means
    double loss = 0, nll = 0, bleu = 0;
    nlohmann::json per_pair = nlohmann::json::object();
    const bool with_bleu = opt_.eval_bleu && !vpairs_.empty() && !vpairs_.front().src.empty();
    for (size_t p = 0; p < vpairs_.size(); ++p) {
      const double* v = sums.data() + kValidSums * p;
      const double ntok = std::max(1.0, v[2]);
      nlohmann::json pj = {{"loss", v[0] / ntok / kLn2}, {"nll", v[1] / ntok / kLn2}};
      loss += v[0] / ntok / static_cast<double>(vpairs_.size());
      nll += v[1] / ntok / static_cast<double>(vpairs_.size());
      if (with_bleu) {
        pj["bleu"] = bleu_from_stats(BleuStats::from_vector(std::vector<double>(v + 3, v + kValidSums))).score;
        bleu += pj["bleu"].get<double>() / static_cast<double>(vpairs_.size());
      }
      per_pair[vpairs_[p].name] = pj;
    }
    nlohmann::json j = {{"update", pos_.num_updates}, {"epoch", pos_.epoch},
                        {"valid_loss", loss / kLn2},
                        {"valid_nll", nll / kLn2}, {"elapsed_s", pos_.elapsed_s}};
    double metric = -loss;
    if (with_bleu) {
      j["valid_bleu"] = bleu;
      metric = bleu;
    }
    if (meta_.target_tags) j["valid_pairs"] = per_pair;
    bool improved = !pos_.has_best || metric > pos_.best;
    if (improved) pos_.best = metric, pos_.has_best = true, pos_.best_update = pos_.num_updates;
    j["best"] = pos_.best;
    model_->train();
    runtime::set_cpu_rng_state(rng_state);
    if (lead_) {
      if (progress_) progress_->clear();
      if (!model_->expert_layers().empty()) THOR_LOG("experts") << load_summary();
      log_ << j.dump() << '\n';
      log_.flush();
      THOR_LOG("valid") << j.dump();
    }
    if (improved) save({last_path_, (fs::path(opt_.save_dir) / "checkpoint_best.pt").string()});
    else save({last_path_});
  }

  // One line: each expert layer's token shares since the last log line.
  std::string load_summary() const {
    std::ostringstream os;
    auto names = model_->expert_layer_names();
    os << "load";
    for (size_t i = 0; i < names.size(); ++i) {
      os << " | " << names[i];
      auto share = stats_.last_share.size() > i ? stats_.last_share[i] : torch::Tensor();
      if (!share.defined()) continue;
      for (int64_t e = 0; e < share.numel(); ++e) {
        char buf[16];
        std::snprintf(buf, sizeof buf, " %.2f", share[e].item<double>());
        os << buf;
      }
    }
    return os.str();
  }

  // One serialisation, streamed durably to paths[0], the others names of the same file;
  // then --keep-last. Called on every rank; rank 0 writes the checkpoint. Expert parallel:
  // every other rank first writes its experts and their moments to a shard file the
  // checkpoint names (checkpoint.h), so no rank holds more than its own experts.
  void save(const std::vector<std::string>& paths) {
    CheckpointExtras ex;
    nlohmann::json args = opt_;
    ex.train_state = {{"position", to_json(pos_)}, {"args", args}, {"meta", meta_json(meta_)}};
    ex.optimizer = optim_.get();
    if (!sharded_.empty()) {
      const int64_t W = comm_.size(), N = pos_.num_updates;
      std::string failed;
      if (!lead_) {
        std::vector<ShardTensor> mine;
        auto params = model_->parameters();
        for (size_t i = 0; i < params.size(); ++i)
          if (is_sharded(params[i]))
            mine.push_back({static_cast<int64_t>(i), params[i].detach(), optim_->exp_avg(i), optim_->exp_avg_sq(i)});
        try {
          save_expert_shard((fs::path(opt_.save_dir) / expert_shard_name(N, comm_.rank(), W)).string(), N,
                            comm_.rank(), W, mine);
        } catch (const std::exception& e) {
          failed = e.what();
        }
      }
      // every shard is durable before the checkpoint that names them exists
      auto outcome = comm_.allgather_string("expert shards saved", failed);
      for (size_t r = 0; r < outcome.size(); ++r)
        if (!outcome[r].empty()) throw Error("rank " + std::to_string(r) + " could not save its experts: " + outcome[r]);
      nlohmann::json files = nlohmann::json::array();
      for (int64_t r = 1; r < W; ++r) files.push_back(expert_shard_name(N, r, W));
      ex.expert_shards = {{"shards", W}, {"update", N}, {"files", files}};
    }
    if (!lead_) return;
    save_checkpoint(paths, model_, vocab_, ex);
    if (opt_.keep_last > 0) remove_old_checkpoints(opt_.save_dir, opt_.keep_last);
    if (!sharded_.empty()) {
      std::vector<int64_t> kept = {pos_.num_updates, pos_.best_update};
      for (auto& [n, path] : numbered_checkpoints(opt_.save_dir)) kept.push_back(n);
      remove_unreferenced_expert_shards(opt_.save_dir, kept);
    }
  }

  // The whole model on rank 0 (null elsewhere), from every rank's experts, for a gated
  // router's validation. Its replicated tensors are this rank's own (shared, not copied).
  Transformer gather_whole() {
    torch::NoGradGuard ng;
    auto mine = model_->parameters();
    Transformer whole(nullptr);
    std::vector<torch::Tensor> dst;
    if (lead_) {
      ModelConfig whole_cfg = model_->config();
      whole_cfg.expert_shards = 1, whole_cfg.expert_shard = 0;
      auto rng = runtime::cpu_rng_state();  // building a model draws its initial values: not from the run's stream
      whole = Transformer(whole_cfg);
      runtime::set_cpu_rng_state(rng);
      dst = whole->parameters();
    }
    for (size_t i = 0; i < mine.size(); ++i) {
      auto value = mine[i].detach().to(torch::kCPU);
      if (is_sharded(mine[i])) {  // every rank takes part; only rank 0 receives
        auto all = comm_.gather(value, 0);
        value = lead_ ? torch::cat(all, 0) : torch::Tensor();
      }
      if (lead_) dst[i].set_data(value);  // the whole model's own initial tensor is dropped here
    }
    if (!lead_) return Transformer(nullptr);
    auto bufs = whole->buffers(), my_bufs = model_->buffers();
    for (size_t i = 0; i < bufs.size() && i < my_bufs.size(); ++i) bufs[i].copy_(my_bufs[i].to(torch::kCPU));
    return whole;
  }

  TrainOptions opt_;
  torch::Device device_;
  dist::Communicator& comm_;
  bool lead_ = true;  // rank 0: writes the log and the checkpoints
  std::unique_ptr<dist::GradientReducer> reducer_;
  DatasetMeta meta_;
  Vocab vocab_;
  Dataset train_, valid_;
  struct ValidPair {
    std::string name;
    int64_t first = 0, count = 0;  // its examples in valid_
    std::vector<std::string> src, ref;
    int prefix = -1;  // the target tag put before a source (multilingual), -1: none
  };
  std::vector<ValidPair> vpairs_;
  std::vector<std::vector<int64_t>> batches_, valid_batches_;
  std::vector<size_t> valid_batch_pair_;  // the language pair of each validation batch
  bool sampled_ = false;  // the epochs' data are drawn at --sampling-temperature
  Transformer model_{nullptr};
  std::unique_ptr<Adam> optim_;
  InverseSqrtSchedule sched_;
  Position pos_;
  int64_t start_update_ = 0;  // updates done when this run() started (resume)
  std::unique_ptr<Progress> progress_;  // the terminal's progress line (none off a terminal)
  std::unique_ptr<OpProfile> profile_;
  bool two_pass_ = false;
  Consistency consistency_on_ = Consistency::Probabilities;
  int64_t workers_ = 1;                // shards of every batch run at once
  std::vector<torch::Tensor> params_;  // the parameters gradients go to
  std::vector<torch::Tensor> reduced_params_;  // those summed over the ranks (not this rank's own experts)
  std::set<const c10::TensorImpl*> sharded_;
  bool gated_ep_ = false;                   // expert parallel with a gated router (tokens cross ranks)
  std::unique_ptr<TokenExchange> exchange_;  // its token exchange over comm_

  // Expert statistics accumulated between two log lines.
  struct ExpertStatsAcc {
    std::vector<torch::Tensor> share, last_share;
    std::vector<std::map<std::string, double>> aux;
    double consistency = 0;
    int64_t batches = 0;
    int64_t experts = 0;
    void reset(size_t layers, int64_t e) {
      experts = e;
      share.clear();
      for (size_t i = 0; i < layers; ++i) share.push_back(torch::zeros({e}));  // one tensor each
      aux.assign(layers, {});
      consistency = 0;
      batches = 0;
    }
    void add_to(nlohmann::json& j, const std::vector<std::string>& names, int64_t ntokens) {
      if (share.empty()) return;
      nlohmann::json layers = nlohmann::json::array();
      last_share.clear();
      for (size_t i = 0; i < share.size(); ++i) {
        auto s = share[i] / std::max<int64_t>(1, batches);
        last_share.push_back(s);
        nlohmann::json l = {{"layer", names[i]}};
        std::vector<double> v(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
        l["share"] = v;
        for (auto& [k, val] : aux[i]) l[k] = val / std::max<int64_t>(1, batches);
        layers.push_back(l);
      }
      j["experts"] = layers;
      j["consistency"] = consistency / std::max<int64_t>(1, ntokens);
      reset(share.size(), experts);
    }
  } stats_;
  std::string last_path_;
  std::ofstream log_;
};

}  // namespace

nlohmann::json train(const TrainOptions& opt, ModelConfig model_cfg, dist::Communicator* comm) {
  if (opt.max_tokens <= 0) throw Error("--max-tokens must be > 0");
  if (opt.update_freq <= 0) throw Error("--update-freq must be > 0");
  if (opt.log_interval <= 0) throw Error("--log-interval must be > 0");
  if (opt.workers < 0) throw Error("--workers must be >= 0 (0 = one per thread on the CPU)");
  std::unique_ptr<dist::Communicator> alone;
  if (!comm) alone = dist::local_communicator(), comm = alone.get();
  Trainer t(opt, std::move(model_cfg), *comm);
  // SIGINT / SIGTERM: the loop stops after the current update and saves (a second signal
  // ends the process at once: durable writes leave at most a NAME.tmp, which --resume removes)
  StopSignals signals;
  return t.run();
}

}  // namespace thor
