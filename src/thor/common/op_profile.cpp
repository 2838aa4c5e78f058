// See op_profile.h.
#include "thor/common/op_profile.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

namespace thor {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Frame {
  std::string name;
  int64_t start = 0, children = 0;
};

// One profile at a time; timed on the thread that started it.
struct State {
  std::mutex mutex;
  std::thread::id thread;
  std::vector<Frame> stack;
  std::map<std::string, double> self_s;
  std::map<std::string, int64_t> calls;
  double timed_s = 0;  // top-level time
};
State& state() {
  static State s;
  return s;
}

struct Ctx : at::ObserverContext {};

bool is_phase(const std::string& n) {
  return n.rfind("thor::loss", 0) == 0 || n.rfind("thor::optimizer", 0) == 0 || n.rfind("thor::data", 0) == 0;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  auto& s = state();
  if (std::this_thread::get_id() != s.thread) return nullptr;
  s.stack.push_back({fn.name(), now_ns(), 0});
  return std::make_unique<Ctx>();
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  auto& s = state();
  if (!ctx || std::this_thread::get_id() != s.thread || s.stack.empty()) return;
  Frame f = std::move(s.stack.back());
  s.stack.pop_back();
  int64_t total = now_ns() - f.start;
  // Inside a thor phase (loss, optimizer, data) every nested operator counts for the phase:
  // part of a phase's work runs on worker threads, which are not timed one by one.
  const std::string* owner = &f.name;
  for (auto& up : s.stack)
    if (is_phase(up.name)) {
      owner = &up.name;
      break;
    }
  s.self_s[*owner] += static_cast<double>(total - f.children) * 1e-9;
  ++s.calls[f.name];
  if (!s.stack.empty())
    s.stack.back().children += total;
  else
    s.timed_s += static_cast<double>(total) * 1e-9;
}

bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

OpProfile::OpProfile() {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.thread = std::this_thread::get_id();
  s.stack.clear();
  s.self_s.clear();
  s.calls.clear();
  s.timed_s = 0;
  handle_ = at::addGlobalCallback(at::RecordFunctionCallback(on_start, on_end));
  running_ = true;
  t0_ns_ = now_ns();
}

OpProfile::~OpProfile() { stop(); }

void OpProfile::stop() {
  if (!running_) return;
  at::removeCallback(handle_);
  running_ = false;
  wall_s_ = static_cast<double>(now_ns() - t0_ns_) * 1e-9;
}

std::string OpProfile::classify(const std::string& n) {
  // thor's products (thor::gemm*, thor::batched_matmul*, their Gemm/BatchedMatmul nodes)
  // and LibTorch's (aten::mm/bmm/addmm/baddbmm/matmul/linear and their backward nodes)
  if (has(n, "gemm") || has(n, "Gemm") || has(n, "matmul") || has(n, "Matmul") || has(n, "::mm") ||
      has(n, "::bmm") || has(n, "::addmm") || has(n, "::baddbmm") || has(n, "mmBackward") || has(n, "MmBackward") ||
      has(n, "::linear"))
    return "matmul";
  if (has(n, "thor::loss") || has(n, "FusedLoss")) return "loss";
  if (has(n, "thor::optimizer")) return "optimizer";
  if (has(n, "thor::data")) return "data";
  if (has(n, "softmax") || has(n, "Softmax") || has(n, "masked_fill") || has(n, "MaskedFill")) return "attention softmax/mask";
  if (has(n, "layer_norm") || has(n, "LayerNorm")) return "layer norm";
  if (has(n, "dropout") || has(n, "bernoulli") || has(n, "Dropout")) return "dropout";
  if (has(n, "cat") || has(n, "Cat") || has(n, "copy") || has(n, "contiguous") || has(n, "clone") ||
      has(n, "index") || has(n, "Index") || has(n, "reshape") || has(n, "view") || has(n, "transpose") ||
      has(n, "Transpose") || has(n, "select") || has(n, "Select") || has(n, "narrow") || has(n, "empty") || has(n, "reorder"))
    return "copies/layout";
  return "other element-wise";
}

std::map<std::string, double> OpProfile::by_class() const {
  auto& s = state();
  std::map<std::string, double> out;
  for (auto& [name, secs] : s.self_s) out[classify(name)] += secs;
  out["untimed"] = std::max(0.0, wall_s_ - s.timed_s);
  return out;
}

std::vector<std::pair<std::string, double>> OpProfile::top(size_t n) const {
  auto& s = state();
  std::vector<std::pair<std::string, double>> v(s.self_s.begin(), s.self_s.end());
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second > b.second; });
  if (v.size() > n) v.resize(n);
  return v;
}

nlohmann::json OpProfile::to_json(size_t top_n) const {
  nlohmann::json j;
  j["wall_s"] = wall_s_;
  j["classes"] = by_class();
  nlohmann::json t = nlohmann::json::array();
  for (auto& [name, secs] : top(top_n)) {
    auto c = state().calls.find(name);
    t.push_back({{"name", name}, {"self_s", secs}, {"calls", c == state().calls.end() ? 0 : c->second}});
  }
  j["top"] = t;
  return j;
}

std::string OpProfile::table(size_t top_n) const {
  auto classes = by_class();
  std::vector<std::pair<std::string, double>> v(classes.begin(), classes.end());
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second > b.second; });
  std::string out = "| class | seconds | share |\n|---|---|---|\n";
  char buf[512];
  auto share = [&](double secs) { return 100.0 * secs / std::max(1e-9, wall_s_); };
  for (auto& [name, secs] : v) {
    std::snprintf(buf, sizeof buf, "| %s | %.3f | %.1f%% |\n", name.c_str(), secs, share(secs));
    out += buf;
  }
  if (top_n == 0) return out;
  out += "\n| operator | calls | self seconds | share |\n|---|---|---|---|\n";
  for (auto& [name, secs] : top(top_n)) {
    auto c = state().calls.find(name);
    std::snprintf(buf, sizeof buf, "| %s | %lld | %.3f | %.1f%% |\n", name.c_str(),
                  static_cast<long long>(c == state().calls.end() ? 0 : c->second), secs, share(secs));
    out += buf;
  }
  return out;
}

}  // namespace thor
