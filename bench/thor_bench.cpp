// thor_bench: the performance harness of issue 5. It runs the real `thor` binary next to
// it as child processes (so every figure is what a user gets, and each child's peak RSS is
// its own), reads the per-update JSON log and the translator's timing line, measures the
// machine's matmul peak in the same run, and writes one Markdown table and one JSON file.
//   thor_bench --data ../shared/data/multi30k --out bench/results
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/common/runtime.h"
#include "thor/ops/gemm.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct ChildResult {
  int status = -1;
  double wall_s = 0;
  double max_rss_mb = 0;
};

// Runs argv with stdout/stderr redirected to files; returns exit status, wall time and the
// child's peak resident set (wait4's rusage).
ChildResult run_child(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
  std::string line;
  for (auto& a : argv) line += a + " ";
  THOR_LOG("bench") << line;
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid < 0) throw thor::Error("fork failed");
  if (pid == 0) {
    if (!freopen(out.c_str(), "w", stdout) || !freopen(err.c_str(), "w", stderr)) _exit(127);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  ChildResult r;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.max_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
  if (r.status != 0) throw thor::Error("'" + line + "' failed (exit " + std::to_string(r.status) + "); see " + err.string());
  return r;
}

struct Stats {
  double median = 0, min = 0, max = 0;
};
Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front(), s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  return s;
}

struct System {
  std::string name;
  std::vector<std::string> flags;
};

const std::vector<System> kSystems = {
    {"dense", {}},
    {"thor2", {"--num-experts", "2", "--router", "thor", "--consistency-alpha", "5"}},
    {"switch4", {"--num-experts", "4", "--router", "switch"}},
};

const System& find_system(const std::string& name, const std::string& option) {
  auto it = std::find_if(kSystems.begin(), kSystems.end(), [&](const System& s) { return s.name == name; });
  if (it == kSystems.end()) throw thor::Error(option + ": unknown system '" + name + "' (dense, thor2, switch4)");
  return *it;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) if (!item.empty()) out.push_back(item);
  return out;
}

