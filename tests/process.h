// Test helper: the real thor binary as a child process (its own environment additions,
// stderr to a file), to be waited for or killed.
#pragma once
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace thor::testing {

struct Child {
  pid_t pid = -1;
  // exit code, 128 + signal when killed, -1 when still running at the deadline
  int wait(std::chrono::seconds limit = std::chrono::seconds(300)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  void kill(int sig) { ::kill(pid, sig); }
};

// THOR_BIN args..., stdout to `out` (default /dev/null), stderr appended to `err`, stdin
// from `in_fd` when given (the caller closes its copy).
inline Child start_thor(const std::vector<std::string>& args, const std::string& err,
                        const std::vector<std::pair<std::string, std::string>>& env = {},
                        const std::string& out = "/dev/null", int in_fd = -1) {
  Child c;
  c.pid = ::fork();
  if (c.pid == 0) {
    if (in_fd >= 0 && ::dup2(in_fd, 0) < 0) std::_Exit(126);
    for (auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    if (!std::freopen(err.c_str(), "a", stderr)) std::_Exit(126);
    if (!std::freopen(out.c_str(), "w", stdout)) std::_Exit(126);
    std::vector<std::string> all = {THOR_BIN};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(THOR_BIN, argv.data());
    std::_Exit(127);
  }
  return c;
}

}  // namespace thor::testing
