// See env.h.
#include "thor/dist/env.h"

#include <cstdlib>

#include "thor/common/error.h"

namespace thor::dist {

namespace {
using Getenv = std::function<const char*(const char*)>;

std::optional<int> int_var(const Getenv& getenv, const char* name, int min_value) {
  const char* v = getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < min_value || x > (1 << 24))
    throw Error(std::string("environment variable ") + name + "='" + v + "' is not an integer >= " +
                std::to_string(min_value));
  return static_cast<int>(x);
}

std::string str_var(const Getenv& getenv, const char* name) {
  const char* v = getenv(name);
  return v ? v : "";
}

void check(const DistEnv& e, const char* rank_var, const char* size_var) {
  if (e.rank >= e.world_size)
    throw Error(std::string(rank_var) + "=" + std::to_string(e.rank) + " is not below " + size_var + "=" +
                std::to_string(e.world_size));
  if (e.local_rank >= e.local_world_size)
    throw Error("local rank " + std::to_string(e.local_rank) + " is not below the local world size " +
                std::to_string(e.local_world_size) + " (" + e.launcher + " environment)");
  if (e.master_port <= 0 || e.master_port > 65535)
    throw Error("MASTER_PORT=" + std::to_string(e.master_port) + " is not a TCP port");
}

// MASTER_ADDR/MASTER_PORT where set; otherwise loopback when every rank is on this machine.
void rendezvous(DistEnv& e, const Getenv& getenv, const std::string& fallback_host, const char* launcher_hint) {
  auto addr = str_var(getenv, "MASTER_ADDR");
  if (!addr.empty()) {
    e.master_addr = addr;
  } else if (!fallback_host.empty()) {
    e.master_addr = fallback_host;
  } else if (e.local_world_size != e.world_size) {
    throw Error(std::string("MASTER_ADDR is not set: a multi-machine ") + launcher_hint +
                " run needs the address of rank 0's machine in MASTER_ADDR");
  }
  if (auto p = int_var(getenv, "MASTER_PORT", 1)) e.master_port = *p;
}
}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // first entry: up to a comma outside brackets
  size_t depth = 0, end = nodelist.size();
  for (size_t i = 0; i < nodelist.size(); ++i) {
    if (nodelist[i] == '[') ++depth;
    else if (nodelist[i] == ']') --depth;
    else if (nodelist[i] == ',' && depth == 0) { end = i; break; }
  }
  std::string first = nodelist.substr(0, end);
  auto open = first.find('[');
  if (open == std::string::npos) return first;
  std::string prefix = first.substr(0, open), range = first.substr(open + 1);
  size_t stop = range.find_first_of("-,]");
  return prefix + range.substr(0, stop);
}

std::optional<DistEnv> detect_env(const Getenv& getenv) {
  DistEnv e;
  if (auto ws = int_var(getenv, "WORLD_SIZE", 1); ws && getenv("RANK")) {  // torchrun (and thor's own launcher)
    e.launcher = str_var(getenv, "THOR_LAUNCHER").empty() ? "torchrun" : str_var(getenv, "THOR_LAUNCHER");
    e.world_size = *ws;
    e.rank = *int_var(getenv, "RANK", 0);
    e.local_rank = int_var(getenv, "LOCAL_RANK", 0).value_or(e.rank);
    e.local_world_size = int_var(getenv, "LOCAL_WORLD_SIZE", 1).value_or(e.world_size);
    rendezvous(e, getenv, "", "torchrun");
    check(e, "RANK", "WORLD_SIZE");
  } else if (auto ws = int_var(getenv, "OMPI_COMM_WORLD_SIZE", 1)) {
    e.launcher = "mpirun";
    e.world_size = *ws;
    e.rank = int_var(getenv, "OMPI_COMM_WORLD_RANK", 0).value_or(0);
    e.local_rank = int_var(getenv, "OMPI_COMM_WORLD_LOCAL_RANK", 0).value_or(0);
    e.local_world_size = int_var(getenv, "OMPI_COMM_WORLD_LOCAL_SIZE", 1).value_or(e.world_size);
    rendezvous(e, getenv, "", "mpirun");
    check(e, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE");
  } else if (auto ws = int_var(getenv, "SLURM_NTASKS", 1); ws && getenv("SLURM_PROCID")) {
    e.launcher = "srun";
    e.world_size = *ws;
    e.rank = *int_var(getenv, "SLURM_PROCID", 0);
    e.local_rank = int_var(getenv, "SLURM_LOCALID", 0).value_or(0);
    // SLURM_NTASKS_PER_NODE may read "2(x3)"; the per-node count is its leading number
    e.local_world_size = e.world_size;
    if (const char* per = getenv("SLURM_NTASKS_PER_NODE"); per && *per) e.local_world_size = std::atoi(per);
    else if (auto nodes = int_var(getenv, "SLURM_NNODES", 1)) e.local_world_size = (e.world_size + *nodes - 1) / *nodes;
    if (e.local_world_size <= 0) e.local_world_size = e.world_size;
    auto nodelist = str_var(getenv, "SLURM_STEP_NODELIST");
    if (nodelist.empty()) nodelist = str_var(getenv, "SLURM_JOB_NODELIST");
    rendezvous(e, getenv, nodelist.empty() ? "" : first_slurm_host(nodelist), "srun");
    check(e, "SLURM_PROCID", "SLURM_NTASKS");
  } else {
    return std::nullopt;
  }
  if (e.world_size == 1) return std::nullopt;
  return e;
}

std::optional<DistEnv> detect_env() {
  return detect_env([](const char* name) -> const char* { return std::getenv(name); });
}

}  // namespace thor::dist
