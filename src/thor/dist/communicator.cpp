// See communicator.h.
#include "thor/dist/communicator.h"

#include <atomic>
#include <thread>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "thor/common/error.h"
#include "thor/common/log.h"

namespace thor::dist {

void Communicator::require_agreement(const std::string& what, const std::string& value) {
  auto all = allgather_string("agree/" + what, value);
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0])
      throw Error("ranks disagree on " + what + ": rank 0 has '" + all[0] + "', rank " + std::to_string(r) +
                  " has '" + all[r] + "'");
}

void Communicator::allreduce_sum(const std::vector<torch::Tensor>& tensors) {
  if (size() == 1 || tensors.empty()) return;
  std::vector<torch::Tensor> flat;
  for (auto& t : tensors) flat.push_back(t.reshape(-1));
  auto buf = torch::cat(flat);
  allreduce_sum_async(buf)->wait();
  int64_t at = 0;
  for (auto& t : tensors) {
    t.copy_(buf.narrow(0, at, t.numel()).view(t.sizes()));
    at += t.numel();
  }
}

namespace {

class DonePending : public PendingOp {
 public:
  void wait() override {}
};

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "none"; }
  std::unique_ptr<PendingOp> allreduce_sum_async(torch::Tensor) override { return std::make_unique<DonePending>(); }
  void broadcast(torch::Tensor, int) override {}
  void alltoall(torch::Tensor& output, torch::Tensor& input, std::vector<int64_t>, std::vector<int64_t>) override {
    output.copy_(input);
  }
  void barrier() override {}
  std::vector<torch::Tensor> allgather(const torch::Tensor& tensor) override { return {tensor.clone()}; }
  std::vector<torch::Tensor> gather(const torch::Tensor& tensor, int) override { return {tensor.clone()}; }
  std::vector<std::string> allgather_string(const std::string&, const std::string& value) override { return {value}; }
};

#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;  // 2.x: ProcessGroupGloo/NCCL are backends of a ProcessGroup
#else
using Backend = c10d::ProcessGroup;
#endif

