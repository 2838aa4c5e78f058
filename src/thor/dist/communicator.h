// The one door to other ranks: collectives on torch.distributed's C++ core (c10d) —
// ProcessGroupGloo on the CPU, ProcessGroupNCCL in CUDA builds — after a TCPStore
// rendezvous. A world of one is a Communicator too (every collective the identity), so the
// trainer and the expert layer call it without asking whether the run is distributed.
// Every collective counts the bytes this rank puts on the wire (ring all-reduce model:
// 2 (W-1)/W of the payload; all-to-all: what goes to other ranks), for the tests and the
// scaling figures. A failing or silent peer surfaces as one Error naming the rank.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "thor/dist/env.h"

namespace thor::dist {

struct CommOptions {
  std::string backend = "auto";                 // gloo | nccl | auto (nccl for CUDA devices)
  std::chrono::milliseconds timeout{300000};    // --distributed-timeout
  bool cuda = false;                            // tensors live on a CUDA device
};

// A collective in flight; wait() rethrows its failure as Error.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;

  // Sum over ranks, in place (contiguous, the same shape on every rank).
  virtual std::unique_ptr<PendingOp> allreduce_sum_async(torch::Tensor tensor) = 0;
  // Several tensors of one dtype summed in place, as one flat all-reduce.
  void allreduce_sum(const std::vector<torch::Tensor>& tensors);
  // rank `root`'s values into every rank's tensor
  virtual void broadcast(torch::Tensor tensor, int root) = 0;
  // output[r-th block] = what rank r sent to this one; input split by input_splits rows
  // (dimension 0) per destination rank, output by output_splits per source rank.
  virtual void alltoall(torch::Tensor& output, torch::Tensor& input, std::vector<int64_t> output_splits,
                        std::vector<int64_t> input_splits) = 0;
  // Every rank's `tensor` (the same shape on every rank), in rank order.
  virtual std::vector<torch::Tensor> allgather(const torch::Tensor& tensor) = 0;
  // Every rank's `tensor` on rank `root` (rank order); empty on the others.
  virtual std::vector<torch::Tensor> gather(const torch::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
  // Every rank's `value` (rank order), through the rendezvous store.
  virtual std::vector<std::string> allgather_string(const std::string& key, const std::string& value) = 0;

  // Refuses a run whose ranks disagree on `what` (model flags, data, code version): one
  // Error naming the first rank that differs from rank 0 and both values.
  void require_agreement(const std::string& what, const std::string& value);

  // bytes this rank sent, per collective kind ("allreduce", "alltoall", "broadcast")
  const std::map<std::string, int64_t>& bytes_sent() const { return bytes_sent_; }
  std::map<std::string, int64_t>& bytes_sent() { return bytes_sent_; }

 protected:
  std::map<std::string, int64_t> bytes_sent_;
};

// A world of one.
std::unique_ptr<Communicator> local_communicator();

// Joins the run `env` describes: rank 0 serves the TCPStore at MASTER_ADDR:MASTER_PORT,
// every rank connects, then the process group forms. Throws Error when the rendezvous or
// the backend fails (within opt.timeout).
std::unique_ptr<Communicator> connect(const DistEnv& env, const CommOptions& opt);

}  // namespace thor::dist
