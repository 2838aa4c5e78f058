// `thor prepare`: fairseq-preprocess-like flags -> validated, encoded dataset directory.
#include <torch/torch.h>

#include "cli/commands.h"
#include "thor/data/prepare.h"

namespace thor::cli {

void add_prepare(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("prepare", "validate parallel text, train SentencePiece, encode");
  static PrepareOptions o;
  cmd->add_option("--source-lang,-s", o.src_lang, "source language suffix (P.<src>)");
  cmd->add_option("--target-lang,-t", o.tgt_lang, "target language suffix (P.<tgt>)");
  cmd->add_option("--lang-pairs", o.lang_pairs,
                  "multilingual instead of -s/-t: SRC-TGT,... over P.<lang> files (one joint SentencePiece "
                  "model; the target language's tag <2tgt> starts every source)");
  cmd->add_option("--trainpref", o.trainpref, "training files prefix")->required();
  cmd->add_option("--validpref", o.validpref, "validation files prefix")->required();
  cmd->add_option("--testpref", o.testpref, "test files prefix");
  cmd->add_option("--destdir", o.destdir, "output directory")->required();
  cmd->add_option("--vocab-size", o.vocab_size, "joint SentencePiece vocabulary size")->capture_default_str();
  cmd->add_option("--spm-type", o.spm_type, "bpe or unigram")->check(CLI::IsMember({"bpe", "unigram"}))->capture_default_str();
  cmd->add_option("--max-len", o.filter.max_len, "drop training pairs with a side longer than this (tokens)")->capture_default_str();
  cmd->add_option("--max-len-ratio", o.filter.max_ratio, "drop training pairs whose length ratio exceeds this")->capture_default_str();
  cmd->callback([&common] {
    apply_common(common);
    o.threads = at::get_num_threads();
    prepare_dataset(o);
  });
}

}  // namespace thor::cli
