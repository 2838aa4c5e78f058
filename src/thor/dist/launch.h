// `thor train --nproc-per-node N`: starts the N ranks of a one-machine run as child
// processes (as torchrun / fairseq's --distributed-world-size do), each with torchrun's
// environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
// on a free loopback port, and supervises them: when one fails the others are stopped
// (SIGTERM, then SIGKILL after `grace`), SIGINT/SIGTERM to the launcher are passed on.
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace thor::dist {

struct LaunchOptions {
  int nproc = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port
  std::chrono::seconds grace{30};
};

// Runs `args` (args[0] the program, as in argv) N times and returns the exit code of the
// run: 0 when every rank exited 0, else the first failing rank's code (128 + signal for a
// rank killed by a signal). Logs which rank failed first.
int launch_local(const std::vector<std::string>& args, const LaunchOptions& opt);

// A TCP port on 127.0.0.1 nobody listens on now.
int free_port();

// argv without `--flag VALUE` / `--flag=VALUE`.
std::vector<std::string> without_option(const std::vector<std::string>& args, const std::string& flag);

}  // namespace thor::dist
