// See chart.h.
#include "thor/report/chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace thor::report {

namespace {

std::string num(double v, int precision = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
}

std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// About `want` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart).
std::vector<double> ticks(double lo, double hi, int want) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / want, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push_back(std::abs(t) < step * 1e-9 ? 0 : t);
  return out;
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

const std::string& series_color(size_t i) {
  static const std::vector<std::string> palette = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                                   "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
  return palette[i % palette.size()];
}

std::string line_chart(const std::vector<Series>& series, const ChartOptions& opt) {
  const double left = 64, right = 16, top = 30, bottom = 44;
  const double w = opt.width - left - right, h = opt.height - top - bottom;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  auto ty = [&](double y) { return opt.log_y ? std::log10(std::max(y, 1e-12)) : y; };
  auto shown = [&](double x, double y) { return std::isfinite(x) && std::isfinite(y) && !(opt.log_y && y <= 0); };
  size_t points = 0;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      if (!shown(x, y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, ty(y)), y1 = std::max(y1, ty(y));
      ++points;
    }
  // the canvas is opt.width wide, or wider when the legend has to go beside the plot (below)
  auto header = [&](int width) {
    return "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"" + std::to_string(width) + "\" height=\"" +
           std::to_string(opt.height) + "\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(opt.height) +
           "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n";
  };
  int width = opt.width;
  std::string svg = "<text x=\"" + px(left) + "\" y=\"18\" font-size=\"13\" font-weight=\"bold\">" + xml_escape(opt.title) + "</text>\n";
  if (points == 0) {
    svg += "<text x=\"" + px(left + w / 2) + "\" y=\"" + px(top + h / 2) + "\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n</svg>\n";
    return header(width) + svg;
  }
  if (x1 == x0) x0 -= 0.5, x1 += 0.5;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  auto sx = [&](double x) { return left + (x - x0) / (x1 - x0) * w; };
  auto sy = [&](double y) { return top + h - (ty(y) - y0) / (y1 - y0) * h; };
  // y ticks as data values: on a log scale 1, 2 and 5 times powers of ten, or (a narrow
  // range) round values of the data's own span
  std::vector<double> yt;
  if (opt.log_y) {
    for (int e = static_cast<int>(std::floor(y0)); e <= static_cast<int>(std::ceil(y1)); ++e)
      for (double m : {1.0, 2.0, 5.0})
        if (const double v = m * std::pow(10.0, e); std::log10(v) >= y0 && std::log10(v) <= y1) yt.push_back(v);
    if (yt.size() < 3) yt = ticks(std::pow(10.0, y0), std::pow(10.0, y1), 5);
  } else {
    yt = ticks(y0, y1, 5);
  }
  auto y_of_tick = [&](double t) { return top + h - (ty(t) - y0) / (y1 - y0) * h; };
  // axes, grid and ticks
  svg += "<g stroke=\"#ddd\">\n";
  for (double t : ticks(x0, x1, 6)) svg += "<line x1=\"" + px(sx(t)) + "\" x2=\"" + px(sx(t)) + "\" y1=\"" + px(top) + "\" y2=\"" + px(top + h) + "\"/>\n";
  for (double t : yt)
    svg += "<line x1=\"" + px(left) + "\" x2=\"" + px(left + w) + "\" y1=\"" + px(y_of_tick(t)) + "\" y2=\"" + px(y_of_tick(t)) + "\"/>\n";
  svg += "</g>\n<g fill=\"#444\">\n";
  for (double t : ticks(x0, x1, 6))
    svg += "<text x=\"" + px(sx(t)) + "\" y=\"" + px(top + h + 14) + "\" text-anchor=\"middle\">" + num(t) + "</text>\n";
  for (double t : yt)
    svg += "<text x=\"" + px(left - 6) + "\" y=\"" + px(y_of_tick(t) + 4) + "\" text-anchor=\"end\">" + num(t) + "</text>\n";
  svg += "<text x=\"" + px(left + w / 2) + "\" y=\"" + px(opt.height - 8) + "\" text-anchor=\"middle\">" + xml_escape(opt.x_label) + "</text>\n";
  svg += "<text transform=\"translate(14," + px(top + h / 2) + ") rotate(-90)\" text-anchor=\"middle\">" + xml_escape(opt.y_label) +
         "</text>\n</g>\n";
  svg += "<rect x=\"" + px(left) + "\" y=\"" + px(top) + "\" width=\"" + px(w) + "\" height=\"" + px(h) + "\" fill=\"none\" stroke=\"#888\"/>\n";
  // the series, and a legend when there are several; each series' shown points in pixels,
  // computed once for its line and for placing the legend
  std::vector<std::vector<std::pair<double, double>>> at(series.size());
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    for (const auto& [x, y] : s.points)
      if (shown(x, y)) at[i].emplace_back(sx(x), sy(y));
    if (at[i].empty()) continue;
    std::string pts;
    for (const auto& [x, y] : at[i]) pts += px(x) + "," + px(y) + " ";
    svg += "<polyline class=\"series\" data-name=\"" + xml_escape(s.name) + "\" fill=\"none\" stroke=\"" + series_color(i) +
           "\" stroke-width=\"1.6\" points=\"" + pts + "\"/>\n";
    if (s.markers || s.points.size() < 2)
      for (const auto& [x, y] : s.points)
        if (shown(x, y))
          svg += "<circle cx=\"" + px(sx(x)) + "\" cy=\"" + px(sy(y)) + "\" r=\"2.5\" fill=\"" + series_color(i) + "\"><title>" +
                 xml_escape(s.name) + ": " + num(x, 8) + ", " + num(y, 6) + "</title></circle>\n";
  }
  if (series.size() > 1) {  // runs without points in this chart are left out (colours stay the runs')
    // the legend goes in the corner its box hides none of the lines: top right, bottom right,
    // top left, bottom left, the first such; where every corner would hide some (many runs
    // close together, as near the end of training), beside the plot on a wider canvas
    const double box_w = 150, box_h = 14.0 * std::count_if(at.begin(), at.end(), [](const auto& a) { return !a.empty(); }) + 6;
    const std::pair<double, double> corners[] = {
        {left + w - box_w, top}, {left + w - box_w, top + h - box_h}, {left + 4, top}, {left + 4, top + h - box_h}};
    auto hidden_by = [&](double bx, double by) {  // 16 samples along each segment (a lone point: itself)
      size_t n = 0;
      for (const auto& a : at)
        for (size_t k = 0; k < a.size(); ++k) {
          const auto [xa, ya] = a[k];
          const auto [xb, yb] = a[std::min(k + 1, a.size() - 1)];
          for (int t = 0; t < 16; ++t) {
            const double x = xa + t / 16.0 * (xb - xa), y = ya + t / 16.0 * (yb - ya);
            n += x >= bx && x <= bx + box_w && y >= by && y <= by + box_h;
          }
        }
      return n;
    };
    double bx = left + w + right, by = top;
    for (const auto& [cx, cy] : corners)
      if (hidden_by(cx, cy) == 0) {
        bx = cx, by = cy;
        break;
      }
    if (bx >= left + w) width = static_cast<int>(std::ceil(bx + box_w));
    double ly = by + 6;
    for (size_t i = 0; i < series.size(); ++i) {
      if (at[i].empty()) continue;
      svg += "<rect class=\"legend\" x=\"" + px(bx) + "\" y=\"" + px(ly) + "\" width=\"10\" height=\"10\" fill=\"" + series_color(i) + "\"/>";
      svg += "<text x=\"" + px(bx + 14) + "\" y=\"" + px(ly + 9) + "\">" + xml_escape(series[i].name) + "</text>\n";
      ly += 14;
    }
  }
  svg += "</svg>\n";
  return header(width) + svg;
}

