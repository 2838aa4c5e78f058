// See checkpoint.h.
#include "thor/train/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <filesystem>
#include <regex>
#include <sstream>

#include <zlib.h>

#include "thor/common/error.h"
#include "thor/common/file_io.h"
#include "thor/common/framed_file.h"
#include "thor/common/log.h"
#include "thor/common/runtime.h"

namespace thor {

namespace {
// The archive's own layout (its "format" entry), inside the file's frame.
constexpr const char* kFormat = "thor-checkpoint-1";
constexpr const char* kShardFormat = "thor-expert-shard-1";
// File format versions: 1 = the bare archive (a zip, no checksum), still read; 2 = framed
// with a CRC32 (common/framed_file.h).
const FrameKind kCheckpointFile{"THORCKPT", "checkpoint", 2, 2, "PK\x03\x04"};
const FrameKind kShardFile{"THORSHRD", "expert shard", 1, 1, nullptr};

void write_archive(torch::serialize::OutputArchive& ar, const std::string& path, const FrameKind& kind) {
  FramedWriter out(path, kind);
  // LibTorch's writer must not see an exception (it finishes the archive in a destructor):
  // the first failure (a full disk) is kept, the rest of the archive dropped, and rethrown.
  std::exception_ptr failure;
  ar.save_to([&](const void* data, size_t n) -> size_t {
    if (!failure) {
      try {
        out.write(data, n);
      } catch (...) {
        failure = std::current_exception();
      }
    }
    return n;
  });
  if (failure) std::rethrow_exception(failure);
  out.commit();
}

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

torch::serialize::InputArchive open_archive(const std::string& path, const char* format = kFormat,
                                            const FrameKind& kind = kCheckpointFile) {
  const std::string what = kind.what;
  const FramedFile file = open_framed(path, kind);  // checked: header, length, checksum
  torch::serialize::InputArchive ar;
  try {
    ar.load_from([&](uint64_t pos, void* buf, size_t n) { return file.read(pos, buf, n); },
                 [&]() { return static_cast<size_t>(file.length); });
  } catch (const c10::Error& e) {
    throw Error(path + ": not a readable thor " + what);
  }
  std::string fmt;
  try {
    fmt = read_string(ar, "format");
  } catch (const c10::Error&) {
  }
  if (fmt != format) throw Error(path + ": not a thor " + what + " (format '" + fmt + "')");
  return ar;
}

// The expert shards a checkpoint names (W = 1 and no files for a one-process checkpoint).
struct ShardIndex {
  int64_t shards = 1, update = 0;
  std::vector<std::string> files;  // ranks 1 .. W-1, paths beside the checkpoint
};

ShardIndex shard_index(torch::serialize::InputArchive& ar, const std::string& path) {
  ShardIndex ix;
  torch::Tensor t;
  if (!ar.try_read("expert_shards", t)) return ix;
  try {
    auto j = nlohmann::json::parse(tensor_string(t));
    ix.shards = j.at("shards").get<int64_t>();
    ix.update = j.at("update").get<int64_t>();
    const auto dir = std::filesystem::path(path).parent_path();
    for (const auto& f : j.at("files")) ix.files.push_back((dir / f.get<std::string>()).string());
  } catch (const std::exception&) {
    throw Error(path + ": damaged thor checkpoint (unreadable expert shard index)");
  }
  if (ix.shards < 1 || static_cast<int64_t>(ix.files.size()) != ix.shards - 1)
    throw Error(path + ": damaged thor checkpoint (expert shard index names " + std::to_string(ix.files.size()) +
                " files for " + std::to_string(ix.shards) + " shards)");
  return ix;
}

// Shard r's file, checked to be the one the checkpoint `path` was written with.
torch::serialize::InputArchive open_shard(const std::string& path, const ShardIndex& ix, int64_t r) {
  const std::string& file = ix.files[static_cast<size_t>(r - 1)];
  if (!std::filesystem::exists(file))
    throw Error(path + ": its expert shard " + file + " is missing (expert-parallel checkpoints are several files)");
  auto ar = open_archive(file, kShardFormat, kShardFile);
  auto j = nlohmann::json::parse(read_string(ar, "shard"));
  if (j.at("shard") != r || j.at("shards") != ix.shards || j.at("update") != ix.update)
    throw Error(file + ": expert shard " + j.dump() + ", but " + path + " expects shard " + std::to_string(r) +
                " of " + std::to_string(ix.shards) + " at update " + std::to_string(ix.update));
  return ar;
}

// Whole-model tensor `whole` from rank 0's rows `rows0` and the shard files' `key`: the
// experts of rank r are rows [r * n, (r + 1) * n) (ModelConfig::first_local_expert).
void assemble_rows(torch::Tensor& whole, const torch::Tensor& rows0, std::vector<torch::serialize::InputArchive>& shards,
                   const std::string& key, const std::string& path) {
  const int64_t n = rows0.size(0);
  if (n * static_cast<int64_t>(shards.size() + 1) != whole.size(0))
    throw Error(path + ": damaged thor checkpoint (" + key + " has " + std::to_string(n) + " rows per shard)");
  whole.narrow(0, 0, n).copy_(rows0);
  for (size_t r = 0; r < shards.size(); ++r) {
    torch::Tensor t;
    if (!shards[r].try_read(key, t) || !t.sizes().equals(rows0.sizes()))
      throw Error(path + ": expert shard " + std::to_string(r + 1) + " lacks " + key + " or has another shape");
    whole.narrow(0, static_cast<int64_t>(r + 1) * n, n).copy_(t);
  }
}

std::vector<torch::serialize::InputArchive> open_shards(const std::string& path, const ShardIndex& ix) {
  std::vector<torch::serialize::InputArchive> out;
  for (int64_t r = 1; r < ix.shards; ++r) out.push_back(open_shard(path, ix, r));
  return out;
}
}  // namespace

std::string expert_shard_name(int64_t update, int64_t shard, int64_t shards) {
  return "experts_" + std::to_string(update) + "_" + std::to_string(shard) + "of" + std::to_string(shards) + ".pt";
}

void save_expert_shard(const std::string& path, int64_t update, int64_t shard, int64_t shards,
                       const std::vector<ShardTensor>& tensors) {
  torch::serialize::OutputArchive ar;
  ar.write("format", string_tensor(kShardFormat));
  ar.write("shard", string_tensor(nlohmann::json{{"shard", shard}, {"shards", shards}, {"update", update}}.dump()));
  for (const auto& t : tensors) {
    const std::string i = std::to_string(t.index);
    ar.write("value." + i, t.value);
    ar.write("exp_avg." + i, t.exp_avg);
    ar.write("exp_avg_sq." + i, t.exp_avg_sq);
  }
  write_archive(ar, path, kShardFile);
}

void remove_unreferenced_expert_shards(const std::string& save_dir, const std::vector<int64_t>& referenced) {
  namespace fs = std::filesystem;
  static const std::regex shard_file(R"(experts_(\d+)_\d+of\d+\.pt)");
  if (!fs::is_directory(save_dir)) return;
  for (const auto& entry : fs::directory_iterator(save_dir)) {
    const std::string name = entry.path().filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, shard_file)) continue;
    if (std::find(referenced.begin(), referenced.end(), std::stoll(m[1])) == referenced.end())
      fs::remove(entry.path());
  }
}

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
  if (!extras.expert_shards.is_null()) ar.write("expert_shards", string_tensor(extras.expert_shards.dump()));
  write_archive(ar, paths.front(), kCheckpointFile);
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
  const auto ix = shard_index(ar, path);
  if (ix.shards == 1) {
    lm.model->load(weights);
  } else {
    // rank 0's model (its experts' rows), then every shard's rows
    ModelConfig local_cfg = lm.config;
    local_cfg.expert_shards = ix.shards, local_cfg.expert_shard = 0;
    Transformer local(local_cfg);
    local->load(weights);
    auto shards = open_shards(path, ix);
    torch::NoGradGuard ng;
    auto whole = lm.model->parameters(), mine = local->parameters();
    if (whole.size() != mine.size()) throw Error(path + ": damaged thor checkpoint (parameter count)");
    for (size_t i = 0; i < whole.size(); ++i) {
      if (whole[i].sizes().equals(mine[i].sizes())) whole[i].copy_(mine[i]);
      else assemble_rows(whole[i], mine[i], shards, "value." + std::to_string(i), path);
    }
    auto wb = lm.model->buffers(), mb = local->buffers();
    for (size_t i = 0; i < wb.size() && i < mb.size(); ++i) wb[i].copy_(mb[i]);
  }
  lm.model->to(device);
  lm.model->eval();
  return lm;
}

