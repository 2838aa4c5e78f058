// See exchange.h.
#include "thor/moe/exchange.h"

namespace thor {

namespace {
class AllToAllRows : public torch::autograd::Function<AllToAllRows> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input, TokenExchange* ex,
                               std::vector<int64_t> send, std::vector<int64_t> recv) {
    ctx->saved_data["ex"] = reinterpret_cast<int64_t>(ex);
    ctx->saved_data["send"] = send;
    ctx->saved_data["recv"] = recv;
    ctx->saved_data["cols"] = input.size(1);
    return ex->alltoall(input, send, recv);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    auto* ex = reinterpret_cast<TokenExchange*>(ctx->saved_data["ex"].toInt());
    auto send = ctx->saved_data["send"].toIntVector(), recv = ctx->saved_data["recv"].toIntVector();
    int64_t rows = 0;
    for (auto n : recv) rows += n;
    auto g = grad[0].defined() ? grad[0].contiguous() : torch::zeros({rows, ctx->saved_data["cols"].toInt()});
    return {ex->alltoall(g, recv, send), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};
}  // namespace

torch::Tensor alltoall_rows(TokenExchange& ex, const torch::Tensor& input, const std::vector<int64_t>& send,
                            const std::vector<int64_t>& recv) {
  return AllToAllRows::apply(input, &ex, send, recv);
}

std::vector<int64_t> exchange_counts(TokenExchange& ex, const std::vector<int64_t>& counts) {
  auto all = ex.allgather(torch::tensor(counts, torch::kLong)).to(torch::kCPU).contiguous();  // [W, W]
  std::vector<int64_t> recv(static_cast<size_t>(ex.ranks()));
  for (int r = 0; r < ex.ranks(); ++r) recv[static_cast<size_t>(r)] = all[r][ex.rank()].item<int64_t>();
  return recv;
}

}  // namespace thor
