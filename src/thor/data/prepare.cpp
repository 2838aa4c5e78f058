// See prepare.h.
#include "thor/data/prepare.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "thor/common/error.h"
#include "thor/common/progress.h"
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

// A pair's file of `lang`: PREF.SRC-TGT.LANG when it exists (fairseq's multilingual layout,
// pairs of their own sizes), else PREF.LANG (multi-way parallel files).
std::string pair_file(const std::string& pref, const LangPair& pair, const std::string& lang) {
  const std::string own = pref + "." + pair.name() + "." + lang;
  return fs::exists(own) ? own : file_of(pref, lang);
}

// One split of one language pair, encoded (the target tag first on a tagged source): train
// is length-filtered, valid/test keep every pair that has valid UTF-8 and two non-empty
// sides so references stay aligned. Appends to `ds` and writes the pair's raw text.
int64_t encode_split(const std::string& name, ParallelText text, const Vocab& vocab, const PrepareOptions& opt,
                     const DatasetMeta& meta, size_t p, bool filter_lengths_too, Dataset& ds, PrepareSummary* sum) {
  const auto& pair = meta.pairs[p];
  auto rep = filter_text(text, opt.filter);
  std::vector<std::vector<int>> s(text.size()), t(text.size());
  const int tag = meta.target_tags ? vocab.piece_to_id(lang_tag(pair.tgt)) : -1;
  // a progress line on a terminal for large splits
  Progress bar("prepare " + (meta.target_tags ? pair.name() + " " : "") + name, static_cast<int64_t>(text.size()), "pairs",
               text.size() >= 20000 && Progress::stderr_is_terminal());
  for (size_t i = 0; i < text.size(); ++i) {
    s[i] = vocab.encode(text.src[i]);
    if (tag >= 0) s[i].insert(s[i].begin(), tag);
    t[i] = vocab.encode(text.tgt[i]);
    if (i % 1000 == 999) bar.update(static_cast<int64_t>(i) + 1);
  }
  bar.update(static_cast<int64_t>(text.size()));
  bar.finish();
  FilterReport lrep;
  if (filter_lengths_too) lrep = filter_lengths(text, s, t, opt.filter);
  for (size_t i = 0; i < text.size(); ++i) ds.add(s[i], t[i], text.line[i]);
  write_lines_atomic(raw_file(opt.destdir, meta, name, p, pair.src), text.src);
  write_lines_atomic(raw_file(opt.destdir, meta, name, p, pair.tgt), text.tgt);
  THOR_LOG("prepare") << (meta.target_tags ? pair.name() + " " : "") << name << ": " << text.size()
                      << " pairs kept, " << rep.removed() + lrep.removed() << " removed (invalid UTF-8 "
                      << rep.invalid_utf8 << ", empty " << rep.empty << ", over-long " << lrep.too_long
                      << ", length ratio " << lrep.bad_ratio << ")";
  if (sum && name == "train") {
    sum->train_text.invalid_utf8 += rep.invalid_utf8, sum->train_text.empty += rep.empty;
    sum->train_text.kept += rep.kept;
    sum->train_len.too_long += lrep.too_long, sum->train_len.bad_ratio += lrep.bad_ratio;
    sum->train_len.kept += lrep.kept;
  }
  return static_cast<int64_t>(text.size());
}

struct PairText {
  ParallelText train, valid, test;
};

}  // namespace

