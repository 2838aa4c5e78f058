// See vocab.h.
#include "thor/data/vocab.h"

#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "spm_shim/spm_shim.h"
#include "thor/common/error.h"

#ifndef THOR_SPM_SHIM_BUILD_PATH
#define THOR_SPM_SHIM_BUILD_PATH ""
#endif

namespace thor {

namespace {

struct ShimApi {
  decltype(&thor_spm_train) train;
  decltype(&thor_spm_load) load;
  decltype(&thor_spm_free) free;
  decltype(&thor_spm_size) size;
  decltype(&thor_spm_piece_to_id) piece_to_id;
  decltype(&thor_spm_special_id) special_id;
  decltype(&thor_spm_encode) encode;
  decltype(&thor_spm_decode) decode;
  decltype(&thor_spm_free_buffer) free_buffer;
};

std::vector<std::string> shim_candidates() {
  std::vector<std::string> c;
  if (const char* env = std::getenv("THOR_SPM_SHIM")) c.push_back(env);
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    c.push_back((exe.parent_path() / "libthor_spm_shim.so").string());
    c.push_back((exe.parent_path() / "../lib/libthor_spm_shim.so").string());
  }
  if (std::string(THOR_SPM_SHIM_BUILD_PATH).size()) c.push_back(THOR_SPM_SHIM_BUILD_PATH);
  return c;
}

const ShimApi& shim() {
  static ShimApi api;
  static std::once_flag once;
  static std::string error;
  std::call_once(once, [] {
    void* h = nullptr;
    std::string tried;
    for (auto& path : shim_candidates()) {
      if (!std::filesystem::exists(path)) {
        tried += " " + path;
        continue;
      }
      h = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (h) break;
      tried += " " + path + " (" + dlerror() + ")";
    }
    if (!h) {
      error = "cannot load libthor_spm_shim.so (SentencePiece); tried:" + tried;
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(h, name);
      if (!p) error = std::string("libthor_spm_shim.so lacks ") + name;
      return p;
    };
    api.train = reinterpret_cast<decltype(api.train)>(sym("thor_spm_train"));
    api.load = reinterpret_cast<decltype(api.load)>(sym("thor_spm_load"));
    api.free = reinterpret_cast<decltype(api.free)>(sym("thor_spm_free"));
    api.size = reinterpret_cast<decltype(api.size)>(sym("thor_spm_size"));
    api.piece_to_id = reinterpret_cast<decltype(api.piece_to_id)>(sym("thor_spm_piece_to_id"));
    api.special_id = reinterpret_cast<decltype(api.special_id)>(sym("thor_spm_special_id"));
    api.encode = reinterpret_cast<decltype(api.encode)>(sym("thor_spm_encode"));
    api.decode = reinterpret_cast<decltype(api.decode)>(sym("thor_spm_decode"));
    api.free_buffer = reinterpret_cast<decltype(api.free_buffer)>(sym("thor_spm_free_buffer"));
  });
  if (!error.empty()) throw Error(error);
  return api;
}

}  // namespace

struct Vocab::Handle {
  void* sp = nullptr;
  ~Handle() {
    if (sp) shim().free(sp);
  }
};

void train_sentencepiece(const SpmTrainOptions& opt) {
  std::ostringstream args;
  args << "--input=";
  for (size_t i = 0; i < opt.input_files.size(); ++i) args << (i ? "," : "") << opt.input_files[i];
  args << " --model_prefix=" << opt.model_prefix << " --vocab_size=" << opt.vocab_size
       << " --model_type=" << opt.model_type << " --character_coverage=1.0"
       << " --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3"
       << " --input_sentence_size=" << opt.max_sentences << " --shuffle_input_sentence=true"
       << " --num_threads=" << opt.threads << " --minloglevel=2";
  if (!opt.user_symbols.empty()) {
    args << " --user_defined_symbols=";
    for (size_t i = 0; i < opt.user_symbols.size(); ++i) args << (i ? "," : "") << opt.user_symbols[i];
  }
  char err[1024];
  if (shim().train(args.str().c_str(), err, sizeof err) != 0)
    throw Error(std::string("sentencepiece training failed: ") + err);
}

Vocab::Vocab() : sp_(std::make_unique<Handle>()) {}
Vocab::~Vocab() = default;
Vocab::Vocab(Vocab&&) noexcept = default;
Vocab& Vocab::operator=(Vocab&&) noexcept = default;

Vocab Vocab::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open SentencePiece model");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_serialized(ss.str());
}

Vocab Vocab::from_serialized(const std::string& bytes) {
  Vocab v;
  char err[1024];
  v.sp_->sp = shim().load(bytes.data(), bytes.size(), err, sizeof err);
  if (!v.sp_->sp) throw Error(std::string("cannot load SentencePiece model: ") + err);
  auto id = [&](int which) { return shim().special_id(v.sp_->sp, which); };
  if (id(0) != kPad || id(1) != kUnk || id(2) != kBos || id(3) != kEos)
    throw Error("SentencePiece model must use pad=0 unk=1 bos=2 eos=3 (train it with thor prepare)");
  v.bytes_ = bytes;
  return v;
}

std::vector<int> Vocab::encode(const std::string& text) const {
  int* out = nullptr;
  size_t n = 0;
  char err[512];
  if (shim().encode(sp_->sp, text.data(), text.size(), &out, &n, err, sizeof err) != 0)
    throw Error(std::string("sentencepiece encode: ") + err);
  std::vector<int> ids(out, out + n);
  shim().free_buffer(out);
  return ids;
}

std::string Vocab::decode(const std::vector<int>& ids) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int id : ids)
    if (id != kPad && id != kBos && id != kEos) kept.push_back(id);
  char* out = nullptr;
  size_t n = 0;
  char err[512];
  if (shim().decode(sp_->sp, kept.data(), kept.size(), &out, &n, err, sizeof err) != 0)
    throw Error(std::string("sentencepiece decode: ") + err);
  std::string text(out, n);
  shim().free_buffer(out);
  return text;
}

int Vocab::size() const { return shim().size(sp_->sp); }
int Vocab::piece_to_id(const std::string& piece) const { return shim().piece_to_id(sp_->sp, piece.c_str()); }

}  // namespace thor