uint32_t parameter_digest(Transformer& model) {
  unsigned long crc = crc32(0L, Z_NULL, 0);
  for (auto& p : model->parameters()) {
    auto c = p.detach().to(torch::kCPU).contiguous();
    crc = crc32(crc, static_cast<const Bytef*>(c.data_ptr()), static_cast<uInt>(c.numel() * c.element_size()));
  }
  return static_cast<uint32_t>(crc);
}

void load_training_state(const std::string& path, Adam& optimizer) {
  auto ar = open_archive(path);
  torch::serialize::InputArchive opt;
  if (!ar.try_read("optimizer", opt)) throw Error(path + ": has no optimizer state (not a training checkpoint)");
  const auto ix = shard_index(ar, path);
  if (ix.shards == 1) {
    optimizer.load(opt);
  } else {
    auto shards = open_shards(path, ix);
    torch::Tensor steps;
    opt.read("steps", steps);
    optimizer.set_steps(steps.item<int64_t>());
    const auto& params = optimizer.params();
    for (size_t i = 0; i < params.size(); ++i) {
      for (const bool second : {false, true}) {
        const std::string key = (second ? "exp_avg_sq." : "exp_avg.") + std::to_string(i);
        torch::Tensor rows0;
        opt.read(key, rows0);
        auto whole = torch::empty_like(params[i]);
        if (whole.sizes().equals(rows0.sizes())) whole.copy_(rows0);
        else assemble_rows(whole, rows0, shards, key, path);
        (second ? optimizer.exp_avg_sq(i) : optimizer.exp_avg(i)) = whole;
      }
    }
  }
  torch::Tensor rng;
  if (ar.try_read("rng", rng)) runtime::set_cpu_rng_state(rng);
}

}  // namespace thor
