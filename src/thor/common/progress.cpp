// See progress.h.
#include "thor/common/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace thor {

using Clock = std::chrono::steady_clock;

Progress::Progress(std::string what, int64_t total, std::string unit, bool enabled)
    : what_(std::move(what)), unit_(std::move(unit)), total_(total), enabled_(enabled), start_(Clock::now()), last_() {}

Progress::~Progress() { finish(); }

bool Progress::stderr_is_terminal() { return ::isatty(STDERR_FILENO) != 0; }

std::string Progress::clock(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                               static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

void Progress::update(int64_t done, const std::string& extra, double eta_fraction) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  done_ = done, extra_ = extra, fraction_ = eta_fraction;
  draw(false);
}

void Progress::clear() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

void Progress::finish() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (done_ > 0) {
    draw(true);
    std::fprintf(stderr, "\n");
  } else if (drawn_) {
    std::fprintf(stderr, "\r\033[K");
  }
  std::fflush(stderr);
}

void Progress::draw(bool force) {
  const auto now = Clock::now();
  if (!force && drawn_ && now - last_ < std::chrono::milliseconds(200)) return;
  last_ = now;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double frac = fraction_ >= 0 ? fraction_ : total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : -1;
  std::string line = "\r\033[K[" + what_ + "] ";
  char buf[64];
  if (frac >= 0) {
    std::snprintf(buf, sizeof buf, "%3.0f%% ", 100.0 * std::min(1.0, frac));
    line += buf;
  }
  line += std::to_string(done_) + (total_ > 0 ? "/" + std::to_string(total_) : std::string()) + " " + unit_;
  if (secs > 0) {
    std::snprintf(buf, sizeof buf, " | %.1f %s/s", static_cast<double>(done_) / secs, unit_.c_str());
    line += buf;
  }
  line += " | " + clock(secs) + " elapsed";
  if (frac > 0 && frac < 1) line += " | ETA " + clock(secs * (1 - frac) / frac);
  if (!extra_.empty()) line += " | " + extra_;
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace thor
