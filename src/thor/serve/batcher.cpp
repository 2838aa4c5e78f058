// See batcher.h.
#include "thor/serve/batcher.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <map>
#include <optional>

#include "thor/common/log.h"
#include "thor/common/runtime.h"
#include "thor/data/dataset.h"

namespace thor::serve {

using Clock = std::chrono::steady_clock;

Job::Job(std::vector<Source> sources) : sources_(std::move(sources)), out_(sources_.size()), remaining_(sources_.size()) {}

bool Job::wait_until(Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return done_.wait_until(lock, deadline, [&] { return remaining_ == 0; });
}

void Job::cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
}

bool Job::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

Batcher::Batcher(Transformer model, const Vocab& vocab, TranslateOptions decode, BatcherOptions opt, Metrics& metrics,
                 torch::Device device)
    : model_(std::move(model)), vocab_(vocab), decode_(std::move(decode)), opt_(opt), metrics_(metrics), device_(device) {
  decode_.workers = 1;  // parallelism comes from the batcher's own workers
  decode_.batch_size = 1 << 30;  // one take() is one batch
  const int threads = at::get_num_threads();
  const int64_t workers = opt_.workers = std::max<int64_t>(1, opt_.workers);
  const int per_worker = std::max(1, threads / static_cast<int>(workers));
  model_->eval();
  if (opt_.continuous && decode_.shortlist) opt_.continuous = false;  // a shortlist is chosen per batch
  for (int64_t w = 0; w < workers; ++w)
    workers_.emplace_back([this, per_worker, w] {
      at::set_num_threads(per_worker);
      torch::NoGradGuard ng;
      if (continuous())
        work_continuous(w);
      else
        work();
    });
}

Batcher::~Batcher() { shutdown(); }

int64_t Batcher::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

std::shared_ptr<Job> Batcher::submit(std::vector<Source> sources) {
  auto job = std::make_shared<Job>(std::move(sources));
  size_t to_decode = 0;
  for (size_t i = 0; i < job->sources_.size(); ++i) {
    if (job->sources_[i].blank) {
      job->out_[i] = {"", 0.0, 0};
      --job->remaining_;
    } else {
      ++to_decode;
    }
  }
  if (to_decode == 0) return job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw QueueFull("the server is shutting down");
    if (static_cast<int64_t>(queue_.size() + to_decode) > opt_.max_queue)
      throw QueueFull("queue full (" + std::to_string(queue_.size()) + " sentences waiting, --max-queue " +
                      std::to_string(opt_.max_queue) + ")");
    const auto now = Clock::now();
    for (size_t i = 0; i < job->sources_.size(); ++i)
      if (!job->sources_[i].blank) queue_.push_back({job, i, now});
    metrics_.set_queue(static_cast<int64_t>(queue_.size()));
  }
  cv_.notify_all();
  return job;
}

void Batcher::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

