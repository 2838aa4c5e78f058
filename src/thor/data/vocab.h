// Vocabulary: a SentencePiece model (joint over source and target). Ids follow fairseq's
// layout: pad 0, unk 1, bos 2, eos 3. The serialized model travels inside checkpoints.
// SentencePiece itself is reached through libthor_spm_shim.so (see src/spm_shim/spm_shim.h
// for why it cannot be linked into the same namespace as LibTorch).
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace thor {

struct SpmTrainOptions {
  std::vector<std::string> input_files;
  std::string model_prefix;  // writes <prefix>.model and <prefix>.vocab
  int vocab_size = 8000;
  std::string model_type = "bpe";  // bpe | unigram
  std::vector<std::string> user_symbols;  // e.g. target-language tags "<2de>"
  int threads = 2;
  int64_t max_sentences = 2000000;
};

// Trains a SentencePiece model; throws thor::Error with SentencePiece's message on failure.
void train_sentencepiece(const SpmTrainOptions& opt);

class Vocab {
 public:
  Vocab();
  ~Vocab();
  Vocab(Vocab&&) noexcept;
  Vocab& operator=(Vocab&&) noexcept;

  static Vocab from_file(const std::string& path);
  static Vocab from_serialized(const std::string& bytes);

  std::vector<int> encode(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;  // drops pad/bos/eos
  int size() const;
  int piece_to_id(const std::string& piece) const;  // unk id when absent
  const std::string& serialized() const { return bytes_; }

  static constexpr int kPad = 0, kUnk = 1, kBos = 2, kEos = 3;

 private:
  struct Handle;
  std::unique_ptr<Handle> sp_;
  std::string bytes_;
};

}  // namespace thor
