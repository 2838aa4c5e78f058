// SIGINT / SIGTERM as a request to stop, for commands that finish what is in flight (train
// finishes its update and saves; translate finishes the batches it is decoding), taken
// without asynchronous signal handlers.
//
// route_stop_signals(), called first in main, blocks both signals in the main thread, so in
// every thread started after it, and starts one thread that waits for them (sigwait). So no
// handler frame is ever pushed onto a computing thread's stack: oneDNN 2.x's JIT gemm
// kernels (Debian's libdnnl 2.6) point rsp at heap memory while they run, and a handler
// taken there writes its frame into the heap (oneDNN issue 4845, fixed in 3.11): "free():
// invalid size" some updates after a SIGTERM.
//
// From the first StopSignals on, the first signal is recorded; a second one ends the process
// at once (its default action), unless the live scope records repeats (a launcher passes
// each one on). The first stays recorded after the scope: a signal that comes late, when the
// work has stopped for another reason (a rank stopped by the others' request), is no reason
// to end the process by it. Before any StopSignals, a signal ends the process as if thor had
// no handler.
#pragma once

namespace thor {

void route_stop_signals();  // idempotent; call it before any other thread starts

// For a forked child about to execute a program: the signal mask the process started with.
void restore_start_signal_mask();

class StopSignals {
 public:
  enum class Repeats { End, Recorded };
  explicit StopSignals(Repeats repeats = Repeats::End);
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The signal that asked to stop (0: none yet).
  static int requested();
  // The newest signal not yet taken (0: none), cleared: for passing each one on.
  static int take();
};

// "SIGTERM", "SIGINT", ...
const char* signal_name(int sig);

}  // namespace thor