PrepareSummary prepare_dataset(const PrepareOptions& opt) {
  DatasetMeta meta;
  meta.target_tags = !opt.lang_pairs.empty();
  if (meta.target_tags) {
    if (!opt.src_lang.empty() || !opt.tgt_lang.empty())
      throw Error("give either --lang-pairs or --source-lang and --target-lang, not both");
    meta.pairs = parse_lang_pairs(opt.lang_pairs);
  } else {
    if (opt.src_lang.empty() || opt.tgt_lang.empty())
      throw Error("--source-lang and --target-lang are required (or --lang-pairs)");
    if (opt.src_lang == opt.tgt_lang) throw Error("--source-lang and --target-lang must differ");
    meta.pairs = {{opt.src_lang, opt.tgt_lang, {}}};
  }
  if (opt.trainpref.empty()) throw Error("--trainpref is required");
  if (opt.validpref.empty()) throw Error("--validpref is required");
  if (opt.destdir.empty()) throw Error("--destdir is required");
  if (opt.vocab_size < 16) throw Error("--vocab-size must be >= 16");
  if (opt.filter.max_len < 1) throw Error("--max-len must be >= 1");
  if (opt.filter.max_ratio < 1) throw Error("--max-len-ratio must be >= 1");

  // Read everything first: a line-count mismatch fails before anything is written.
  std::vector<PairText> texts;
  for (const auto& pair : meta.pairs) {
    PairText t;
    auto read = [&](const std::string& pref) {
      return read_parallel(pair_file(pref, pair, pair.src), pair_file(pref, pair, pair.tgt));
    };
    t.train = read(opt.trainpref);
    t.valid = read(opt.validpref);
    if (!opt.testpref.empty()) t.test = read(opt.testpref);
    texts.push_back(std::move(t));
  }
  fs::create_directories(opt.destdir);

  // SentencePiece is trained on the clean training text of every language (joint
  // vocabulary), each file once.
  std::vector<std::string> spm_lines, languages, files;
  auto add_language = [&](const std::string& lang, const std::vector<std::string>& lines) {
    if (std::find(languages.begin(), languages.end(), lang) == languages.end()) languages.push_back(lang);
    spm_lines.insert(spm_lines.end(), lines.begin(), lines.end());
  };
  for (size_t p = 0; p < meta.pairs.size(); ++p) {
    ParallelText clean = texts[p].train;
    FilterOptions quiet = opt.filter;
    quiet.max_reports = 0;
    auto rep = filter_text(clean, quiet);
    if (clean.size() == 0)
      throw Error(texts[p].train.src_path + ": no usable training pairs (" + std::to_string(rep.invalid_utf8) +
                  " with invalid UTF-8, " + std::to_string(rep.empty) + " with an empty side)");
    for (const bool source : {true, false}) {
      const auto& path = source ? texts[p].train.src_path : texts[p].train.tgt_path;
      if (std::find(files.begin(), files.end(), path) != files.end()) continue;
      files.push_back(path);
      add_language(source ? meta.pairs[p].src : meta.pairs[p].tgt, source ? clean.src : clean.tgt);
    }
  }
  auto spm_input = (fs::path(opt.destdir) / "spm.input.tmp").string();
  write_lines_atomic(spm_input, spm_lines);
  SpmTrainOptions so;
  so.input_files = {spm_input};
  so.model_prefix = (fs::path(opt.destdir) / "spm.tmp").string();
  so.vocab_size = opt.vocab_size;
  so.model_type = opt.spm_type;
  if (meta.target_tags) {
    std::vector<std::string> sorted = languages;
    std::sort(sorted.begin(), sorted.end());
    for (const auto& l : sorted) so.user_symbols.push_back(lang_tag(l));
  } else {
    so.user_symbols = {lang_tag(opt.src_lang), lang_tag(opt.tgt_lang)};
  }
  so.threads = opt.threads;
  THOR_LOG("prepare") << "training SentencePiece (" << opt.spm_type << ", " << opt.vocab_size << " pieces) on "
                      << spm_lines.size() << " sentences of " << languages.size() << " languages";
  train_sentencepiece(so);
  fs::remove(spm_input);
  fs::rename(so.model_prefix + ".model", fs::path(opt.destdir) / "spm.model");
  fs::rename(so.model_prefix + ".vocab", fs::path(opt.destdir) / "spm.vocab");
  auto vocab = Vocab::from_file((fs::path(opt.destdir) / "spm.model").string());

  PrepareSummary sum;
  std::set<std::string> srcs, tgts;
  for (const auto& pair : meta.pairs) srcs.insert(pair.src), tgts.insert(pair.tgt);
  auto join = [](const std::set<std::string>& v) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : ",") + x;
    return out;
  };
  meta.src_lang = meta.target_tags ? join(srcs) : opt.src_lang;
  meta.tgt_lang = meta.target_tags ? join(tgts) : opt.tgt_lang;
  meta.vocab_size = vocab.size();
  meta.lang_tags = so.user_symbols;
  auto split = [&](const std::string& name, ParallelText PairText::*member, bool train) {
    Dataset ds;
    int64_t total = 0;
    for (size_t p = 0; p < meta.pairs.size(); ++p) {
      const std::string src_path = (texts[p].*member).src_path;
      auto n = encode_split(name, std::move(texts[p].*member), vocab, opt, meta, p, train, ds, train ? &sum : nullptr);
      if (train && n == 0) throw Error(src_path + ": every training pair was filtered out");
      meta.pairs[p].splits[name] = n;
      total += n;
    }
    ds.save((fs::path(opt.destdir) / (name + ".bin")).string());
    meta.splits[name] = total;
    return total;
  };
  sum.train = split("train", &PairText::train, true);
  sum.valid = split("valid", &PairText::valid, false);
  if (!opt.testpref.empty()) sum.test = split("test", &PairText::test, false);
  if (meta.target_tags) {
    std::ostringstream os;
    for (const auto& pair : meta.pairs)
      os << " " << pair.name() << " " << pair.splits.at("train") << "/" << pair.splits.at("valid");
    THOR_LOG("prepare") << meta.pairs.size() << " language pairs (train/valid):" << os.str();
  }
  sum.pairs = meta.pairs;
  write_meta(opt.destdir, meta);
  return sum;
}

}  // namespace thor
