// Fuzz target: translate's input path (read_lines, UTF-8 repair, SentencePiece encoding,
// truncation to the model's positions, blank lines, batching, beam search, detokenisation)
// on a small random THOR model (2 experts, one draw per sentence) with a SentencePiece
// model trained at start-up on generated text. The input is the text file given to
// `thor translate`. Invariants: one output per input line, a blank line gives an empty
// translation, every translation is valid UTF-8 (it goes into JSON answers in thor serve).
#include <random>

#include "fuzz_common.h"
#include "thor/data/corpus.h"
#include "thor/decode/translator.h"

namespace {

struct Setup {
  thor::Vocab vocab;
  thor::Transformer model{nullptr};
};

Setup& setup() {
  static Setup s = [] {
    // generated text: words over a small alphabet with accents, digits and punctuation
    std::mt19937 rng(7);
    const std::vector<std::string> words = {"der", "Hund", "läuft", "über", "die", "Straße", "a", "dog", "runs",
                                            "café", "naïve", "42", "e-mail", "«quote»", "→", "日本"};
    const auto text = thor::fuzz::scratch() / "spm.txt";
    {
      std::ofstream out(text);
      for (int i = 0; i < 400; ++i) {
        for (int k = 0, n = 2 + static_cast<int>(rng() % 8); k < n; ++k) out << (k ? " " : "") << words[rng() % words.size()];
        out << ".\n";
      }
    }
    thor::SpmTrainOptions o;
    o.input_files = {text.string()};
    o.model_prefix = (thor::fuzz::scratch() / "spm").string();
    o.vocab_size = 60;
    thor::train_sentencepiece(o);
    Setup st;
    st.vocab = thor::Vocab::from_file(o.model_prefix + ".model");
    thor::ModelConfig c;
    c.vocab_size = st.vocab.size();
    c.d_model = 16, c.ffn_dim = 32, c.heads = 2, c.encoder_layers = 1, c.decoder_layers = 1;
    c.max_positions = 24;  // long lines are truncated: that path is fuzzed too
    c.share_all_embeddings = true;
    c.num_experts = 2, c.router = "thor";
    c.validate();
    torch::manual_seed(1);
    st.model = thor::Transformer(c);
    st.model->eval();
    return st;
  }();
  return s;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_translate: invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);
  setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& st = setup();
  const auto path = thor::fuzz::write_bytes("input.txt", data, size);
  thor::fuzz::expect_refusal_or_success("translate", [&] {
    const auto lines = thor::read_lines(path);
    thor::TranslateOptions o;
    o.search.beam = 2;
    o.search.max_len_a = 0;
    o.search.max_len_b = 4;
    o.batch_size = 3;
    o.workers = 1;
    const auto out = thor::translate_lines(st.model, st.vocab, lines, o, torch::kCPU);
    check(out.size() == lines.size(), "one output per input line");
    for (size_t i = 0; i < lines.size(); ++i) {
      check(!out[i].empty(), "every line has a translation");
      if (thor::is_blank(lines[i])) check(out[i].front().text.empty(), "a blank line gives an empty translation");
      check(thor::is_valid_utf8(out[i].front().text), "translations are valid UTF-8");
    }
  });
  return 0;
}
