// See stop_signals.h.
#include "thor/common/stop_signals.h"

#include <signal.h>

#include <atomic>
#include <csignal>

namespace thor {

namespace {
std::atomic<int> g_stop_signal{0};
struct sigaction g_old_int{}, g_old_term{};
}  // namespace

StopSignals::StopSignals() {
  g_stop_signal = 0;
  struct sigaction sa{};
  sa.sa_handler = [](int sig) {
    if (g_stop_signal.exchange(sig) != 0) {
      std::signal(sig, SIG_DFL);
      std::raise(sig);
    }
  };
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns (EINTR), so a reader can stop reading
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

int StopSignals::requested() { return g_stop_signal.load(); }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

}  // namespace thor
