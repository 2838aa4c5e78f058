// How an expert layer reaches the experts other processes hold (expert parallelism): the
// expert layer and the gated routers ask this interface to move tokens and to sum routing
// statistics; the trainer supplies one over its distributed communicator (train/), so the
// layer knows nothing of processes or sockets. Null everywhere else (one process, decoding).
#pragma once
#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace thor {

class TokenExchange {
 public:
  virtual ~TokenExchange() = default;
  virtual int ranks() const = 0;
  virtual int rank() const = 0;
  // Rows of `input` [sum(send), ...] go to the ranks in order (send[r] rows to rank r);
  // returns the rows received [sum(recv), ...], rank order. Not differentiable.
  virtual torch::Tensor alltoall(const torch::Tensor& input, const std::vector<int64_t>& send,
                                 const std::vector<int64_t>& recv) = 0;
  // Every rank's `t` (same shape), stacked: [ranks, ...].
  virtual torch::Tensor allgather(const torch::Tensor& t) = 0;
};

// alltoall inside autograd: the backward sends the gradient rows back the way they came.
torch::Tensor alltoall_rows(TokenExchange& ex, const torch::Tensor& input, const std::vector<int64_t>& send,
                            const std::vector<int64_t>& recv);

// The rows each rank sends each other rank: counts[r] rows of this rank go to rank r;
// returns what every rank sends to this one.
std::vector<int64_t> exchange_counts(TokenExchange& ex, const std::vector<int64_t>& counts);

}  // namespace thor
