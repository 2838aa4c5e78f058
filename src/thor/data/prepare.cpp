// See prepare.h.
#include "thor/data/prepare.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/data/dataset.h"
#include "thor/data/meta.h"
#include "thor/data/vocab.h"

namespace fs = std::filesystem;

namespace thor {

namespace {

void write_lines_atomic(const std::string& path, const std::vector<std::string>& lines) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(tmp + ": cannot open for writing");
    for (auto& l : lines) out << l << '\n';
    if (!out) throw Error(tmp + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot rename");
}

std::string file_of(const std::string& pref, const std::string& lang) { return pref + "." + lang; }

// Encodes and writes one split; train is length-filtered, valid/test keep every
// pair that has valid UTF-8 and two non-empty sides so references stay aligned.
int64_t write_split(const std::string& name, ParallelText text, const Vocab& vocab,
                    const PrepareOptions& opt, bool filter_lengths_too, PrepareSummary* sum) {
  auto rep = filter_text(text, opt.filter);
  std::vector<std::vector<int>> s(text.size()), t(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    s[i] = vocab.encode(text.src[i]);
    t[i] = vocab.encode(text.tgt[i]);
  }
  FilterReport lrep;
  if (filter_lengths_too) lrep = filter_lengths(text, s, t, opt.filter);
  Dataset ds;
  for (size_t i = 0; i < text.size(); ++i) ds.add(s[i], t[i], text.line[i]);
  ds.save((fs::path(opt.destdir) / (name + ".bin")).string());
  write_lines_atomic((fs::path(opt.destdir) / (name + ".raw." + opt.src_lang)).string(), text.src);
  write_lines_atomic((fs::path(opt.destdir) / (name + ".raw." + opt.tgt_lang)).string(), text.tgt);
  THOR_LOG("prepare") << name << ": " << text.size() << " pairs kept, " << rep.removed() + lrep.removed()
                      << " removed (invalid UTF-8 " << rep.invalid_utf8 << ", empty " << rep.empty
                      << ", over-long " << lrep.too_long << ", length ratio " << lrep.bad_ratio << ")";
  if (sum && name == "train") sum->train_text = rep, sum->train_len = lrep;
  return static_cast<int64_t>(text.size());
}

}  // namespace

PrepareSummary prepare_dataset(const PrepareOptions& opt) {
  if (opt.src_lang.empty() || opt.tgt_lang.empty()) throw Error("--source-lang and --target-lang are required");
  if (opt.src_lang == opt.tgt_lang) throw Error("--source-lang and --target-lang must differ");
  if (opt.trainpref.empty()) throw Error("--trainpref is required");
  if (opt.validpref.empty()) throw Error("--validpref is required");
  if (opt.destdir.empty()) throw Error("--destdir is required");
  if (opt.vocab_size < 16) throw Error("--vocab-size must be >= 16");
  if (opt.filter.max_len < 1) throw Error("--max-len must be >= 1");
  if (opt.filter.max_ratio < 1) throw Error("--max-len-ratio must be >= 1");

  // Read everything first: a line-count mismatch fails before anything is written.
  auto train = read_parallel(file_of(opt.trainpref, opt.src_lang), file_of(opt.trainpref, opt.tgt_lang));
  auto valid = read_parallel(file_of(opt.validpref, opt.src_lang), file_of(opt.validpref, opt.tgt_lang));
  ParallelText test;
  if (!opt.testpref.empty())
    test = read_parallel(file_of(opt.testpref, opt.src_lang), file_of(opt.testpref, opt.tgt_lang));
  fs::create_directories(opt.destdir);

  // SentencePiece is trained on the clean training text of both sides (joint vocabulary).
  ParallelText clean = train;
  FilterOptions quiet = opt.filter;
  quiet.max_reports = 0;
  filter_text(clean, quiet);
  if (clean.size() == 0) throw Error(file_of(opt.trainpref, opt.src_lang) + ": no usable training pairs");
  auto spm_input = (fs::path(opt.destdir) / "spm.input.tmp").string();
  {
    std::vector<std::string> both = clean.src;
    both.insert(both.end(), clean.tgt.begin(), clean.tgt.end());
    write_lines_atomic(spm_input, both);
  }
  SpmTrainOptions so;
  so.input_files = {spm_input};
  so.model_prefix = (fs::path(opt.destdir) / "spm.tmp").string();
  so.vocab_size = opt.vocab_size;
  so.model_type = opt.spm_type;
  so.user_symbols = {lang_tag(opt.src_lang), lang_tag(opt.tgt_lang)};
  so.threads = opt.threads;
  THOR_LOG("prepare") << "training SentencePiece (" << opt.spm_type << ", " << opt.vocab_size
                      << " pieces) on " << clean.size() << " pairs";
  train_sentencepiece(so);
  fs::remove(spm_input);
  fs::rename(so.model_prefix + ".model", fs::path(opt.destdir) / "spm.model");
  fs::rename(so.model_prefix + ".vocab", fs::path(opt.destdir) / "spm.vocab");
  auto vocab = Vocab::from_file((fs::path(opt.destdir) / "spm.model").string());

  PrepareSummary sum;
  DatasetMeta meta;
  meta.src_lang = opt.src_lang;
  meta.tgt_lang = opt.tgt_lang;
  meta.vocab_size = vocab.size();
  meta.lang_tags = so.user_symbols;
  sum.train = meta.splits["train"] = write_split("train", std::move(train), vocab, opt, true, &sum);
  if (sum.train == 0) throw Error(file_of(opt.trainpref, opt.src_lang) + ": every training pair was filtered out");
  sum.valid = meta.splits["valid"] = write_split("valid", std::move(valid), vocab, opt, false, nullptr);
  if (!opt.testpref.empty()) sum.test = meta.splits["test"] = write_split("test", std::move(test), vocab, opt, false, nullptr);
  write_meta(opt.destdir, meta);
  return sum;
}

}  // namespace thor
