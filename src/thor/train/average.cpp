// See average.h.
#include "thor/train/average.h"

#include <algorithm>
#include <filesystem>

#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/train/checkpoint.h"

namespace thor {

void average_checkpoints(const std::vector<std::string>& inputs, const std::string& out_path) {
  if (inputs.empty()) throw Error("average: no input checkpoints");
  torch::NoGradGuard ng;
  auto first = load_model(inputs.front(), torch::kCPU);
  const std::string config = nlohmann::json(first.config).dump();
  std::vector<std::pair<torch::Tensor, torch::Tensor>> sums;  // (destination in `first`, float64 sum)
  auto params = first.model->named_parameters(), buffers = first.model->named_buffers();
  std::vector<std::string> names;
  for (auto& kv : params) names.push_back(kv.key()), sums.emplace_back(kv.value(), kv.value().to(torch::kDouble));
  for (auto& kv : buffers) names.push_back(kv.key()), sums.emplace_back(kv.value(), kv.value().to(torch::kDouble));
  for (size_t i = 1; i < inputs.size(); ++i) {
    auto m = load_model(inputs[i], torch::kCPU);
    if (nlohmann::json(m.config).dump() != config)
      throw Error("average: " + inputs[i] + " is another architecture than " + inputs.front());
    if (m.vocab.serialized() != first.vocab.serialized())
      throw Error("average: " + inputs[i] + " has another vocabulary than " + inputs.front());
    auto p = m.model->named_parameters(), b = m.model->named_buffers();
    for (size_t k = 0; k < names.size(); ++k) {
      const torch::Tensor* t = p.find(names[k]);
      if (!t) t = b.find(names[k]);
      if (!t) throw Error("average: " + inputs[i] + " has no tensor " + names[k]);
      sums[k].second.add_(t->to(torch::kDouble));
    }
  }
  const double n = static_cast<double>(inputs.size());
  for (auto& [dst, sum] : sums) {
    if (dst.is_floating_point()) dst.copy_(sum / n);
    else dst.copy_(torch::floor(sum / n));
  }
  CheckpointExtras ex;
  ex.train_state = {{"averaged_from", inputs}};
  auto last = read_train_state(inputs.back());
  if (last.contains("position")) ex.train_state["position"] = last["position"];
  if (last.contains("meta")) ex.train_state["meta"] = last["meta"];
  ex.save_rng = false;
  save_checkpoint(out_path, first.model, first.vocab, ex);
  THOR_LOG("average") << inputs.size() << " checkpoints -> " << out_path;
}

std::vector<std::string> last_numbered_checkpoints(const std::string& save_dir, int n) {
  if (n < 1) throw Error("--num-update-checkpoints must be >= 1");
  if (!std::filesystem::is_directory(save_dir)) throw Error("average: " + save_dir + " is not a directory");
  auto found = numbered_checkpoints(save_dir);
  if (static_cast<int>(found.size()) < n)
    throw Error("average: " + save_dir + " holds " + std::to_string(found.size()) + " checkpoint_N.pt files, " +
                std::to_string(n) + " asked for");
  std::vector<std::string> out;
  for (size_t i = found.size() - static_cast<size_t>(n); i < found.size(); ++i) out.push_back(found[i].second);
  return out;
}

}  // namespace thor
