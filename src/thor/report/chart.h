// SVG charts written as text, no library: line charts (several series overlaid, a legend,
// nice axis ticks, optional log scale) and heatmaps (a value per row and column, e.g. the
// token share of every expert over updates). Self-contained: no fonts or scripts fetched.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace thor::report {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), x ascending
  bool markers = false;                            // a dot per point (sparse series: validation)
};

struct ChartOptions {
  std::string title, x_label, y_label;
  bool log_y = false;
  int width = 560, height = 300;  // the canvas; wider by the legend's box where no corner of the plot can hold it
};

// The colour of series i (a palette that stays distinguishable for ~10 runs).
const std::string& series_color(size_t i);

std::string line_chart(const std::vector<Series>& series, const ChartOptions& opt);

// values[row][col] in [lo, hi]; columns at x positions xs; rows labelled.
std::string heatmap(const std::string& title, const std::vector<double>& xs, const std::vector<std::string>& rows,
                    const std::vector<std::vector<double>>& values, double lo, double hi, const std::string& x_label,
                    int width = 560);

// "&amp;" etc.
std::string xml_escape(const std::string& s);

}  // namespace thor::report
