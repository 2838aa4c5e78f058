// thor report on real runs (a dense and a THOR model, trained here): the page's embedded
// numbers are the logs' own, it has the charts it should (with a heatmap per expert layer),
// headless Chromium renders it (the DOM keeps every chart; the screenshot is not blank), the
// SVG format writes one file per chart, and a damaged log line is named.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/report/chart.h"
#include "thor/report/report.h"

namespace fs = std::filesystem;
using thor::testing::sh;
using thor::testing::slurp;

namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// Distinct byte values of a PNG's decompressed image data: a blank page has one or two.
size_t png_distinct_bytes(const std::string& png) {
  std::string idat;
  for (size_t p = 8; p + 12 <= png.size();) {
    const uint32_t len = (uint8_t(png[p]) << 24) | (uint8_t(png[p + 1]) << 16) | (uint8_t(png[p + 2]) << 8) | uint8_t(png[p + 3]);
    if (png.compare(p + 4, 4, "IDAT") == 0) idat += png.substr(p + 8, len);
    p += 12 + len;
  }
  std::string raw(64 << 20, '\0');
  uLongf n = raw.size();
  if (uncompress(reinterpret_cast<Bytef*>(raw.data()), &n, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) != Z_OK) return 0;
  std::set<unsigned char> seen(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(n));
  return seen.size();
}

}  // namespace

TEST(Report, PageHoldsTheLogsNumbersAndRendersInChromium) {
  auto dir = thor::testing::temp_dir("report");
  thor::testing::make_toy_corpus(dir / "train", 150, 101, "en", "de");
  thor::testing::make_toy_corpus(dir / "valid", 6, 102, "en", "de");
  const std::string bin = THOR_BIN;
  ASSERT_EQ(sh(bin + " --threads 1 prepare -s en -t de --trainpref " + (dir / "train").string() + " --validpref " +
               (dir / "valid").string() + " --destdir " + (dir / "data").string() + " --vocab-size 70 2> /dev/null"),
            0);
  const std::string common = " --encoder-embed-dim 16 --ffn-dim 32 --encoder-layers 2 --decoder-layers 2 --attention-heads 2"
                             " --max-tokens 300 --max-update 12 --log-interval 3 --validate-interval-updates 6 --eval-beam 1"
                             " --no-progress";
  ASSERT_EQ(sh(bin + " --threads 1 train " + (dir / "data").string() + common + " --save-dir " + (dir / "dense").string() +
               " 2> /dev/null"),
            0);
  ASSERT_EQ(sh(bin + " --threads 1 train " + (dir / "data").string() + common +
               " --num-experts 2 --router thor --save-dir " + (dir / "thor").string() + " 2> /dev/null"),
            0);
  const auto page = dir / "report.html";
  ASSERT_EQ(sh(bin + " report " + (dir / "dense").string() + " " + (dir / "thor").string() + " --out " + page.string() +
               " 2> " + (dir / "report.log").string()),
            0)
      << slurp(dir / "report.log");
  const auto html = slurp(page);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg")) << "no request may leave the page";
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script src"), std::string::npos);
  // the numbers in the page are the logs'
  std::smatch m;
  ASSERT_TRUE(std::regex_search(html, m, std::regex("<script type=\"application/json\" id=\"thor-report-data\">(.*)</script>")));
  auto data = nlohmann::json::parse(m[1].str());
  ASSERT_EQ(data.size(), 2u);
  for (size_t r = 0; r < 2; ++r) {
    std::vector<nlohmann::json> train, valid;
    for (const auto& line : thor::testing::read_file(dir / (r ? "thor" : "dense") / "train_log.jsonl")) {
      auto j = nlohmann::json::parse(line);
      (j.contains("valid_loss") ? valid : train).push_back(j);
    }
    EXPECT_EQ(data[r].at("train"), nlohmann::json(train)) << r;
    EXPECT_EQ(data[r].at("valid"), nlohmann::json(valid)) << r;
    EXPECT_EQ(train.size(), 4u);  // updates 3, 6, 9, 12
    EXPECT_EQ(valid.size(), 2u);
  }
  // the charts: loss/BLEU/lr/speed/gnorm (11), consistency (THOR), a heatmap per expert layer
  // of the THOR run (encoder.0, decoder.0)
  EXPECT_EQ(count(html, "<svg "), 11u + 1u + 2u) << html.substr(0, 2000);
  EXPECT_EQ(count(html, "class=\"heatmap\""), 2u);
  EXPECT_EQ(count(html, "class=\"cell\""), 2u * 2u * 4u);  // 2 layers x 2 experts x 4 log lines
  EXPECT_NE(html.find("thor: token share per expert, encoder.0"), std::string::npos);
  // every series of the training loss has a point per log line
  ASSERT_TRUE(std::regex_search(html, m, std::regex("<polyline class=\"series\" data-name=\"dense\"[^>]*points=\"([^\"]*)\"")));
  EXPECT_EQ(count(m[1].str(), ","), 4u);
  // headless Chromium: the DOM keeps the charts, the screenshot is not blank
  const std::string chromium = "/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run"
                               " --disable-background-networking --disable-component-update --disable-sync --user-data-dir=" +
                               (dir / "profile").string();
  ASSERT_EQ(sh(chromium + " --dump-dom file://" + page.string() + " > " + (dir / "dom.html").string() + " 2> /dev/null"), 0);
  EXPECT_EQ(count(slurp(dir / "dom.html"), "<svg "), 14u);
  const auto png = dir / "report.png";
  ASSERT_EQ(sh(chromium + " --window-size=1200,1600 --screenshot=" + png.string() + " file://" + page.string() + " 2> /dev/null"), 0);
  EXPECT_GT(png_distinct_bytes(slurp(png)), 20u);
  std::cout << "[ screenshot ] " << png.string() << "\n";
  // one SVG file per chart
  ASSERT_EQ(sh(bin + " report " + (dir / "dense").string() + " " + (dir / "thor").string() + " --format svg --out " +
               (dir / "svg").string() + " 2> /dev/null"),
            0);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir / "svg")) files += e.path().extension() == ".svg";
  EXPECT_EQ(files, 14u);
  EXPECT_TRUE(fs::exists(dir / "svg" / "valid-bleu-updates.svg"));
  // the compute axis: each validation at the FLOPs the training lines add up to by then
  const auto flops_svg = slurp(dir / "svg" / "valid-bleu-flops.svg");
  EXPECT_EQ(count(flops_svg, "<circle"), 4u);  // 2 validations x 2 runs
  double pflop = 0, prev = 0;
  for (const auto& line : thor::testing::read_file(dir / "dense" / "train_log.jsonl")) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("loss")) continue;
    const double u = j["update"];
    pflop += j["gflop_s"].get<double>() * 1e9 * j["s_per_update"].get<double>() * (u - prev) / 1e15, prev = u;
    if (u == 6) break;
  }
  char at[64];
  std::snprintf(at, sizeof at, "<title>dense: %.8g, ", pflop);
  EXPECT_NE(flops_svg.find(at), std::string::npos) << at << "\n" << flops_svg;
}

