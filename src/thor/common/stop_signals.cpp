// See stop_signals.h.
#include "thor/common/stop_signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>

#include "thor/common/log.h"

namespace thor {

namespace {
std::atomic<int> g_stop_signal{0};   // the first signal of the live scope
std::atomic<int> g_untaken{0};       // the newest signal not yet take()n
std::atomic<bool> g_armed{false};    // a StopSignals has been made in this process
std::atomic<bool> g_repeats{false};  // the live scope records second signals too
sigset_t g_start_mask;
std::atomic<bool> g_routed{false};

sigset_t stop_set() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

// What the signal would have done without thor: end the process by it.
[[noreturn]] void end_by(int sig) {
  std::signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  ::raise(sig);
  _exit(128 + sig);  // not reached: the default action of SIGINT / SIGTERM ends the process
}

void* wait_for_signals(void*) {
  const sigset_t set = stop_set();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (!g_armed.load()) end_by(sig);
    const bool first = g_stop_signal.exchange(sig) == 0;
    if (!first && !g_repeats.load()) end_by(sig);
    g_untaken = sig;
  }
  return nullptr;
}
}  // namespace

void route_stop_signals() {
  static std::once_flag once;
  std::call_once(once, [] {
    const sigset_t set = stop_set();
    pthread_sigmask(SIG_BLOCK, &set, &g_start_mask);
    pthread_t waiter;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // (the default stack: a smaller one can be refused where the libraries' static TLS is large)
    if (int err = pthread_create(&waiter, &attr, wait_for_signals, nullptr)) {
      pthread_sigmask(SIG_SETMASK, &g_start_mask, nullptr);  // no waiter: the signals keep their default action
      THOR_WARN("signals") << "cannot start the thread that waits for SIGINT / SIGTERM (" << std::strerror(err)
                           << "): they end the process at once instead of stopping it gracefully";
    } else {
      g_routed = true;
    }
    pthread_attr_destroy(&attr);
  });
}

void restore_start_signal_mask() {
  if (g_routed) pthread_sigmask(SIG_SETMASK, &g_start_mask, nullptr);
}

StopSignals::StopSignals(Repeats repeats) {
  route_stop_signals();
  g_stop_signal = 0;
  g_untaken = 0;
  g_repeats = repeats == Repeats::Recorded;
  g_armed = true;
}

StopSignals::~StopSignals() { g_repeats = false; }

int StopSignals::requested() { return g_stop_signal.load(); }

int StopSignals::take() { return g_untaken.exchange(0); }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

}  // namespace thor
