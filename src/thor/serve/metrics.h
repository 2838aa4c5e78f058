// Prometheus metrics of thor serve: counters, gauges and histograms kept in memory and
// written in the Prometheus text exposition format (version 0.0.4) for GET /metrics.
// Thread-safe; no dependency on the HTTP library.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace thor::serve {

// A histogram with fixed upper bounds (Prometheus "le" buckets, +Inf implied).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // "NAME_bucket{le=...} N" lines (cumulative), NAME_sum, NAME_count.
  void write(std::string& out, const std::string& name) const;
  uint64_t count() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
};

class Metrics {
 public:
  Metrics();
  // One answered request: its route and HTTP status, and how long it took.
  void request(const std::string& route, int status, double seconds);
  // One decoded batch: its sentences, source and target tokens, and decoding time
  // (translated + step).
  void batch(int64_t sentences, int64_t source_tokens, int64_t target_tokens, double seconds);
  // Continuous batching: one decoding step of a running batch of `sentences`, and what it
  // translated (source tokens are counted when sentences join).
  void step(int64_t sentences, double seconds);
  void translated(int64_t sentences, int64_t source_tokens, int64_t target_tokens);
  void joined(int64_t sentences) { joined_ += static_cast<uint64_t>(sentences); }
  void set_queue(int64_t sentences) { queue_ = sentences; }
  void set_ready(bool ready) { ready_ = ready; }
  void add_inflight(int64_t d) { inflight_ += d; }
  int64_t inflight() const { return inflight_.load(); }
  // The text exposition of every metric.
  std::string text() const;
  uint64_t requests(const std::string& route, int status) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::atomic<uint64_t> sentences_{0}, source_tokens_{0}, target_tokens_{0}, batches_{0}, joined_{0};
  std::atomic<int64_t> queue_{0}, inflight_{0};
  std::atomic<bool> ready_{false};
  Histogram request_seconds_, batch_seconds_, batch_sentences_;
};

}  // namespace thor::serve
