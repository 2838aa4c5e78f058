// See checkpoint.h.
#include "thor/train/checkpoint.h"

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "thor/common/error.h"
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

void save_checkpoint(const std::string& path, Transformer& model, const Vocab& vocab,
                     const CheckpointExtras& extras) {
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
  std::string tmp = path + ".tmp";
  ar.save_to(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot rename from " + tmp);
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
