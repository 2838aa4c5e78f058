// See report.h.
#include "thor/report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "thor/common/error.h"
#include "thor/common/file_io.h"
#include "thor/report/chart.h"

namespace fs = std::filesystem;

namespace thor::report {

namespace {

struct Chart {
  std::string id, svg;
};

double num(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : std::numeric_limits<double>::quiet_NaN();
}

// One series per run of (x_key, y_key) over its train or valid lines; x scaled by x_scale.
std::vector<Series> series_of(const std::vector<RunLog>& runs, bool valid, const char* x_key, double x_scale,
                              const char* y_key) {
  std::vector<Series> out;
  for (const auto& r : runs) {
    Series s{r.name, {}, valid};
    for (const auto& j : valid ? r.valid : r.train) {
      const double x = num(j, x_key) * x_scale, y = num(j, y_key);
      if (std::isfinite(x) && std::isfinite(y)) s.points.emplace_back(x, y);
    }
    out.push_back(std::move(s));
  }
  return out;
}

bool any_points(const std::vector<Series>& s) {
  for (const auto& x : s)
    if (!x.points.empty()) return true;
  return false;
}

std::vector<Chart> charts_of(const std::vector<RunLog>& runs) {
  std::vector<Chart> charts;
  auto add = [&](const std::string& id, const std::vector<Series>& s, ChartOptions o) {
    if (any_points(s)) charts.push_back({id, line_chart(s, o)});
  };
  add("train-loss-updates", series_of(runs, false, "update", 1, "loss"), {"training loss", "updates", "loss (bits/token)", true});
  add("train-loss-minutes", series_of(runs, false, "elapsed_s", 1.0 / 60, "loss"),
      {"training loss against wall-clock", "minutes", "loss (bits/token)", true});
  add("valid-loss-updates", series_of(runs, true, "update", 1, "valid_loss"), {"validation loss", "updates", "loss (bits/token)"});
  const auto bleu_by_update = series_of(runs, true, "update", 1, "valid_bleu");
  add("valid-bleu-updates", bleu_by_update, {"validation BLEU", "updates", "BLEU"});
  // the second half of training alone: the early climb (from ~0 BLEU) sets the whole chart's
  // scale, and the runs' differences near convergence are a few tenths of it
  double last = 0;
  for (const auto& s : bleu_by_update)
    for (const auto& p : s.points) last = std::max(last, p.first);
  auto late = bleu_by_update;
  for (auto& s : late)
    s.points.erase(std::remove_if(s.points.begin(), s.points.end(), [&](const auto& p) { return p.first < last / 2; }),
                   s.points.end());
  add("valid-bleu-late", late, {"validation BLEU, second half of training", "updates", "BLEU"});
  add("valid-bleu-minutes", series_of(runs, true, "elapsed_s", 1.0 / 60, "valid_bleu"),
      {"validation BLEU against wall-clock", "minutes", "BLEU"});
  // against wall-clock at the run's pace: each validation at update x the pace measured apart
  // (--seconds-per-update), else x the median of the run's logged seconds per update. A long
  // run is paused and shares its machine (stopped for a benchmark, resumed in a later
  // session): elapsed_s counts those gaps, the median of the per-interval seconds does not
  std::vector<Series> by_pace;
  for (const auto& r : runs) {
    double pace = r.seconds_per_update;
    if (pace <= 0) {
      std::vector<double> spu;
      for (const auto& j : r.train)
        if (const double v = num(j, "s_per_update"); std::isfinite(v) && v > 0) spu.push_back(v);
      std::sort(spu.begin(), spu.end());
      const size_t n = spu.size();
      if (n) pace = n % 2 ? spu[n / 2] : (spu[n / 2 - 1] + spu[n / 2]) / 2;
    }
    Series s{r.name, {}, true};
    if (pace > 0)
      for (const auto& j : r.valid) {
        const double u = num(j, "update"), bleu = num(j, "valid_bleu");
        if (std::isfinite(u) && std::isfinite(bleu)) s.points.emplace_back(u * pace / 60, bleu);
      }
    by_pace.push_back(std::move(s));
  }
  add("valid-bleu-pace", by_pace, {"validation BLEU against wall-clock, pauses left out", "minutes (updates x seconds per update)", "BLEU"});
  // against training compute: the FLOPs done up to each validation, summed from the
  // training lines (achieved GFLOP/s x seconds per update x updates of each interval); THOR
  // pays two passes per update, so this is the "same compute" view of the paper's claim
  std::vector<Series> by_flops;
  for (const auto& r : runs) {
    std::vector<std::pair<double, double>> cum;  // (update, PFLOP done by then)
    double total = 0, prev = 0;
    for (const auto& j : r.train) {
      const double u = num(j, "update"), rate = num(j, "gflop_s"), spu = num(j, "s_per_update");
      if (std::isfinite(u) && std::isfinite(rate) && std::isfinite(spu)) total += rate * 1e9 * spu * (u - prev) / 1e15;
      if (std::isfinite(u)) prev = u, cum.emplace_back(u, total);
    }
    Series s{r.name, {}, true};
    for (const auto& j : r.valid) {
      const double u = num(j, "update"), bleu = num(j, "valid_bleu");
      auto it = std::find_if(cum.begin(), cum.end(), [&](const auto& c) { return c.first >= u; });
      if (std::isfinite(bleu) && it != cum.end() && it->first == u) s.points.emplace_back(it->second, bleu);
    }
    by_flops.push_back(std::move(s));
  }
  add("valid-bleu-flops", by_flops, {"validation BLEU against training compute", "PFLOP", "BLEU"});
  // multilingual: BLEU per language pair
  std::vector<Series> pairs;
  for (const auto& r : runs) {
    std::map<std::string, Series> by_pair;
    for (const auto& j : r.valid)
      for (const auto& p : j.value("valid_pairs", nlohmann::json::array()))
        if (p.contains("bleu") && p.contains("pair")) {
          auto& s = by_pair[p["pair"].get<std::string>()];
          s.name = r.name + " " + p["pair"].get<std::string>(), s.markers = true;
          s.points.emplace_back(num(j, "update"), num(p, "bleu"));
        }
    for (auto& [k, s] : by_pair) pairs.push_back(std::move(s));
  }
  add("valid-bleu-pairs", pairs, {"validation BLEU per language pair", "updates", "BLEU"});
  add("lr", series_of(runs, false, "update", 1, "lr"), {"learning rate", "updates", "lr"});
  add("tokens-per-second", series_of(runs, false, "update", 1, "tgt_tok_s"), {"training speed", "updates", "target tokens/s"});
  add("gnorm", series_of(runs, false, "update", 1, "gnorm"), {"gradient norm", "updates", "norm"});
  // runs without a consistency term (Switch, random routing) log it as 0: left out
  auto consistency = series_of(runs, false, "update", 1, "consistency");
  for (auto& s : consistency)
    if (std::all_of(s.points.begin(), s.points.end(), [](const auto& p) { return p.second == 0; })) s.points.clear();
  add("consistency", consistency, {"consistency loss (THOR)", "updates", "per target token"});
  // the routers' own losses (balance, z-loss, ...): the mean over layers
  std::set<std::string> aux;
  for (const auto& r : runs)
    for (const auto& j : r.train)
      for (const auto& l : j.value("experts", nlohmann::json::array()))
        for (auto it = l.begin(); it != l.end(); ++it)
          if (it.key() != "layer" && it.key() != "share" && it.value().is_number()) aux.insert(it.key());
  for (const auto& key : aux) {
    std::vector<Series> s;
    for (const auto& r : runs) {
      Series x{r.name, {}, false};
      for (const auto& j : r.train) {
        double sum = 0;
        int n = 0;
        for (const auto& l : j.value("experts", nlohmann::json::array()))
          if (l.contains(key) && l[key].is_number()) sum += l[key].get<double>(), ++n;
        if (n) x.points.emplace_back(num(j, "update"), sum / n);
      }
      s.push_back(std::move(x));
    }
    add("aux-" + key, s, {key + " (mean over expert layers)", "updates", key});
  }
  // expert load: per run and layer, the share of every expert over time
  for (const auto& r : runs) {
    std::map<std::string, std::pair<std::vector<double>, std::vector<std::vector<double>>>> layers;  // name -> (xs, [expert][col])
    std::vector<std::string> order;
    for (const auto& j : r.train)
      for (const auto& l : j.value("experts", nlohmann::json::array())) {
        const auto name = l.value("layer", std::string("?"));
        auto share = l.value("share", std::vector<double>());
        if (!layers.count(name)) order.push_back(name);
        auto& [xs, rows] = layers[name];
        if (rows.size() < share.size()) rows.resize(share.size());
        xs.push_back(num(j, "update"));
        for (size_t e = 0; e < share.size(); ++e) {
          rows[e].resize(xs.size() - 1, std::numeric_limits<double>::quiet_NaN());
          rows[e].push_back(share[e]);
        }
      }
    for (const auto& name : order) {
      auto& [xs, rows] = layers[name];
      std::vector<std::string> labels;
      double hi = 0;
      for (size_t e = 0; e < rows.size(); ++e) {
        labels.push_back("expert " + std::to_string(e));
        for (double v : rows[e]) hi = std::max(hi, std::isfinite(v) ? v : 0.0);
      }
      charts.push_back({"experts-" + r.name + "-" + name,
                        heatmap(r.name + ": token share per expert, " + name, xs, labels, rows, 0, std::max(hi, 1e-9), "updates")});
    }
  }
  return charts;
}

std::string slug(std::string s) {
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') c = '_';
  return s;
}

void write_text(const std::string& path, const std::string& text) {
  DurableFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

}  // namespace

RunLog read_run(const std::string& save_dir) {
  RunLog r;
  r.dir = save_dir;
  r.name = fs::path(save_dir).filename().string();
  if (r.name.empty()) r.name = fs::path(save_dir).parent_path().filename().string();
  const auto path = (fs::path(save_dir) / "train_log.jsonl").string();
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open (is " + save_dir + " a save dir of thor train?)");
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw Error(path + ":" + std::to_string(n) + ": not a JSON line");
    }
    if (!j.is_object()) throw Error(path + ":" + std::to_string(n) + ": not a JSON object");
    if (j.contains("valid_loss")) r.valid.push_back(std::move(j));
    else if (j.contains("loss")) r.train.push_back(std::move(j));
  }
  return r;
}

