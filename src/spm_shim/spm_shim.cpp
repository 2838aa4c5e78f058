// See spm_shim.h. Thin C wrapper over SentencePiece; no logic of its own.
#include "spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {
int fail(const std::string& msg, char* err, size_t errn) {
  if (err && errn > 0) {
    std::strncpy(err, msg.c_str(), errn - 1);
    err[errn - 1] = '\0';
  }
  return 1;
}
sentencepiece::SentencePieceProcessor* as_sp(void* p) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(p);
}
}  // namespace

extern "C" {

int thor_spm_train(const char* args, char* err, size_t errn) {
  auto st = sentencepiece::SentencePieceTrainer::Train(args);
  return st.ok() ? 0 : fail(st.ToString(), err, errn);
}

void* thor_spm_load(const char* bytes, size_t n, char* err, size_t errn) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  auto st = sp->LoadFromSerializedProto(std::string(bytes, n));
  if (!st.ok()) {
    fail(st.ToString(), err, errn);
    delete sp;
    return nullptr;
  }
  return sp;
}

void thor_spm_free(void* sp) { delete as_sp(sp); }
int thor_spm_size(void* sp) { return as_sp(sp)->GetPieceSize(); }
int thor_spm_piece_to_id(void* sp, const char* piece) { return as_sp(sp)->PieceToId(piece); }

int thor_spm_special_id(void* sp, int which) {
  switch (which) {
    case 0: return as_sp(sp)->pad_id();
    case 1: return as_sp(sp)->unk_id();
    case 2: return as_sp(sp)->bos_id();
    default: return as_sp(sp)->eos_id();
  }
}

int thor_spm_encode(void* sp, const char* text, size_t n, int** out, size_t* outn, char* err, size_t errn) {
  std::vector<int> ids;
  auto st = as_sp(sp)->Encode(std::string(text, n), &ids);
  if (!st.ok()) return fail(st.ToString(), err, errn);
  *outn = ids.size();
  *out = static_cast<int*>(std::malloc(sizeof(int) * (ids.size() + 1)));
  if (!ids.empty()) std::memcpy(*out, ids.data(), sizeof(int) * ids.size());
  return 0;
}

int thor_spm_decode(void* sp, const int* ids, size_t n, char** out, size_t* outn, char* err, size_t errn) {
  std::string text;
  auto st = as_sp(sp)->Decode(std::vector<int>(ids, ids + n), &text);
  if (!st.ok()) return fail(st.ToString(), err, errn);
  *outn = text.size();
  *out = static_cast<char*>(std::malloc(text.size() + 1));
  std::memcpy(*out, text.data(), text.size());
  (*out)[text.size()] = '\0';
  return 0;
}

void thor_spm_free_buffer(void* p) { std::free(p); }

}  // extern "C"