// The minutes axis at the median pace: a run stopped for a while (one interval of 50 s per
// update among intervals of 2 s) and one logged on an undisturbed machine at 3 s per update
// put each validation at update x 2 s and update x 3 s, not at the logged elapsed_s.
TEST(Report, MinutesAtTheMedianPaceLeaveOutPauses) {
  auto dir = thor::testing::temp_dir("report_pace");
  auto line = [](int u, double spu, double elapsed) {
    return "{\"update\": " + std::to_string(u) + ", \"loss\": 5, \"s_per_update\": " + std::to_string(spu) +
           ", \"elapsed_s\": " + std::to_string(elapsed) + "}";
  };
  auto valid = [](int u, double bleu, double elapsed) {
    return "{\"update\": " + std::to_string(u) + ", \"valid_loss\": 4, \"valid_bleu\": " + std::to_string(bleu) +
           ", \"elapsed_s\": " + std::to_string(elapsed) + "}";
  };
  fs::create_directories(dir / "paused");
  thor::testing::write_file(dir / "paused" / "train_log.jsonl",
                            {line(30, 2, 60), line(60, 50, 1560), line(90, 2, 1620), valid(90, 10, 1625), line(120, 2, 1680),
                             line(150, 2, 1740), valid(150, 20, 1745)});
  fs::create_directories(dir / "steady");
  thor::testing::write_file(dir / "steady" / "train_log.jsonl",
                            {line(60, 3, 180), line(120, 3, 360), valid(120, 15, 365), line(180, 3, 540), line(240, 3, 720),
                             valid(240, 25, 725)});
  const auto svgs = dir / "svg";
  thor::report::write_report({thor::report::read_run((dir / "paused").string()), thor::report::read_run((dir / "steady").string())},
                             "svg", svgs.string());
  const std::string pace = slurp(svgs / "valid-bleu-pace.svg");
  EXPECT_EQ(count(pace, "<circle"), 4u);
  EXPECT_NE(pace.find("<title>paused: 3, 10</title>"), std::string::npos) << pace;   // 90 x 2 s
  EXPECT_NE(pace.find("<title>paused: 5, 20</title>"), std::string::npos) << pace;   // 150 x 2 s
  EXPECT_NE(pace.find("<title>steady: 6, 15</title>"), std::string::npos) << pace;   // 120 x 3 s
  EXPECT_NE(pace.find("<title>steady: 12, 25</title>"), std::string::npos) << pace;  // 240 x 3 s
  // the second half of training alone (updates 120 to 240 of 240): its scale is theirs
  const std::string late = slurp(svgs / "valid-bleu-late.svg");
  EXPECT_EQ(count(late, "<circle"), 3u) << late;
  EXPECT_NE(late.find("<title>paused: 150, 20</title>"), std::string::npos) << late;
  EXPECT_NE(late.find("<title>steady: 120, 15</title>"), std::string::npos) << late;
  EXPECT_NE(late.find("<title>steady: 240, 25</title>"), std::string::npos) << late;
  EXPECT_EQ(late.find("paused: 90,"), std::string::npos) << late;
  // the logged wall-clock keeps the pause
  const std::string logged = slurp(svgs / "valid-bleu-minutes.svg");
  EXPECT_NE(logged.find("<title>paused: 27.083333, 10</title>"), std::string::npos) << logged;
  // a pace measured apart replaces the median, from the command line
  const std::string bin = THOR_BIN;
  ASSERT_EQ(sh(bin + " report " + (dir / "paused").string() + " " + (dir / "steady").string() +
               " --seconds-per-update paused=4 --format svg --out " + (dir / "svg2").string() + " 2> /dev/null"),
            0);
  const std::string measured = slurp(dir / "svg2" / "valid-bleu-pace.svg");
  EXPECT_NE(measured.find("<title>paused: 6, 10</title>"), std::string::npos) << measured;  // 90 x 4 s
  EXPECT_NE(measured.find("<title>steady: 6, 15</title>"), std::string::npos) << measured;  // still its median
  // a bad pace is one error line naming the option, and no report
  for (const auto& [spec, error] : std::vector<std::pair<std::string, std::string>>{
           {"nosuch=2", "--seconds-per-update: no run named 'nosuch' (runs: paused, steady)"},
           {"paused=-1", "--seconds-per-update: '-1' is not a positive number of seconds (in 'paused=-1')"},
           {"paused=2s", "--seconds-per-update: '2s' is not a positive number of seconds (in 'paused=2s')"},
           {"paused", "--seconds-per-update: expected RUN=SECONDS, got 'paused'"}}) {
    const auto err = dir / "err.txt";
    EXPECT_NE(sh(bin + " report " + (dir / "paused").string() + " " + (dir / "steady").string() + " --seconds-per-update " +
                 spec + " --out " + (dir / "bad.html").string() + " 2> " + err.string()),
              0)
        << spec;
    EXPECT_NE(slurp(err).find(error), std::string::npos) << slurp(err);
    EXPECT_FALSE(fs::exists(dir / "bad.html")) << spec;
  }
}

