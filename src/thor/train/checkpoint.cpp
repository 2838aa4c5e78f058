// See checkpoint.h.
#include "thor/train/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>

#include "thor/common/error.h"
#include "thor/common/file_io.h"
#include "thor/common/log.h"
#include "thor/common/runtime.h"

namespace thor {

namespace {
constexpr const char* kFormat = "thor-checkpoint-1";

torch::Tensor string_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}

std::string tensor_string(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kCPU);
  return std::string(reinterpret_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()));
}

std::string read_string(torch::serialize::InputArchive& ar, const std::string& key) {
  torch::Tensor t;
  ar.read(key, t);
  return tensor_string(t);
}

torch::serialize::InputArchive open_archive(const std::string& path) {
  if (!std::filesystem::exists(path)) throw Error(path + ": no such checkpoint");
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const c10::Error& e) {
    throw Error(path + ": not a readable thor checkpoint");
  }
  std::string fmt;
  try {
    fmt = read_string(ar, "format");
  } catch (const c10::Error&) {
  }
  if (fmt != kFormat) throw Error(path + ": not a thor checkpoint (format '" + fmt + "')");
  return ar;
}
}  // namespace

void save_checkpoint(const std::vector<std::string>& paths, Transformer& model, const Vocab& vocab,
                     const CheckpointExtras& extras) {
  if (paths.empty()) return;
  torch::serialize::OutputArchive ar;
  ar.write("format", string_tensor(kFormat));
  nlohmann::json cfg = model->config();
  ar.write("config", string_tensor(cfg.dump()));
  ar.write("spm", string_tensor(vocab.serialized()));
  ar.write("train_state", string_tensor(extras.train_state.dump()));
  torch::serialize::OutputArchive weights;
  model->save(weights);
  ar.write("model", weights);
  if (extras.optimizer) {
    torch::serialize::OutputArchive opt;
    extras.optimizer->save(opt);
    ar.write("optimizer", opt);
  }
  if (extras.save_rng) ar.write("rng", runtime::cpu_rng_state());
  DurableFile out(paths.front());
  ar.save_to([&](const void* data, size_t n) -> size_t {
    out.write(data, n);
    return n;
  });
  out.commit();
  for (size_t i = 1; i < paths.size(); ++i) link_durably(paths.front(), paths[i]);
}

void save_checkpoint(const std::string& path, Transformer& model, const Vocab& vocab,
                     const CheckpointExtras& extras) {
  save_checkpoint(std::vector<std::string>{path}, model, vocab, extras);
}

nlohmann::json read_train_state(const std::string& path) {
  auto ar = open_archive(path);
  try {
    return nlohmann::json::parse(read_string(ar, "train_state"));
  } catch (const std::exception&) {
    throw Error(path + ": damaged thor checkpoint (unreadable trainer state)");
  }
}

std::vector<std::pair<int64_t, std::string>> numbered_checkpoints(const std::string& save_dir) {
  namespace fs = std::filesystem;
  static const std::regex numbered(R"(checkpoint_(\d+)\.pt)");
  std::vector<std::pair<int64_t, std::string>> out;
  if (!fs::is_directory(save_dir)) return out;
  for (const auto& entry : fs::directory_iterator(save_dir)) {
    const std::string name = entry.path().filename().string();
    std::smatch m;
    if (std::regex_match(name, m, numbered)) out.emplace_back(std::stoll(m[1]), entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void remove_old_checkpoints(const std::string& save_dir, int64_t keep) {
  auto all = numbered_checkpoints(save_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) std::filesystem::remove(all[i].second);
}

std::string find_resume_checkpoint(const std::string& save_dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(save_dir)) return {};
  for (const auto& entry : fs::directory_iterator(save_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".pt.tmp") == 0) {
      THOR_WARN("train") << "removing " << entry.path().string() << " (an interrupted checkpoint write)";
      fs::remove(entry.path());
    }
  }
  auto numbered_paths = numbered_checkpoints(save_dir);
  std::vector<std::string> candidates;
  std::sort(numbered_paths.rbegin(), numbered_paths.rend());
  for (const char* name : {"checkpoint_last.pt"})
    if (fs::exists(fs::path(save_dir) / name)) candidates.push_back((fs::path(save_dir) / name).string());
  for (auto& [n, p] : numbered_paths) candidates.push_back(p);
  if (fs::exists(fs::path(save_dir) / "checkpoint_best.pt"))
    candidates.push_back((fs::path(save_dir) / "checkpoint_best.pt").string());
  if (candidates.empty()) return {};

  std::string chosen;
  int64_t chosen_updates = -1;
  std::string reasons;
  for (const auto& path : candidates) {
    try {
      auto state = read_train_state(path);
      int64_t updates = state.at("position").at("num_updates").get<int64_t>();
      if (updates > chosen_updates) chosen = path, chosen_updates = updates;
    } catch (const std::exception& e) {
      THOR_WARN("train") << "--resume: skipping " << e.what();
      reasons += std::string(reasons.empty() ? "" : "; ") + e.what();
    }
  }
  if (chosen.empty())
    throw Error("--resume: " + save_dir + " holds checkpoints but none is readable (" + reasons + ")");
  const std::string last = (fs::path(save_dir) / "checkpoint_last.pt").string();
  if (chosen != last)
    THOR_WARN("train") << "--resume: " << last << " is missing, unreadable or older; using " << chosen;
  return chosen;
}

LoadedModel load_model(const std::string& path, const torch::Device& device) {
  auto ar = open_archive(path);
  LoadedModel lm;
  lm.config = nlohmann::json::parse(read_string(ar, "config")).get<ModelConfig>();
  lm.vocab = Vocab::from_serialized(read_string(ar, "spm"));
  lm.train_state = nlohmann::json::parse(read_string(ar, "train_state"));
  lm.model = Transformer(lm.config);
  torch::serialize::InputArchive weights;
  ar.read("model", weights);
  lm.model->load(weights);
  lm.model->to(device);
  lm.model->eval();
  return lm;
}

void load_training_state(const std::string& path, Adam& optimizer) {
  auto ar = open_archive(path);
  torch::serialize::InputArchive opt;
  if (!ar.try_read("optimizer", opt)) throw Error(path + ": has no optimizer state (not a training checkpoint)");
  optimizer.load(opt);
  torch::Tensor rng;
  if (ar.try_read("rng", rng)) runtime::set_cpu_rng_state(rng);
}

}  // namespace thor
