// Where this process stands in a distributed run, read from the environment a launcher
// set: torchrun (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT), Open MPI's mpirun (OMPI_COMM_WORLD_*) or Slurm's srun (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, ...). What it deliberately is not: a launcher (launch.h
// starts local ranks) or a connection (communicator.h).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace thor::dist {

struct DistEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string launcher;  // "torchrun", "mpirun", "srun" (or "thor" for --nproc-per-node)
};

// The run this process belongs to, or nullopt when no launcher's variables are set (or a
// launcher started a world of one). `getenv` is the lookup (tests pass their own).
// Throws Error naming the variable when a value is malformed or inconsistent.
std::optional<DistEnv> detect_env(const std::function<const char*(const char*)>& getenv);
std::optional<DistEnv> detect_env();

// The first host of a Slurm node list ("node[03-05,07],gpu1" -> "node03").
std::string first_slurm_host(const std::string& nodelist);

}  // namespace thor::dist