TEST(Report, ADamagedLogLineIsNamed) {
  auto dir = thor::testing::temp_dir("report_bad");
  fs::create_directories(dir / "run");
  thor::testing::write_file(dir / "run" / "train_log.jsonl", {"{\"update\": 1, \"loss\": 5}", "{\"update\": 2, \"lo"});
  try {
    thor::report::read_run((dir / "run").string());
    ADD_FAILURE() << "read";
  } catch (const thor::Error& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "run" / "train_log.jsonl").string() + ":2: not a JSON line");
  }
}

// The legend sits in the corner where it hides the least of the lines: falling curves (losses)
// leave the top right free, rising ones (BLEU, whose ends reach the top right) the bottom right.
TEST(Report, TheLegendAvoidsTheLines) {
  using thor::report::Series;
  auto legend_at = [](const std::string& svg) {  // the first legend swatch's (x, y)
    const std::string tag = "<rect class=\"legend\" x=\"";
    const auto at = svg.find(tag);
    EXPECT_NE(at, std::string::npos);
    const double x = std::stod(svg.substr(at + tag.size()));
    const auto y_at = svg.find("y=\"", at + tag.size());
    return std::pair<double, double>{x, std::stod(svg.substr(y_at + 3))};
  };
  std::vector<std::pair<double, double>> up, down, up2;
  for (int i = 0; i <= 40; ++i) {
    up.push_back({i * 100.0, 40.0 * (1 - std::exp(-i / 8.0))});
    up2.push_back({i * 100.0, 38.0 * (1 - std::exp(-i / 10.0))});
    down.push_back({i * 100.0, 9.0 * std::exp(-i / 8.0) + 4});
  }
  const thor::report::ChartOptions opt{"t", "updates", "y"};  // 560 x 300: plot from x 64 to 544, y 30 to 256
  const auto [rx, ry] = legend_at(thor::report::line_chart({Series{"a", up}, Series{"b", up2}}, opt));
  EXPECT_GT(rx, 300);  // right
  EXPECT_GT(ry, 143);  // bottom
  const auto [fx, fy] = legend_at(thor::report::line_chart({Series{"a", down}, Series{"b", down}}, opt));
  EXPECT_GT(fx, 300);  // right
  EXPECT_LT(fy, 143);  // top, as before
  // lines everywhere on the right half: the left
  std::vector<std::pair<double, double>> zig;
  for (int i = 0; i <= 40; ++i) zig.push_back({i * 100.0, i < 20 ? 20.0 : (i % 2 ? 0.0 : 40.0)});
  const std::string left = thor::report::line_chart({Series{"a", zig}, Series{"b", up}}, opt);
  EXPECT_LT(legend_at(left).first, 300);
  EXPECT_NE(left.find("width=\"560\""), std::string::npos);  // a free corner: the canvas keeps its width
  // lines in every corner (runs that cross near the end of training): beside the plot, the
  // canvas widened to hold it and the plot where it was
  std::vector<std::pair<double, double>> high_low, low_high;
  for (int i = 0; i <= 40; ++i) high_low.push_back({i * 100.0, i % 2 ? 30.0 : 40.0}), low_high.push_back({i * 100.0, i % 2 ? 40.0 : 30.0});
  const std::string crowded = thor::report::line_chart({Series{"a", high_low}, Series{"b", low_high}}, opt);
  EXPECT_GE(legend_at(crowded).first, 544);
  EXPECT_LT(legend_at(crowded).second, 143);
  EXPECT_NE(crowded.find("width=\"710\" height=\"300\" viewBox=\"0 0 710 300\""), std::string::npos);
  EXPECT_NE(crowded.find("<rect x=\"64.0\" y=\"30.0\" width=\"480.0\" height=\"226.0\""), std::string::npos);
}