// The next batch, in arrival order: with batching, once the queued sentences fill
// max_batch_tokens or the oldest has waited max_wait_ms (or at shutdown), as many as fit
// (at least one); without, the queued sentences of the oldest request. Called locked.
std::vector<Batcher::Item> Batcher::take(std::unique_lock<std::mutex>& lock) {
  auto padded = [](size_t n, size_t longest) { return static_cast<int64_t>(n * (longest + 1)); };  // + eos
  struct Waiting {  // this worker counts as idle while it waits here
    int64_t& n;
    explicit Waiting(int64_t& c) : n(c) { ++n; }
    ~Waiting() { --n; }
  } waiting(idle_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return {};  // stopping, nothing left
    // drop the sentences of requests that gave up (timed out)
    while (!queue_.empty() && queue_.front().job->cancelled()) queue_.pop_front();
    if (queue_.empty()) continue;
    if (!opt_.batching || stopping_) break;
    size_t longest = 0;
    int64_t n = 0;
    bool full = false;
    for (const auto& it : queue_) {
      longest = std::max(longest, it.job->sources_[it.index].ids.size());
      if (padded(static_cast<size_t>(++n), longest) >= opt_.max_batch_tokens) {
        full = true;
        break;
      }
    }
    const auto deadline = queue_.front().arrived + std::chrono::milliseconds(opt_.max_wait_ms);
    if (full || Clock::now() >= deadline) break;
    cv_.wait_until(lock, deadline);  // more may arrive; then look again
  }
  // With batching, a fair share of what waits when other workers are idle too (32 waiting
  // sentences and 2 idle workers: 16 each), so a burst of requests keeps every core busy
  // instead of one worker decoding all of it while the others wait.
  const size_t share = opt_.batching ? (queue_.size() + static_cast<size_t>(idle_) - 1) / static_cast<size_t>(idle_)
                                     : queue_.size();
  std::vector<Item> batch;
  size_t longest = 0;
  const Job* first_job = queue_.front().job.get();
  while (!queue_.empty()) {
    auto& it = queue_.front();
    if (it.job->cancelled()) {
      queue_.pop_front();
      continue;
    }
    if (!opt_.batching && it.job.get() != first_job) break;
    const size_t len = std::max(longest, it.job->sources_[it.index].ids.size());
    if (opt_.batching && !batch.empty() && (padded(batch.size() + 1, len) > opt_.max_batch_tokens || batch.size() >= share))
      break;
    longest = len;
    batch.push_back(std::move(it));
    queue_.pop_front();
  }
  metrics_.set_queue(static_cast<int64_t>(queue_.size()));
  return batch;
}

void Batcher::work() {
  while (true) {
    std::vector<Item> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      batch = take(lock);
    }
    if (batch.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ && queue_.empty()) return;
      continue;
    }
    cv_.notify_all();  // another worker may take what is left
    if (opt_.fault_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(opt_.fault_delay_ms));
    decode(batch);
  }
}

