// See metrics.h.
#include "thor/serve/metrics.h"

#include <cmath>
#include <cstdio>

namespace thor::serve {

namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void header(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++n_;
}

uint64_t Histogram::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return n_;
}

void Histogram::write(std::string& out, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t cum = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i];
    const double le = i < bounds_.size() ? bounds_[i] : INFINITY;
    out += name + "_bucket{le=\"" + number(le) + "\"} " + std::to_string(cum) + "\n";
  }
  out += name + "_sum " + number(sum_) + "\n";
  out += name + "_count " + std::to_string(n_) + "\n";
}

Metrics::Metrics()
    : request_seconds_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      batch_seconds_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
      batch_sentences_({1, 2, 4, 8, 16, 32, 64, 128, 256}) {}

void Metrics::request(const std::string& route, int status, double seconds) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++requests_[{route, status}];
  }
  request_seconds_.observe(seconds);
}

uint64_t Metrics::requests(const std::string& route, int status) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = requests_.find({route, status});
  return it == requests_.end() ? 0 : it->second;
}

void Metrics::batch(int64_t sentences, int64_t source_tokens, int64_t target_tokens, double seconds) {
  translated(sentences, source_tokens, target_tokens);
  step(sentences, seconds);
}

void Metrics::translated(int64_t sentences, int64_t source_tokens, int64_t target_tokens) {
  sentences_ += static_cast<uint64_t>(sentences);
  source_tokens_ += static_cast<uint64_t>(source_tokens);
  target_tokens_ += static_cast<uint64_t>(target_tokens);
}

void Metrics::step(int64_t sentences, double seconds) {
  ++batches_;
  batch_seconds_.observe(seconds);
  batch_sentences_.observe(static_cast<double>(sentences));
}

std::string Metrics::text() const {
  std::string out;
  header(out, "thor_requests_total", "counter", "HTTP requests answered, by route and status code.");
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, n] : requests_)
      out += "thor_requests_total{route=\"" + key.first + "\",code=\"" + std::to_string(key.second) + "\"} " +
             std::to_string(n) + "\n";
  }
  auto scalar = [&out](const char* name, const char* type, const char* help, auto value) {
    header(out, name, type, help);
    out += std::string(name) + " " + std::to_string(value) + "\n";
  };
  scalar("thor_sentences_translated_total", "counter", "Sentences decoded.", sentences_.load());
  scalar("thor_source_tokens_total", "counter", "Source subword tokens decoded.", source_tokens_.load());
  scalar("thor_target_tokens_total", "counter", "Target subword tokens produced (end of sentence included).", target_tokens_.load());
  scalar("thor_batches_total", "counter", "Decoding batches run (continuous batching: decoding steps).", batches_.load());
  scalar("thor_joined_sentences_total", "counter", "Sentences that joined a batch already being decoded (continuous batching).",
         joined_.load());
  scalar("thor_queue_sentences", "gauge", "Sentences waiting to be decoded.", queue_.load());
  scalar("thor_inflight_requests", "gauge", "Translation requests being answered.", inflight_.load());
  scalar("thor_ready", "gauge", "1 once the model is loaded and warmed up.", int64_t{ready_.load() ? 1 : 0});
  header(out, "thor_request_duration_seconds", "histogram", "Time from a request's arrival to its answer.");
  request_seconds_.write(out, "thor_request_duration_seconds");
  header(out, "thor_batch_duration_seconds", "histogram", "Decoding time of one batch (continuous batching: of one step).");
  batch_seconds_.write(out, "thor_batch_duration_seconds");
  header(out, "thor_batch_sentences", "histogram", "Sentences per decoding batch (continuous batching: per step).");
  batch_sentences_.write(out, "thor_batch_sentences");
  return out;
}

}  // namespace thor::serve