// A run without points in a chart (a dense run in the consistency chart, a Switch run whose
// consistency is logged as 0) has no line and no legend entry; the others keep their colours.
TEST(Report, RunsWithoutAChartsMetricAreLeftOutOfIt) {
  using thor::report::Series;
  const std::string svg = thor::report::line_chart(
      {Series{"dense", {}}, Series{"thor", {{1, 0.3}, {2, 0.2}}}, Series{"switch", {}}, Series{"thor4", {{1, 0.5}, {2, 0.4}}}},
      {"consistency", "updates", "loss"});
  EXPECT_EQ(count(svg, "<polyline"), 2u);
  EXPECT_EQ(count(svg, ">dense</text>"), 0u);
  EXPECT_EQ(count(svg, ">switch</text>"), 0u);
  EXPECT_EQ(count(svg, ">thor</text>"), 1u);
  EXPECT_NE(svg.find("stroke=\"" + thor::report::series_color(3) + "\""), std::string::npos);  // thor4 keeps its colour

  auto dir = thor::testing::temp_dir("report_consistency");
  for (const char* run : {"thor", "switch"}) {
    fs::create_directories(dir / run);
    const std::string c = std::string(run) == "thor" ? "0.25" : "0";
    thor::testing::write_file(dir / run / "train_log.jsonl",
                              {"{\"update\": 1, \"loss\": 5, \"consistency\": " + c + "}",
                               "{\"update\": 2, \"loss\": 4, \"consistency\": " + c + "}"});
  }
  const auto page = dir / "report.html";
  thor::report::write_report({thor::report::read_run((dir / "thor").string()), thor::report::read_run((dir / "switch").string())},
                             "html", page.string());
  const std::string html = slurp(page);
  const auto at = html.find("consistency loss (THOR)");
  ASSERT_NE(at, std::string::npos);
  const std::string chart = html.substr(at, html.find("</svg>", at) - at);
  EXPECT_EQ(count(chart, "<polyline"), 1u);
  EXPECT_EQ(count(chart, "data-name=\"switch\""), 0u);
}
