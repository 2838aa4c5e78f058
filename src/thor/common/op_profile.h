// Where the time goes, per class of operation (issue 5's "profile first"): a global
// RecordFunction callback times every ATen operator, autograd node and thor scope on the
// calling thread, keeps self time (own time minus nested calls) per name, and sums the
// names into classes: matmul, attention softmax/masks, layer norm, dropout, loss,
// optimizer, data, other element-wise work. Worker threads are not timed separately:
// their work is inside a timed call of the calling thread, which waits for it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace thor {

class OpProfile {
 public:
  OpProfile();   // starts timing
  ~OpProfile();  // stops if still running
  void stop();
  double wall_s() const { return wall_s_; }
  // {class: seconds} including "untimed" (wall time outside any timed call).
  std::map<std::string, double> by_class() const;
  // The n names with the most self time.
  std::vector<std::pair<std::string, double>> top(size_t n) const;
  nlohmann::json to_json(size_t top_n = 15) const;
  // Markdown: seconds per class, then the top_n operators by self time (0: classes only).
  std::string table(size_t top_n = 12) const;

  static std::string classify(const std::string& name);

 private:
  uint64_t handle_ = 0;
  bool running_ = false;
  double wall_s_ = 0;
  int64_t t0_ns_ = 0;
};

}  // namespace thor