void set_pace(std::vector<RunLog>& runs, const std::string& spec) {
  const auto eq = spec.rfind('=');
  const std::string name = eq == std::string::npos ? "" : spec.substr(0, eq);
  if (name.empty()) throw Error("--seconds-per-update: expected RUN=SECONDS, got '" + spec + "'");
  double v = 0;
  size_t used = 0;
  try {
    v = std::stod(spec.substr(eq + 1), &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != spec.size() - eq - 1 || !std::isfinite(v) || v <= 0)
    throw Error("--seconds-per-update: '" + spec.substr(eq + 1) + "' is not a positive number of seconds (in '" + spec + "')");
  std::string names;
  for (auto& r : runs) {
    if (r.name == name) {
      r.seconds_per_update = v;
      return;
    }
    names += (names.empty() ? "" : ", ") + r.name;
  }
  throw Error("--seconds-per-update: no run named '" + name + "' (runs: " + names + ")");
}

size_t write_report(const std::vector<RunLog>& runs, const std::string& format, const std::string& out) {
  if (runs.empty()) throw Error("report: no runs");
  const auto charts = charts_of(runs);
  if (format == "svg") {
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) throw Error(out + ": cannot create (" + ec.message() + ")");
    for (const auto& c : charts) write_text((fs::path(out) / (slug(c.id) + ".svg")).string(), c.svg);
    return charts.size();
  }
  if (format != "html") throw Error("--format: expected html or svg, got '" + format + "'");
  std::string html =
      "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>thor report</title>\n<style>\n"
      "body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }\n"
      "table { border-collapse: collapse; margin-bottom: 1rem; } td, th { padding: .2rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }\n"
      ".charts { display: flex; flex-wrap: wrap; gap: 12px; } .charts svg { border: 1px solid #eee; }\n"
      "</style>\n</head>\n<body>\n<h1>thor report</h1>\n<table>\n<tr><th>run</th><th>directory</th><th>updates</th>"
      "<th>last training loss</th><th>best valid BLEU</th><th>best valid loss</th></tr>\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    double best_bleu = -1, best_loss = std::numeric_limits<double>::infinity();
    for (const auto& j : r.valid) {
      if (j.contains("valid_bleu")) best_bleu = std::max(best_bleu, num(j, "valid_bleu"));
      best_loss = std::min(best_loss, num(j, "valid_loss"));
    }
    auto cell = [](double v) {
      if (!std::isfinite(v) || v < 0) return std::string("-");
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f", v);
      return std::string(buf);
    };
    html += "<tr><td><span style=\"color:" + series_color(i) + "\">&#9632;</span> " + xml_escape(r.name) + "</td><td>" +
            xml_escape(r.dir) + "</td><td>" + (r.train.empty() ? "0" : std::to_string(r.train.back().value("update", 0))) +
            "</td><td>" + (r.train.empty() ? "-" : cell(num(r.train.back(), "loss"))) + "</td><td>" + cell(best_bleu) +
            "</td><td>" + cell(best_loss) + "</td></tr>\n";
  }
  html += "</table>\n<div class=\"charts\">\n";
  for (const auto& c : charts) html += "<figure id=\"" + xml_escape(slug(c.id)) + "\" style=\"margin:0\">\n" + c.svg + "</figure>\n";
  html += "</div>\n";
  // the numbers behind the charts, as read from the logs
  nlohmann::json data = nlohmann::json::array();
  for (const auto& r : runs) data.push_back({{"name", r.name}, {"dir", r.dir}, {"train", r.train}, {"valid", r.valid}});
  std::string text = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (size_t p = text.find("</"); p != std::string::npos; p = text.find("</", p + 2)) text.replace(p, 2, "<\\/");
  html += "<script type=\"application/json\" id=\"thor-report-data\">" + text + "</script>\n</body>\n</html>\n";
  write_text(out, html);
  return charts.size();
}

}  // namespace thor::report
