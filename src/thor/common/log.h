// Logging to stderr with a [component] tag; stdout is reserved for results.
// Usage: THOR_LOG("train") << "epoch " << e;   (one line per statement)
#pragma once
#include <iostream>
#include <sstream>
#include <string>

namespace thor {

// Global verbosity: 0 = warnings only, 1 = info (default).
int& log_level();
// Put before every component tag ("rank 1 " in a distributed run: "[rank 1 train] ...").
std::string& log_prefix();

class LogLine {
 public:
  LogLine(const char* component, bool enabled) : enabled_(enabled) {
    if (enabled_) os_ << "[" << log_prefix() << component << "] ";
  }
  ~LogLine() {
    if (enabled_) {
      os_ << '\n';
      std::cerr << os_.str() << std::flush;
    }
  }
  template <typename T>
  LogLine& operator<<(const T& v) {
    if (enabled_) os_ << v;
    return *this;
  }

 private:
  bool enabled_;
  std::ostringstream os_;
};

}  // namespace thor

#define THOR_LOG(component) ::thor::LogLine(component, ::thor::log_level() >= 1)
#define THOR_WARN(component) ::thor::LogLine(component, true)
