// Dynamic batching for thor serve: the sentences of concurrent requests wait in one queue
// and decoding workers take them in arrival order, as many as fit a batch of
// max_batch_tokens padded source tokens (and a fair share of the queue when other workers
// are idle), waiting at most max_wait_ms after the oldest one arrived for a batch to fill
// (the scheme of TF Serving's and Triton's dynamic batchers).
// Continuous batching (the default): a worker's batch is never closed. Between two decoding
// steps queued sentences join it (up to the worker's fair share of all the sentences in
// the server and max_batch_tokens, in groups of join_min unless the oldest has waited
// join_wait_ms), and a sentence is answered the step it finishes, so a
// batch does not run on half empty while its longest sentence ends and the clients whose
// sentences are done wait (Orca's iteration-level scheduling). BeamStream
// (decode/search.h) gives every sentence what `thor translate` gives it.
// Static batching: a batch is taken, decoded whole through translate_sources (the same code
// as `thor translate`), then the next. Each request gets its translations in its own order.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "thor/decode/translator.h"
#include "thor/serve/metrics.h"

namespace thor::serve {

struct BatcherOptions {
  int64_t max_batch_tokens = 4096;  // padded source tokens (sentences x longest) per batch
  int64_t max_wait_ms = 5;          // longest wait of a queued sentence for its batch to fill
  int64_t max_queue = 2048;         // sentences waiting; a request beyond it is refused
  int64_t workers = 1;              // decoding threads (each threads/workers intra-op threads)
  // false: every request is decoded alone, as soon as a worker is free (for comparison)
  bool batching = true;
  // with batching: sentences join running batches (false: static batches, for comparison
  // and with a shortlist, which is chosen for one batch's sentences)
  bool continuous = true;
  // Continuous batching: queued sentences join a running batch in groups of at least
  // join_min (each join is an encoder pass), or once the oldest has waited join_wait_ms.
  int64_t join_min = 4;
  int64_t join_wait_ms = 40;
  // Test hook (THOR_SERVE_FAULT_DELAY_MS): each worker sleeps this long before decoding a
  // batch, so tests can hold requests in flight deterministically.
  int64_t fault_delay_ms = 0;
};

// One request's sentences and, once decoded, their translations.
class Job {
 public:
  explicit Job(std::vector<Source> sources);
  // Waits until every sentence is translated or the deadline passes; true when done.
  bool wait_until(std::chrono::steady_clock::time_point deadline);
  void cancel();  // sentences not yet taken are dropped
  bool cancelled() const;
  const std::vector<Translation>& translations() const { return out_; }
  // An error from decoding (empty: none).
  const std::string& error() const { return error_; }

 private:
  friend class Batcher;
  std::vector<Source> sources_;
  std::vector<Translation> out_;
  size_t remaining_;
  bool cancelled_ = false;
  std::string error_;
  mutable std::mutex mu_;
  std::condition_variable done_;
};

class QueueFull : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Batcher {
 public:
  Batcher(Transformer model, const Vocab& vocab, TranslateOptions decode, BatcherOptions opt, Metrics& metrics,
          torch::Device device);
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues a request's sentences (blank ones are answered at once). Throws QueueFull when
  // they would take the queue beyond max_queue.
  std::shared_ptr<Job> submit(std::vector<Source> sources);
  // Decodes what is queued, then stops the workers (no submit after this).
  void shutdown();
  int64_t queued() const;
  // Whether sentences join running batches (batching on, not turned off, no shortlist).
  bool continuous() const { return opt_.batching && opt_.continuous; }

 private:
  struct Item {
    std::shared_ptr<Job> job;
    size_t index;
    std::chrono::steady_clock::time_point arrived;
  };
  void work();  // static batches (or none)
  void work_continuous(int64_t worker);
  std::vector<Item> take(std::unique_lock<std::mutex>& lock);
  // Continuous batching, called locked by a worker decoding `active` sentences (the longest
  // source `longest` tokens): the queued sentences that join its batch now.
  std::vector<Item> join(int64_t active, size_t longest);
  void decode(std::vector<Item>& items);
  // Gives a sentence its translation (or the error).
  static void finish(Item& item, Translation t, const std::string& error);

  Transformer model_;
  const Vocab& vocab_;
  TranslateOptions decode_;
  BatcherOptions opt_;
  Metrics& metrics_;
  torch::Device device_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  int64_t idle_ = 0;  // workers waiting in take()
  int64_t decoding_ = 0;  // sentences in the workers' running batches (continuous batching)
  std::vector<std::thread> workers_;
};

}  // namespace thor::serve
