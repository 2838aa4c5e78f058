// See launch.h.
#include "thor/dist/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/common/stop_signals.h"

namespace thor::dist {

namespace {
std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                  strsignal(WTERMSIG(status)) + ")";
  return "ended";
}
int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}
}  // namespace

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("cannot open a socket to find a free port: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int err = errno;
    ::close(fd);
    throw Error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(err));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::vector<std::string> without_option(const std::vector<std::string>& args, const std::string& flag) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag) {
      ++i;  // and its value
      continue;
    }
    if (args[i].rfind(flag + "=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

int launch_local(const std::vector<std::string>& args, const LaunchOptions& opt) {
  if (opt.nproc < 1) throw Error("--nproc-per-node must be >= 1");
  const int port = opt.master_port > 0 ? opt.master_port : free_port();
  THOR_LOG("launch") << "starting " << opt.nproc << " ranks, rendezvous at " << opt.master_addr << ":" << port;
  StopSignals signals(StopSignals::Repeats::Recorded);  // each SIGINT / SIGTERM is passed on to the ranks

  std::vector<pid_t> pids(static_cast<size_t>(opt.nproc), -1);
  for (int r = 0; r < opt.nproc; ++r) {
    pid_t pid = ::fork();
    if (pid < 0) throw Error(std::string("cannot start rank ") + std::to_string(r) + ": " + std::strerror(errno));
    if (pid == 0) {
      restore_start_signal_mask();
      auto set = [](const char* k, const std::string& v) { ::setenv(k, v.c_str(), 1); };
      set("RANK", std::to_string(r));
      set("LOCAL_RANK", std::to_string(r));
      set("WORLD_SIZE", std::to_string(opt.nproc));
      set("LOCAL_WORLD_SIZE", std::to_string(opt.nproc));
      set("MASTER_ADDR", opt.master_addr);
      set("MASTER_PORT", std::to_string(port));
      set("THOR_LAUNCHER", "thor");
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "[launch] cannot execute %s: %s\n", args[0].c_str(), std::strerror(errno));
      std::_Exit(127);
    }
    pids[static_cast<size_t>(r)] = pid;
  }

  int result = 0, running = opt.nproc;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::now();
  auto signal_all = [&](int sig) {
    for (pid_t p : pids)
      if (p > 0) ::kill(p, sig);
  };
  while (running > 0) {
    if (int sig = StopSignals::take()) {
      THOR_WARN("launch") << "signal " << sig << " received; passing it to every rank";
      signal_all(sig);
    }
    int status = 0;
    pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      int rank = -1;
      for (size_t i = 0; i < pids.size(); ++i)
        if (pids[i] == done) rank = static_cast<int>(i), pids[i] = -1;
      --running;
      if (rank < 0) continue;
      bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && result == 0) {
        result = exit_code(status);
        if (running > 0) {
          THOR_WARN("launch") << "rank " << rank << " " << describe(status) << "; stopping the other ranks";
          signal_all(SIGTERM);
          stopping = true;
          stop_deadline = std::chrono::steady_clock::now() + opt.grace;
        } else {
          THOR_WARN("launch") << "rank " << rank << " " << describe(status);
        }
      }
      continue;
    }
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      THOR_WARN("launch") << "ranks still running " << opt.grace.count() << " s after SIGTERM; killing them";
      signal_all(SIGKILL);
      stopping = false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return result;
}

}  // namespace thor::dist