std::string fmt(double v, int digits = 0) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  thor::runtime::ensure_fast_blas(argc, argv);
  thor::runtime::tune_allocator();
  CLI::App app{"thor performance harness: training and decoding throughput, FLOP rate, peak RSS"};
  std::string data = "../shared/data/multi30k", out_dir = "bench/results", src = "de", tgt = "en";
  std::string archs = "transformer_tiny,transformer_iwslt_de_en", systems = "dense,thor2,switch4";
  std::string decode_systems = "dense,thor2";
  std::string train_precisions = "float32,bf16";
  int warmup = 5, updates = 20, decode_train_updates = 1000, threads = 0, decode_sentences = 0, train_workers = 0;
  bool skip_train = false, skip_decode = false;
  app.add_option("--data", data, "raw corpus dir: {train,valid,test_2016_flickr}.{src,tgt}")->capture_default_str();
  app.add_option("--out", out_dir, "results, prepared data and models")->capture_default_str();
  app.add_option("--source", src)->capture_default_str();
  app.add_option("--target", tgt)->capture_default_str();
  app.add_option("--archs", archs, "comma-separated presets")->capture_default_str();
  app.add_option("--systems", systems, "comma-separated: dense, thor2, switch4")->capture_default_str();
  app.add_option("--warmup", warmup, "updates not timed")->capture_default_str();
  app.add_option("--updates", updates, "timed updates (medians over these)")->capture_default_str();
  app.add_option("--decode-systems", decode_systems)->capture_default_str();
  app.add_option("--train-precisions", train_precisions, "comma-separated: float32, bf16 (train --precision)")
      ->capture_default_str();
  app.add_option("--train-workers", train_workers, "train --workers for the training rows (0 = one per thread)")
      ->capture_default_str();
  app.add_option("--decode-train-updates", decode_train_updates,
                 "updates of the transformer_tiny models trained for decoding (kept in OUT/models)")
      ->capture_default_str();
  app.add_option("--decode-sentences", decode_sentences, "decode only the first N test sentences (0 = all)")
      ->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads for every child (0 = all cores)")->capture_default_str();
  app.add_flag("--skip-train", skip_train);
  app.add_flag("--skip-decode", skip_decode);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    thor::runtime::set_threads(threads);
    const std::string thor_bin = (fs::canonical("/proc/self/exe").parent_path() / "thor").string();
    const fs::path out = fs::absolute(out_dir);
    fs::create_directories(out / "logs");
    const std::vector<std::string> common = {"--threads", std::to_string(threads)};
    auto with_common = [&](std::vector<std::string> v) {
      v.insert(v.begin() + 1, common.begin(), common.end());
      return v;
    };
    json report;
    report["blas_core"] = thor::runtime::blas_core();
    report["threads"] = at::get_num_threads();
    report["gemm_backend"] = thor::gemm_backend();
    // The peak: the faster of LibTorch's mm (system BLAS) and the model's own gemm path.
    auto peak_now = [] {
      return std::max(thor::runtime::measure_matmul_gflops(2048, 10, torch::kCPU), thor::measure_gemm_gflops(2048, 10));
    };
    // bf16 rows are compared with the bf16 product's own peak (same 2048^3 shape, model path)
    auto bf16_peak_now = [] {
      if (!thor::precision_available(thor::Precision::BFloat16)) return 0.0;
      thor::PrecisionGuard bf16(thor::Precision::BFloat16);
      return thor::measure_gemm_gflops(2048, 10);
    };
    report["matmul_gflops_start"] = peak_now();
    report["bf16_gflops_start"] = bf16_peak_now();
    THOR_LOG("bench") << "matmul peak (2048^3, median of 10): " << report["matmul_gflops_start"].get<double>()
                      << " GFLOP/s on " << at::get_num_threads() << " threads";

    const fs::path prepared = out / ("data-" + src + tgt);
    if (!fs::exists(prepared / "meta.json"))
      run_child(with_common({thor_bin, "prepare", "-s", src, "-t", tgt, "--trainpref", data + "/train", "--validpref",
                             data + "/valid", "--testpref", data + "/test_2016_flickr", "--destdir", prepared.string(),
                             "--vocab-size", "8000"}),
                out / "logs/prepare.out", out / "logs/prepare.err");

    auto train_args = [&](const std::string& arch, const System& sys, const fs::path& dir, int max_update,
                          int log_interval) {
      std::vector<std::string> a = {thor_bin, "train", prepared.string(), "--arch", arch, "--share-all-embeddings",
                                    "--dropout", "0.3", "--lr", "1e-3", "--warmup-updates", "200",
                                    "--weight-decay", "1e-4", "--max-tokens", "4096", "--max-update",
                                    std::to_string(max_update), "--log-interval", std::to_string(log_interval),
                                    "--no-progress", "--save-dir", dir.string(), "--device", "auto"};
      a.insert(a.end(), sys.flags.begin(), sys.flags.end());
      return with_common(a);
    };

    json train_rows = json::array();
    if (!skip_train) {
      for (auto& arch : split(archs)) {
        for (auto& name : split(systems)) for (auto& precision : split(train_precisions)) {
          const System sys = find_system(name, "--systems");
          const std::string run_name = name + (precision == "float32" ? "" : "-" + precision);
          fs::path dir = out / "train" / (arch + "-" + run_name);
          fs::remove_all(dir);
          auto args = train_args(arch, sys, dir, warmup + updates, 1);
          args.insert(args.end(), {"--precision", precision, "--workers", std::to_string(train_workers)});
          // one quick validation at the very end only
          args.insert(args.end(), {"--validate-interval-updates", "1000000", "--eval-max-sentences", "5",
                                   "--eval-beam", "1"});
          auto r = run_child(args, out / "logs" / (arch + "-" + run_name + ".out"),
                             out / "logs" / (arch + "-" + run_name + ".err"));
          std::vector<double> sec, tgt_tok, src_tok, gflop;
          std::ifstream log(dir / "train_log.jsonl");
          std::string line;
          while (std::getline(log, line)) {
            auto j = json::parse(line);
            if (!j.contains("s_per_update") || j.at("update").get<int>() <= warmup) continue;
            sec.push_back(j.at("s_per_update"));
            tgt_tok.push_back(j.at("tgt_tok_s"));
            src_tok.push_back(j.at("src_tok_s").get<double>() + j.at("tgt_tok_s").get<double>());
            gflop.push_back(j.at("gflop_s"));
          }
          if (sec.size() < static_cast<size_t>(updates)) throw thor::Error(dir.string() + ": too few logged updates");
          auto s = stats(sec), t = stats(tgt_tok), st = stats(src_tok), g = stats(gflop);
          train_rows.push_back({{"arch", arch}, {"system", name}, {"precision", precision},
                                {"workers", train_workers > 0 ? std::to_string(train_workers) : "auto"},
                                {"updates", sec.size()},
                                {"s_per_update", s.median}, {"s_per_update_min", s.min}, {"s_per_update_max", s.max},
                                {"tgt_tok_s", t.median}, {"tgt_tok_s_min", t.min}, {"tgt_tok_s_max", t.max},
                                {"src_tgt_tok_s", st.median}, {"gflop_s", g.median}, {"peak_rss_mb", r.max_rss_mb}});
          THOR_LOG("bench") << arch << " " << run_name << ": " << t.median << " tgt tok/s, " << s.median
                            << " s/update, " << g.median << " GFLOP/s, " << r.max_rss_mb << " MB";
        }
      }
    }

    json decode_rows = json::array(), memory_rows = json::array();
    if (!skip_decode) {
      // the shortlist for the "shortlist" decoding rows, from the prepared training data (defaults)
      const fs::path shortlist = out / "shortlist.txt";
      if (!fs::exists(shortlist))
        run_child(with_common({thor_bin, "shortlist", prepared.string(), "--out", shortlist.string()}),
                  out / "logs/shortlist.out", out / "logs/shortlist.err");
      std::string input = data + "/test_2016_flickr." + src, reference = data + "/test_2016_flickr." + tgt;
      if (decode_sentences > 0) {  // a prefix of the test set (source and reference), written once
        auto head = [&](std::string& path, const std::string& lang) {
          std::ifstream in(path);
          fs::path cut = out / ("test-head" + std::to_string(decode_sentences) + "." + lang);
          std::ofstream o(cut);
          std::string line;
          for (int i = 0; i < decode_sentences && std::getline(in, line); ++i) o << line << "\n";
          path = cut.string();
        };
        head(input, src);
        head(reference, tgt);
      }
      for (auto& name : split(decode_systems)) {
        const System sys = find_system(name, "--decode-systems");
        fs::path dir = out / "models" / ("transformer_tiny-" + name);
        fs::path model = dir / "checkpoint_last.pt";
        if (!fs::exists(model) || !fs::exists(dir / "done")) {
          // resumable: a run cut short continues from its last checkpoint
          auto args = train_args("transformer_tiny", sys, dir, decode_train_updates, 50);
          args.insert(args.end(), {"--resume", "--validate-interval-updates", "250", "--eval-max-sentences", "200"});
          run_child(args, out / "logs" / ("model-" + name + ".out"), out / "logs" / ("model-" + name + ".err"));
          std::ofstream(dir / "done") << decode_train_updates << "\n";
        }
        {  // memory over the model's training run: resident size at each log line
          std::ifstream log(dir / "train_log.jsonl");
          std::string line;
          std::vector<std::pair<int64_t, double>> rss;
          while (std::getline(log, line)) {
            auto j = json::parse(line);
            if (j.contains("rss_mb")) rss.emplace_back(j.at("update").get<int64_t>(), j.at("rss_mb").get<double>());
          }
          if (rss.size() >= 2) {
            // from the second log line on (the first includes the allocator's warm-up)
            auto first = rss[1], last = rss.back();
            double hi = 0;
            for (auto& r : rss) hi = std::max(hi, r.second);
            memory_rows.push_back({{"system", name}, {"from_update", first.first}, {"to_update", last.first},
                                   {"rss_mb_from", first.second}, {"rss_mb_to", last.second}, {"rss_mb_max", hi}});
            THOR_LOG("bench") << name << " training RSS: " << first.second << " MB at update " << first.first << ", "
                              << last.second << " MB at update " << last.first;
          }
        }
        // beam 1/5 x batch 1/64 over the whole vocabulary in float32, then beam 5 x batch 64 with
        // the shortlist and the low precisions. Batch 1 is timed as latency: one worker, all
        // threads on one sentence; batch 64 with the default workers (one per thread).
        struct DecodeRun {
          int beam, batch;
          bool shortlist;
          std::string precision;
        };
        for (auto [beam, batch, use_shortlist, precision] :
             {DecodeRun{1, 1, false, "float32"}, DecodeRun{1, 64, false, "float32"}, DecodeRun{5, 1, false, "float32"},
              DecodeRun{5, 64, false, "float32"}, DecodeRun{5, 64, true, "float32"}, DecodeRun{5, 64, false, "bf16"},
              DecodeRun{5, 64, false, "int8"}, DecodeRun{5, 64, true, "int8"}, DecodeRun{5, 1, true, "int8"}}) {
          if (precision != "float32" && !thor::precision_available(thor::parse_precision(precision))) continue;
          const int workers = batch == 1 ? 1 : 0;
          std::string tag = name + "-beam" + std::to_string(beam) + "-batch" + std::to_string(batch) +
                            (use_shortlist ? "-shortlist" : "") + (precision == "float32" ? "" : "-" + precision);
          auto args = with_common({thor_bin, "translate", "--model", model.string(), "--beam", std::to_string(beam),
                                   "--batch-size", std::to_string(batch), "--input", input, "--device", "auto",
                                   "--precision", precision, "--workers", std::to_string(workers)});
          if (use_shortlist) args.insert(args.end(), {"--shortlist", shortlist.string()});
          auto r = run_child(args, out / "logs" / (tag + ".hyp"), out / "logs" / (tag + ".err"));
          // "[translate] decoded N sentences, M target tokens in X s: ..."
          std::ifstream err(out / "logs" / (tag + ".err"));
          std::string line;
          double n = 0, m = 0, secs = 0;
          while (std::getline(err, line)) {
            auto p = line.find("decoded ");
            if (p == std::string::npos) continue;
            std::sscanf(line.c_str() + p, "decoded %lf sentences, %lf target tokens in %lf s", &n, &m, &secs);
          }
          if (secs <= 0) throw thor::Error((out / "logs" / (tag + ".err")).string() + ": no timing line");
          // quality of what was timed: BLEU of the output against the reference
          run_child({thor_bin, "score", reference, "-i", (out / "logs" / (tag + ".hyp")).string()},
                    out / "logs" / (tag + ".bleu"), out / "logs" / (tag + ".bleu.err"));
          double bleu = -1;
          {
            std::ifstream b(out / "logs" / (tag + ".bleu"));
            std::string first;
            std::getline(b, first);
            std::sscanf(first.c_str(), "BLEU = %lf", &bleu);
          }
          decode_rows.push_back({{"system", name}, {"beam", beam}, {"batch", batch}, {"shortlist", use_shortlist},
                                 {"precision", precision}, {"workers", workers == 1 ? "1" : "auto"},
                                 {"sentences", n}, {"bleu", bleu},
                                 {"sent_s", n / secs}, {"tgt_tok_s", m / secs}, {"tokens_per_sentence", m / n},
                                 {"ms_per_sentence", 1000.0 * secs / n}, {"peak_rss_mb", r.max_rss_mb},
                                 {"wall_s_with_load", r.wall_s}});
          THOR_LOG("bench") << tag << ": " << n / secs << " sentences/s, " << m / secs << " tokens/s";
        }
      }
    }

    report["matmul_gflops_end"] = peak_now();
    report["bf16_gflops_end"] = bf16_peak_now();
    const double peak = std::max(report["matmul_gflops_start"].get<double>(), report["matmul_gflops_end"].get<double>());
    const double bf16_peak =
        std::max(report["bf16_gflops_start"].get<double>(), report["bf16_gflops_end"].get<double>());
    report["matmul_gflops_peak"] = peak;
    report["bf16_gflops_peak"] = bf16_peak;
    for (auto& r : train_rows) {
      const bool bf16 = r["precision"].get<std::string>() == "bf16";
      r["fraction_of_peak"] = r["gflop_s"].get<double>() / (bf16 ? bf16_peak : peak);
      r["fraction_of_float32_peak"] = r["gflop_s"].get<double>() / peak;
    }
    report["train"] = train_rows;
    report["decode"] = decode_rows;
    report["train_memory"] = memory_rows;

    std::ostringstream md;
    md << "Matmul peak (2048^3 sgemm, " << report["threads"].get<int>() << " threads, BLAS "
       << report["blas_core"].get<std::string>() << ", model gemm " << report["gemm_backend"].get<std::string>() << "): " << fmt(peak) << " GFLOP/s (start "
       << fmt(report["matmul_gflops_start"].get<double>()) << ", end "
       << fmt(report["matmul_gflops_end"].get<double>()) << "); bf16 products (same shape, model path): "
       << fmt(bf16_peak) << " GFLOP/s\n\n";
    if (!train_rows.empty()) {
      md << "| arch | system | precision | workers | tgt tok/s (min-max) | src+tgt tok/s | s/update | GFLOP/s | of peak "
            "(own precision) | of float32 peak | peak RSS MB |\n"
         << "|---|---|---|---|---|---|---|---|---|---|---|\n";
      for (auto& r : train_rows)
        md << "| " << r["arch"].get<std::string>() << " | " << r["system"].get<std::string>() << " | "
           << r["precision"].get<std::string>() << " | " << r["workers"].get<std::string>() << " | "
           << fmt(r["tgt_tok_s"]) << " (" << fmt(r["tgt_tok_s_min"]) << "-" << fmt(r["tgt_tok_s_max"]) << ") | "
           << fmt(r["src_tgt_tok_s"]) << " | " << fmt(r["s_per_update"], 3) << " | " << fmt(r["gflop_s"]) << " | "
           << fmt(100.0 * r["fraction_of_peak"].get<double>()) << "% | "
           << fmt(100.0 * r["fraction_of_float32_peak"].get<double>()) << "% | " << fmt(r["peak_rss_mb"]) << " |\n";
      md << "\n";
    }
    if (!decode_rows.empty()) {
      md << "| system | beam | batch | vocabulary | precision | workers | sentences/s | tgt tok/s | tokens/sentence | "
            "ms/sentence | BLEU | peak RSS MB |\n"
         << "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
      for (auto& r : decode_rows)
        md << "| " << r["system"].get<std::string>() << " | " << r["beam"].get<int>() << " | " << r["batch"].get<int>()
           << " | " << (r["shortlist"].get<bool>() ? "shortlist" : "full") << " | "
           << r["precision"].get<std::string>() << " | " << r["workers"].get<std::string>() << " | " << fmt(r["sent_s"], 1) << " | " << fmt(r["tgt_tok_s"]) << " | "
           << fmt(r["tokens_per_sentence"], 1) << " | " << fmt(r["ms_per_sentence"], 1) << " | "
           << fmt(r["bleu"], 2) << " | " << fmt(r["peak_rss_mb"]) << " |\n";
    }
    if (!memory_rows.empty()) {
      md << "\n| training run (transformer_tiny) | RSS MB at update | RSS MB at update | max RSS MB |\n|---|---|---|---|\n";
      for (auto& r : memory_rows)
        md << "| " << r["system"].get<std::string>() << " | " << fmt(r["rss_mb_from"]) << " @ "
           << r["from_update"].get<int64_t>() << " | " << fmt(r["rss_mb_to"]) << " @ " << r["to_update"].get<int64_t>()
           << " | " << fmt(r["rss_mb_max"]) << " |\n";
    }
    auto write = [&](const fs::path& p, const std::string& text) {
      auto tmp = p.string() + ".tmp";
      std::ofstream(tmp) << text;
      fs::rename(tmp, p);
    };
    write(out / "bench.json", report.dump(2) + "\n");
    write(out / "bench.md", md.str());
    std::cout << md.str();
  } catch (const std::exception& e) {
    std::cerr << "thor_bench: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