void Batcher::decode(std::vector<Item>& items) {
  std::vector<Source> sources;
  int64_t source_tokens = 0;
  for (const auto& it : items) {
    sources.push_back(it.job->sources_[it.index]);
    source_tokens += static_cast<int64_t>(sources.back().ids.size()) + 1;
  }
  std::vector<std::vector<Translation>> out;
  std::string error;
  const auto t0 = Clock::now();
  try {
    out = translate_sources(model_, vocab_, sources, decode_, device_);
  } catch (const std::exception& e) {
    error = e.what();
    THOR_WARN("serve") << "decoding a batch of " << items.size() << " sentences failed: " << error;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  // counted before anyone is answered: a client that asks /metrics next sees its sentences
  std::vector<Translation> best(items.size());
  int64_t target_tokens = 0;
  for (size_t k = 0; k < items.size(); ++k)
    if (error.empty() && !out[k].empty()) target_tokens += (best[k] = std::move(out[k].front())).length;
  metrics_.batch(static_cast<int64_t>(items.size()), source_tokens, target_tokens, secs);
  for (size_t k = 0; k < items.size(); ++k) finish(items[k], std::move(best[k]), error);
}

void Batcher::finish(Item& item, Translation t, const std::string& error) {
  auto& job = *item.job;
  std::lock_guard<std::mutex> lock(job.mu_);
  job.out_[item.index] = std::move(t);
  if (!error.empty()) job.error_ = error;
  if (--job.remaining_ == 0) job.done_.notify_all();
}

std::vector<Batcher::Item> Batcher::join(int64_t active, size_t longest) {
  // a fair share of every sentence in the server, waiting or being decoded, per worker
  const int64_t workers = opt_.workers;
  const int64_t share = (static_cast<int64_t>(queue_.size()) + decoding_ + workers - 1) / workers;
  std::vector<Item> out;
  if (queue_.empty()) return out;
  // Joining costs an encoder pass whose weights are read for a few sentences: join in groups
  // of join_min, unless the oldest has waited join_wait_ms.
  const int64_t room = std::min<int64_t>(share - active, static_cast<int64_t>(queue_.size()));
  if (room < opt_.join_min && Clock::now() < queue_.front().arrived + std::chrono::milliseconds(opt_.join_wait_ms))
    return out;
  while (!queue_.empty() && active + static_cast<int64_t>(out.size()) < share) {
    auto& it = queue_.front();
    if (it.job->cancelled()) {
      queue_.pop_front();
      continue;
    }
    const size_t len = std::max(longest, it.job->sources_[it.index].ids.size());
    if (static_cast<int64_t>((static_cast<size_t>(active) + out.size() + 1) * (len + 1)) > opt_.max_batch_tokens) break;
    longest = len;
    out.push_back(std::move(it));
    queue_.pop_front();
  }
  metrics_.set_queue(static_cast<int64_t>(queue_.size()));
  return out;
}

void Batcher::work_continuous(int64_t worker) {
  // sentence-level expert draws from this worker's own generator
  runtime::GeneratorScope rng(at::detail::createCPUGenerator(decode_.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(worker)));
  const auto& cfg = model_->config();
  TransformerStepModel step_model(model_);
  const SearchOptions so = search_options_for(cfg, decode_.search);
  std::optional<BeamStream> stream;
  stream.emplace(step_model, so);
  std::map<int64_t, Item> flight;  // the sentences of the running batch, by stream id
  int64_t next_id = 0;
  size_t longest = 0;  // the longest source since the batch started (a bound for --max-batch-tokens)
  auto fail_all = [&](const std::string& error) {
    THOR_WARN("serve") << "decoding a batch of " << flight.size() << " sentences failed: " << error;
    for (auto& kv : flight) finish(kv.second, Translation(), error);
    {
      std::lock_guard<std::mutex> lock(mu_);
      decoding_ -= static_cast<int64_t>(flight.size());
    }
    flight.clear();
    stream.emplace(step_model, so);
  };
  while (true) {
    std::vector<Item> add;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (flight.empty()) {
        add = take(lock);  // waits for sentences (and max_wait_ms for a batch to fill)
        if (add.empty()) {
          if (stopping_ && queue_.empty()) return;
          continue;
        }
        longest = 0;
      } else {
        add = join(static_cast<int64_t>(flight.size()), longest);
        metrics_.joined(static_cast<int64_t>(add.size()));
      }
      decoding_ += static_cast<int64_t>(add.size());
    }
    int64_t source_tokens = 0;
    if (!add.empty()) {
      cv_.notify_all();  // another worker may take what is left
      if (opt_.fault_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(opt_.fault_delay_ms));
      std::vector<std::vector<int>> srcs;
      std::vector<int64_t> ids;
      for (auto& it : add) {
        srcs.push_back(it.job->sources_[it.index].ids);
        source_tokens += static_cast<int64_t>(srcs.back().size()) + 1;
        longest = std::max(longest, srcs.back().size());
        ids.push_back(next_id);
        flight.emplace(next_id++, std::move(it));
      }
      try {
        stream->admit(pad_sources(srcs, cfg.pad_id, cfg.eos_id).to(device_), ids);
      } catch (const std::exception& e) {
        fail_all(e.what());
        continue;
      }
    }
    const auto active = static_cast<int64_t>(flight.size());
    const auto t0 = Clock::now();
    std::vector<std::pair<int64_t, std::vector<Hypothesis>>> done;
    try {
      done = stream->step();
    } catch (const std::exception& e) {
      fail_all(e.what());
      continue;
    }
    metrics_.step(active, std::chrono::duration<double>(Clock::now() - t0).count());
    // counted before anyone is answered: a client that asks /metrics next sees its sentences
    std::vector<Translation> best;
    int64_t target_tokens = 0;
    for (auto& [id, hyps] : done) {
      best.push_back(hyps.empty() ? Translation() : to_translation(vocab_, hyps.front()));
      target_tokens += best.back().length;
    }
    metrics_.translated(static_cast<int64_t>(done.size()), source_tokens, target_tokens);
    if (!done.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      decoding_ -= static_cast<int64_t>(done.size());
    }
    for (size_t k = 0; k < done.size(); ++k) {
      auto node = flight.extract(done[k].first);
      finish(node.mapped(), std::move(best[k]), "");
    }
  }
}

}  // namespace thor::serve