int64_t nbytes(const torch::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// The peers' liveness, for naming the rank that failed: every rank bumps its own counter
// in the store every 100 ms; after a collective fails, the ranks whose counters stand still
// are the dead or hung ones.
class Heartbeat {
 public:
  Heartbeat(c10::intrusive_ptr<c10d::Store> store, int rank) : store_(std::move(store)), rank_(rank) {
    thread_ = std::thread([this] {
      while (!stop_) {
        try {
          store_->add("thor/alive/" + std::to_string(rank_), 1);
        } catch (...) {
          return;  // the store is gone (rank 0 ended); the next collective reports it
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  ~Heartbeat() {
    stop_ = true;
    thread_.join();
  }
  // Ranks whose counter does not move within ~1.5 s; {0} when the store itself (rank 0's) is gone.
  std::vector<int> silent_ranks(int world) {
    try {
      std::vector<int64_t> before(static_cast<size_t>(world)), after(static_cast<size_t>(world));
      for (int r = 0; r < world; ++r) before[static_cast<size_t>(r)] = store_->add("thor/alive/" + std::to_string(r), 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      for (int r = 0; r < world; ++r) after[static_cast<size_t>(r)] = store_->add("thor/alive/" + std::to_string(r), 0);
      std::vector<int> silent;
      for (int r = 0; r < world; ++r)
        if (r != rank_ && after[static_cast<size_t>(r)] == before[static_cast<size_t>(r)]) silent.push_back(r);
      return silent;
    } catch (...) {
      return {0};
    }
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  int rank_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string describe_failure(Heartbeat& hb, int world, const std::string& op, const std::string& why) {
  auto silent = hb.silent_ranks(world);
  std::string who;
  for (int r : silent) who += (who.empty() ? "" : ", ") + std::to_string(r);
  std::string first_line = why.substr(0, why.find('\n'));
  if (silent.empty()) return "distributed " + op + " failed: " + first_line;
  return "distributed " + op + " failed: rank " + who + (silent.size() > 1 ? " are" : " is") +
         " gone or not answering" + (silent == std::vector<int>{0} ? " (rank 0 hosts the rendezvous store)" : "") +
         " (" + first_line + ")";
}

class C10dCommunicator;

class C10dPending : public PendingOp {
 public:
  C10dPending(c10::intrusive_ptr<c10d::Work> work, C10dCommunicator* comm, std::string op)
      : work_(std::move(work)), comm_(comm), op_(std::move(op)) {}
  void wait() override;

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  C10dCommunicator* comm_;
  std::string op_;
};

class C10dCommunicator : public Communicator {
 public:
  C10dCommunicator(const DistEnv& env, const CommOptions& opt) : env_(env), opt_(opt) {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<size_t>(env.world_size);
    so.waitWorkers = true;
    so.timeout = opt.timeout;
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    } catch (const std::exception& e) {
      std::string w = e.what();
      throw Error("rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port) + " failed for rank " +
                  std::to_string(env.rank) + ": " + w.substr(0, w.find('\n')));
    }
    backend_name_ = opt.backend == "auto" ? (opt.cuda ? "nccl" : "gloo") : opt.backend;
    if (backend_name_ == "gloo") {
      auto o = c10d::ProcessGroupGloo::Options::create(opt.timeout);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost" ||
               env.local_world_size == env.world_size)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      o->threads = 2;
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, env.rank, env.world_size, o);
    } else if (backend_name_ == "nccl") {
#ifdef USE_C10D_NCCL
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = opt.timeout;
      pg_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, env.rank, env.world_size, o);
#else
      throw Error("--distributed-backend nccl: this build has no NCCL (built without USE_C10D_NCCL); use gloo");
#endif
    } else {
      throw Error("--distributed-backend '" + opt.backend + "': expected gloo, nccl or auto");
    }
    heartbeat_ = std::make_unique<Heartbeat>(store_, env.rank);
  }

  int rank() const override { return env_.rank; }
  int size() const override { return env_.world_size; }
  std::string backend() const override { return backend_name_; }

  std::unique_ptr<PendingOp> allreduce_sum_async(torch::Tensor tensor) override {
    bytes_sent_["allreduce"] += 2 * nbytes(tensor) * (size() - 1) / size();
    std::vector<torch::Tensor> one = {std::move(tensor)};  // (c10d: a list holds one tensor per device)
    return launch("all-reduce", [&] { return pg_->allreduce(one); });
  }

  void broadcast(torch::Tensor tensor, int root) override {
    if (rank() == root) bytes_sent_["broadcast"] += nbytes(tensor) * (size() - 1);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    std::vector<torch::Tensor> one = {std::move(tensor)};
    launch("broadcast", [&] { return pg_->broadcast(one, o); })->wait();
  }

  void alltoall(torch::Tensor& output, torch::Tensor& input, std::vector<int64_t> output_splits,
                std::vector<int64_t> input_splits) override {
    const int64_t row = input.size(0) > 0 ? nbytes(input) / input.size(0) : 0;
    for (int r = 0; r < size(); ++r)
      if (r != rank()) bytes_sent_["alltoall"] += input_splits[static_cast<size_t>(r)] * row;
    launch("all-to-all", [&] { return pg_->alltoall_base(output, input, output_splits, input_splits); })->wait();
  }

  void barrier() override { launch("barrier", [&] { return pg_->barrier(); })->wait(); }

  std::vector<torch::Tensor> allgather(const torch::Tensor& tensor) override {
    bytes_sent_["allgather"] += nbytes(tensor) * (size() - 1);
    std::vector<torch::Tensor> in = {tensor.contiguous()};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < size(); ++r) out[0].push_back(torch::empty_like(in[0]));
    launch("all-gather", [&] { return pg_->allgather(out, in); })->wait();
    return out[0];
  }

  std::vector<torch::Tensor> gather(const torch::Tensor& tensor, int root) override {
    std::vector<torch::Tensor> in = {tensor.contiguous()};
    std::vector<std::vector<torch::Tensor>> out;
    if (rank() == root) {
      out.resize(1);
      for (int r = 0; r < size(); ++r) out[0].push_back(torch::empty_like(in[0]));
    } else {
      bytes_sent_["gather"] += nbytes(tensor);
    }
    c10d::GatherOptions o;
    o.rootRank = root;
    launch("gather", [&] { return pg_->gather(out, in, o); })->wait();
    return rank() == root ? out[0] : std::vector<torch::Tensor>{};
  }

  std::vector<std::string> allgather_string(const std::string& key, const std::string& value) override {
    const std::string base = "thor/" + key + "/" + std::to_string(generation_[key]++) + "/";
    std::vector<std::string> out(static_cast<size_t>(size()));
    try {
      store_->set(base + std::to_string(rank()), std::vector<uint8_t>(value.begin(), value.end()));
      for (int r = 0; r < size(); ++r) {
        auto v = store_->get(base + std::to_string(r));
        out[static_cast<size_t>(r)].assign(v.begin(), v.end());
      }
    } catch (const std::exception& e) {
      throw Error(describe_failure(*heartbeat_, size(), "exchange of " + key, e.what()));
    }
    return out;
  }

  [[noreturn]] void fail(const std::string& op, const std::string& why) {
    throw Error(describe_failure(*heartbeat_, size(), op, why));
  }

 private:
  template <typename F>
  std::unique_ptr<PendingOp> launch(const std::string& op, F&& start) {
    try {
      return std::make_unique<C10dPending>(start(), this, op);
    } catch (const std::exception& e) {
      fail(op, e.what());
    }
  }

  DistEnv env_;
  CommOptions opt_;
  std::string backend_name_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<Backend> pg_;
  std::unique_ptr<Heartbeat> heartbeat_;
  std::map<std::string, int64_t> generation_;
};

void C10dPending::wait() {
  try {
    work_->wait();
  } catch (const std::exception& e) {
    comm_->fail(op_, e.what());
  }
}

}  // namespace

std::unique_ptr<Communicator> local_communicator() { return std::make_unique<LocalCommunicator>(); }

std::unique_ptr<Communicator> connect(const DistEnv& env, const CommOptions& opt) {
  return std::make_unique<C10dCommunicator>(env, opt);
}

}  // namespace thor::dist
