// A progress line for long work on a terminal: "\r[what] 42% 420/1000 | 31.5 lines/s |
// 0:13 elapsed | ETA 0:18 | extra", redrawn at most 5 times a second, ended with a newline.
// Off the terminal (a log file, a pipe) it prints nothing: the commands' own log lines
// (one per interval) are what a file should get. Thread-safe.
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace thor {

class Progress {
 public:
  // total <= 0: no percentage or ETA from the count. enabled: usually stderr is a terminal.
  Progress(std::string what, int64_t total, std::string unit, bool enabled);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // done so far; `extra` is appended ("loss 4.21"); eta_fraction in [0, 1] (when >= 0)
  // replaces done/total for the ETA (e.g. the share of --max-time used).
  void update(int64_t done, const std::string& extra = "", double eta_fraction = -1);
  // Erases the line (so a log line can be printed), redrawn at the next update.
  void clear();
  void finish();  // the last state with a newline

  static bool stderr_is_terminal();
  // "1:02:03" / "4:05"
  static std::string clock(double seconds);

 private:
  void draw(bool force);
  std::string what_, unit_;
  int64_t total_, done_ = 0;
  std::string extra_;
  double fraction_ = -1;
  bool enabled_, drawn_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
  std::mutex mu_;
};

}  // namespace thor