std::string heatmap(const std::string& title, const std::vector<double>& xs, const std::vector<std::string>& rows,
                    const std::vector<std::vector<double>>& values, double lo, double hi, const std::string& x_label,
                    int width) {
  const double left = 64, right = 70, top = 30, bottom = 40, row_h = 16;
  const double h = row_h * static_cast<double>(std::max<size_t>(1, rows.size())), w = width - left - right;
  const int height = static_cast<int>(top + h + bottom);
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"heatmap\" width=\"" + std::to_string(width) +
                    "\" height=\"" + std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) + " " +
                    std::to_string(height) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n";
  svg += "<text x=\"" + px(left) + "\" y=\"18\" font-size=\"13\" font-weight=\"bold\">" + xml_escape(title) + "</text>\n";
  const size_t cols = xs.size();
  const double cw = cols ? w / static_cast<double>(cols) : w;
  // white (lo) to dark blue (hi)
  auto colour = [&](double v) {
    const double t = hi > lo ? std::clamp((v - lo) / (hi - lo), 0.0, 1.0) : 0.5;
    char buf[16];
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(255 - t * 225), static_cast<int>(255 - t * 180),
                  static_cast<int>(255 - t * 75));
    return std::string(buf);
  };
  for (size_t r = 0; r < rows.size(); ++r) {
    svg += "<text x=\"" + px(left - 6) + "\" y=\"" + px(top + (r + 0.5) * row_h + 4) + "\" text-anchor=\"end\">" + xml_escape(rows[r]) + "</text>\n";
    for (size_t c = 0; c < cols && c < values[r].size(); ++c)
      svg += "<rect class=\"cell\" x=\"" + px(left + c * cw) + "\" y=\"" + px(top + r * row_h) + "\" width=\"" + px(cw + 0.3) +
             "\" height=\"" + px(row_h) + "\" fill=\"" + colour(values[r][c]) + "\"><title>" + xml_escape(rows[r]) + " at " +
             num(xs[c], 8) + ": " + num(values[r][c], 4) + "</title></rect>\n";
  }
  if (cols) {
    svg += "<text x=\"" + px(left) + "\" y=\"" + px(top + h + 14) + "\">" + num(xs.front(), 8) + "</text>";
    svg += "<text x=\"" + px(left + w) + "\" y=\"" + px(top + h + 14) + "\" text-anchor=\"end\">" + num(xs.back(), 8) + "</text>\n";
  }
  svg += "<text x=\"" + px(left + w / 2) + "\" y=\"" + px(height - 8) + "\" text-anchor=\"middle\">" + xml_escape(x_label) + "</text>\n";
  // the colour scale
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0;
    svg += "<rect x=\"" + px(left + w + 10) + "\" y=\"" + px(top + (4 - k) * 12) + "\" width=\"12\" height=\"12\" fill=\"" + colour(v) +
           "\" stroke=\"#ccc\"/><text x=\"" + px(left + w + 26) + "\" y=\"" + px(top + (4 - k) * 12 + 10) + "\">" + num(v, 2) + "</text>\n";
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace thor::report
