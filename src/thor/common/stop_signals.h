// SIGINT / SIGTERM as a request to stop, for commands that finish what is in flight (train
// finishes its update and saves; translate finishes the batches it is decoding). While a
// StopSignals lives, the first signal is recorded; a second one ends the process at once
// (its default action).
#pragma once

namespace thor {

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The signal that asked to stop (0: none yet).
  static int requested();
};

// "SIGTERM", "SIGINT", ...
const char* signal_name(int sig);

}  // namespace thor
