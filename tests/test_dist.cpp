// Distributed training on real processes over loopback (Gloo): launcher environments,
// 2-rank data parallel against one process on the same global batch, resume across rank
// counts, validation equal to one process, refused mismatches and a killed rank.
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "process.h"
#include "thor/common/error.h"
#include "thor/dist/env.h"
#include "thor/dist/launch.h"
#include "thor/moe/router.h"
#include "thor/moe/router_random.h"
#include "thor/train/checkpoint.h"

namespace fs = std::filesystem;
using thor::dist::detect_env;

namespace {

std::function<const char*(const char*)> vars(std::map<std::string, std::string> m) {
  auto held = std::make_shared<std::map<std::string, std::string>>(std::move(m));
  return [held](const char* k) -> const char* {
    auto it = held->find(k);
    return it == held->end() ? nullptr : it->second.c_str();
  };
}

TEST(DistEnv, ReadsTorchrunMpirunAndSrun) {
  EXPECT_FALSE(detect_env(vars({})));
  EXPECT_FALSE(detect_env(vars({{"RANK", "0"}, {"WORLD_SIZE", "1"}})));  // a world of one
  auto t = detect_env(vars({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                            {"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "1234"}}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->launcher, "torchrun");
  EXPECT_EQ(t->rank, 3);
  EXPECT_EQ(t->world_size, 4);
  EXPECT_EQ(t->local_rank, 1);
  EXPECT_EQ(t->master_addr, "10.1.2.3");
  EXPECT_EQ(t->master_port, 1234);
  auto m = detect_env(vars({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                            {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->launcher, "mpirun");
  EXPECT_EQ(m->rank, 1);
  EXPECT_EQ(m->master_addr, "127.0.0.1");  // every rank on this machine
  EXPECT_EQ(m->master_port, 29500);
  auto s = detect_env(vars({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                            {"SLURM_NNODES", "2"}, {"SLURM_JOB_NODELIST", "gpu[07-08]"}, {"MASTER_PORT", "29600"}}));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->launcher, "srun");
  EXPECT_EQ(s->rank, 5);
  EXPECT_EQ(s->local_world_size, 4);
  EXPECT_EQ(s->master_addr, "gpu07");
  EXPECT_EQ(s->master_port, 29600);
  EXPECT_EQ(thor::dist::first_slurm_host("a1,b[2-3]"), "a1");
  EXPECT_EQ(thor::dist::first_slurm_host("node[003,005-007]"), "node003");
  // errors name the variable
  try {
    detect_env(vars({{"RANK", "2"}, {"WORLD_SIZE", "2"}}));
    FAIL();
  } catch (const thor::Error& e) {
    EXPECT_NE(std::string(e.what()).find("RANK=2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(detect_env(vars({{"RANK", "x"}, {"WORLD_SIZE", "2"}})), thor::Error);
  // several machines need the address of rank 0's
  EXPECT_THROW(detect_env(vars({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}})),
               thor::Error);
}

TEST(DistLaunch, DropsTheLauncherOption) {
  EXPECT_EQ(thor::dist::without_option({"thor", "train", "--nproc-per-node", "2", "d"}, "--nproc-per-node"),
            (std::vector<std::string>{"thor", "train", "d"}));
  EXPECT_EQ(thor::dist::without_option({"thor", "--nproc-per-node=2", "d"}, "--nproc-per-node"),
            (std::vector<std::string>{"thor", "d"}));
  EXPECT_GT(thor::dist::free_port(), 0);
}

fs::path data() { return thor::testing::prepared_toy_data("dist_data", 240, 16, 41); }

// a small model, 1 thread per rank, several batches per epoch
std::vector<std::string> train_args(const fs::path& save, int64_t max_update, const std::vector<std::string>& extra) {
  std::vector<std::string> a = {"--threads", "1", "train", data().string(), "--encoder-embed-dim", "32", "--ffn-dim",
                                "64", "--encoder-layers", "2", "--decoder-layers", "2", "--attention-heads", "2",
                                "--share-all-embeddings", "--max-tokens", "300", "--max-update",
                                std::to_string(max_update), "--lr", "2e-3", "--warmup-updates", "3", "--log-interval",
                                "1", "--eval-beam", "2", "--validate-interval-updates", "4", "--workers", "1",
                                "--no-progress", "--save-dir", save.string()};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

int run_thor(const std::vector<std::string>& args, const fs::path& err) {
  return thor::testing::start_thor(args, err.string()).wait();
}

std::vector<nlohmann::json> log_lines(const fs::path& save, const char* key) {
  std::vector<nlohmann::json> out;
  for (auto& l : thor::testing::read_file(save / "train_log.jsonl")) {
    auto j = nlohmann::json::parse(l);
    if (j.contains(key)) out.push_back(j);
  }
  return out;
}

void expect_same_model(const fs::path& a, const fs::path& b, double tol) {
  auto ma = thor::load_model((a / "checkpoint_last.pt").string(), torch::kCPU);
  auto mb = thor::load_model((b / "checkpoint_last.pt").string(), torch::kCPU);
  EXPECT_EQ(ma.train_state["position"]["num_updates"], mb.train_state["position"]["num_updates"]);
  auto pb = mb.model->named_parameters();
  for (auto& kv : ma.model->named_parameters()) thor::testing::expect_close(kv.value(), pb[kv.key()], tol, tol);
}

void expect_same_curves(const fs::path& a, const fs::path& b) {
  auto la = log_lines(a, "gnorm"), lb = log_lines(b, "gnorm");
  ASSERT_EQ(la.size(), lb.size());
  ASSERT_FALSE(la.empty());
  for (size_t i = 0; i < la.size(); ++i)
    for (auto key : {"loss", "nll", "gnorm"})
      EXPECT_NEAR(la[i][key].get<double>(), lb[i][key].get<double>(), 1e-4 * std::abs(la[i][key].get<double>()))
          << key << " at update " << i + 1;
}

// 2 ranks x update-freq 1 take the batches one process takes with update-freq 2, with the
// same expert draws and dropout seeds: the same training up to the order of float sums
// (dropout on, THOR's two passes); the validation split over the ranks gives the same loss
// and, for the dense model, the same BLEU (THOR's sentence draws in beam search come per
// translator batch, and the ranks' batches are other ones).
TEST(DataParallel, TwoRanksEqualOneProcessOnTheSameGlobalBatch) {
  for (std::string model : {"dense", "thor"}) {
    SCOPED_TRACE(model);
    auto dir = thor::testing::temp_dir("dp_equal_" + model);
    std::vector<std::string> extra = {"--dropout", "0.2"};
    if (model == "thor") extra.insert(extra.end(), {"--num-experts", "2", "--router", "thor"});
    auto one = train_args(dir / "one", 8, extra);
    one.insert(one.end(), {"--update-freq", "2"});
    ASSERT_EQ(run_thor(one, dir / "one.log"), 0) << (dir / "one.log");
    auto two = train_args(dir / "two", 8, extra);
    two.insert(two.end(), {"--nproc-per-node", "2"});
    ASSERT_EQ(run_thor(two, dir / "two.log"), 0) << (dir / "two.log");
    expect_same_curves(dir / "one", dir / "two");
    expect_same_model(dir / "one", dir / "two", 1e-5);
    auto va = log_lines(dir / "one", "valid_loss"), vb = log_lines(dir / "two", "valid_loss");
    ASSERT_EQ(va.size(), vb.size());
    for (size_t i = 0; i < va.size(); ++i) {
      EXPECT_NEAR(va[i]["valid_loss"].get<double>(), vb[i]["valid_loss"].get<double>(), 1e-4);
      if (model == "dense") {
        EXPECT_DOUBLE_EQ(va[i]["valid_bleu"].get<double>(), vb[i]["valid_bleu"].get<double>());
      }
    }
    // the all-reduce traffic is reported per update; rank 1 kept quiet and wrote nothing
    auto lines = log_lines(dir / "two", "gnorm");
    ASSERT_FALSE(lines.empty());
    EXPECT_GT(lines.back().value("sent_mb_allreduce", 0.0), 0.0);
    int rank1_info = 0;
    for (auto& l : thor::testing::read_file(dir / "two.log")) rank1_info += l.rfind("[rank 1 train]", 0) == 0;
    EXPECT_EQ(rank1_info, 0);
  }
}

// Data parallel composes with --workers inside each rank: 2 ranks x 2 shards equal one
// process with 2 shards and update-freq 2 (the shards' gradients summed in the same order).
TEST(DataParallel, ComposesWithWorkersInsideEachRank) {
  auto dir = thor::testing::temp_dir("dp_workers");
  auto with_workers = [](std::vector<std::string> a) {
    for (size_t i = 0; i + 1 < a.size(); ++i)
      if (a[i] == "--workers") a[i + 1] = "2";
      else if (a[i] == "--threads") a[i + 1] = "2";
    return a;
  };
  auto one = with_workers(train_args(dir / "one", 4, {"--update-freq", "2", "--dropout", "0.2"}));
  ASSERT_EQ(run_thor(one, dir / "one.log"), 0) << (dir / "one.log");
  auto two = with_workers(train_args(dir / "two", 4, {"--nproc-per-node", "2", "--dropout", "0.2"}));
  ASSERT_EQ(run_thor(two, dir / "two.log"), 0) << (dir / "two.log");
  expect_same_curves(dir / "one", dir / "two");
  expect_same_model(dir / "one", dir / "two", 1e-5);
}

// A checkpoint of 2 ranks continues in one process and one of one process on 2 ranks: the
// data position is global, so both equal one process straight through.
TEST(DataParallel, ResumesAcrossRankCounts) {
  auto dir = thor::testing::temp_dir("dp_resume");
  std::vector<std::string> one_proc = {"--update-freq", "2"}, two_ranks = {"--nproc-per-node", "2"};
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  ASSERT_EQ(run_thor(with(train_args(dir / "straight", 8, {}), one_proc), dir / "s.log"), 0);
  ASSERT_EQ(run_thor(with(train_args(dir / "a", 4, {}), two_ranks), dir / "a.log"), 0) << (dir / "a.log");
  ASSERT_EQ(run_thor(with(with(train_args(dir / "a", 8, {}), one_proc), {"--resume"}), dir / "a.log"), 0);
  ASSERT_EQ(run_thor(with(train_args(dir / "b", 4, {}), one_proc), dir / "b.log"), 0);
  ASSERT_EQ(run_thor(with(with(train_args(dir / "b", 8, {}), two_ranks), {"--resume"}), dir / "b.log"), 0)
      << (dir / "b.log");
  expect_same_model(dir / "straight", dir / "a", 1e-5);
  expect_same_model(dir / "straight", dir / "b", 1e-5);
}

// Open MPI's mpirun starts the ranks (OMPI_COMM_WORLD_*; the rendezvous on loopback since
// every rank is on this machine): the same training as one process with update-freq 2.
TEST(DataParallel, MpirunLaunchesTheRanks) {
  ASSERT_EQ(std::system("command -v mpirun > /dev/null"), 0) << "mpirun missing: scripts/install-deps.sh installs openmpi-bin";
  auto dir = thor::testing::temp_dir("dp_mpirun");
  auto one = train_args(dir / "one", 4, {"--update-freq", "2"});
  ASSERT_EQ(run_thor(one, dir / "one.log"), 0);
  std::string cmd = "mpirun -np 2 --allow-run-as-root --oversubscribe -x MASTER_PORT=" +
                    std::to_string(thor::dist::free_port()) + " " + THOR_BIN;
  for (auto& a : train_args(dir / "mpi", 4, {})) cmd += " '" + a + "'";
  cmd += " > /dev/null 2> " + (dir / "mpi.log").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << (dir / "mpi.log");
  bool launched = false;
  for (auto& l : thor::testing::read_file(dir / "mpi.log"))
    launched = launched || l.find("rank 0 of 2 (mpirun)") != std::string::npos;
  EXPECT_TRUE(launched);
  expect_same_model(dir / "one", dir / "mpi", 1e-5);
}

// Ranks started by hand as torchrun would (RANK, WORLD_SIZE, MASTER_*).
std::vector<thor::testing::Child> start_ranks(const std::vector<std::vector<std::string>>& args, const fs::path& dir) {
  int port = thor::dist::free_port();
  std::vector<thor::testing::Child> ranks;
  for (size_t r = 0; r < args.size(); ++r)
    ranks.push_back(thor::testing::start_thor(args[r], (dir / ("rank" + std::to_string(r) + ".log")).string(),
                                              {{"RANK", std::to_string(r)},
                                               {"WORLD_SIZE", std::to_string(args.size())},
                                               {"MASTER_ADDR", "127.0.0.1"},
                                               {"MASTER_PORT", std::to_string(port)}}));
  return ranks;
}

std::string last_error(const fs::path& log) {
  std::string e;
  for (auto& l : thor::testing::read_file(log))
    if (l.rfind("thor: error:", 0) == 0) e = l;
  return e;
}

TEST(DataParallel, RanksThatDisagreeAreRefusedAtStart) {
  auto dir = thor::testing::temp_dir("dp_disagree");
  auto ranks = start_ranks({train_args(dir / "ck", 4, {"--dropout", "0.1"}), train_args(dir / "ck", 4, {"--dropout", "0.3"})}, dir);
  for (auto& r : ranks) EXPECT_EQ(r.wait(std::chrono::seconds(120)), 1);
  auto e = last_error(dir / "rank1.log");
  EXPECT_NE(e.find("ranks disagree on the model configuration"), std::string::npos) << e;
  EXPECT_NE(e.find("rank 1"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir / "ck" / "checkpoint_last.pt"));
}

// A rank killed mid-run: the other exits with one error line naming it, well within the
// timeout, and leaves no half-written checkpoint; the launcher names it too.
TEST(DataParallel, AKilledRankEndsTheRunWithAnErrorNamingIt) {
  auto dir = thor::testing::temp_dir("dp_killed");
  auto args = train_args(dir / "ck", 100000, {"--distributed-timeout", "60", "--save-interval-updates", "5"});
  auto ranks = start_ranks({args, args}, dir);
  // wait for training to be under way
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (log_lines(dir / "ck", "gnorm").size() < 6 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_GE(log_lines(dir / "ck", "gnorm").size(), 6u);
  ranks[1].kill(SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ranks[0].wait(std::chrono::seconds(90)), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  ranks[1].wait();
  auto e = last_error(dir / "rank0.log");
  EXPECT_NE(e.find("rank 1 is gone or not answering"), std::string::npos) << e;
  for (auto& f : fs::directory_iterator(dir / "ck")) EXPECT_NE(f.path().extension(), ".tmp") << f.path();
  EXPECT_NO_THROW(thor::read_train_state((dir / "ck" / "checkpoint_last.pt").string()));

  // the same through --nproc-per-node: the launcher stops the survivor and says which rank failed
  auto dir2 = thor::testing::temp_dir("dp_killed_launcher");
  auto launched = train_args(dir2 / "ck", 100000, {"--nproc-per-node", "2"});
  auto parent = thor::testing::start_thor(launched, (dir2 / "run.log").string());
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (log_lines(dir2 / "ck", "gnorm").size() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // rank 1 is the parent's second child
  std::string pids;
  {
    FILE* p = ::popen(("pgrep -P " + std::to_string(parent.pid)).c_str(), "r");
    char buf[64];
    while (p && std::fgets(buf, sizeof buf, p)) pids += buf;
    if (p) ::pclose(p);
  }
  std::vector<pid_t> children;
  for (size_t pos = 0; pos < pids.size();) {
    size_t nl = pids.find('\n', pos);
    children.push_back(static_cast<pid_t>(std::stol(pids.substr(pos, nl - pos))));
    pos = nl + 1;
  }
  ASSERT_EQ(children.size(), 2u) << pids;
  std::sort(children.begin(), children.end());
  ::kill(children[1], SIGKILL);
  EXPECT_NE(parent.wait(std::chrono::seconds(90)), 0);
  bool named = false;
  for (auto& l : thor::testing::read_file(dir2 / "run.log")) named = named || l.find("[launch] rank 1 was killed by signal 9") != std::string::npos;
  EXPECT_TRUE(named);
}

// --expert-parallel with THOR: each rank holds E / W experts and draws among its own; the
// gradients of the experts never cross ranks, the run sends no all-to-all bytes, and the
// all-reduce carries only the replicated parameters. The checkpoint loads as the whole model.
TEST(ExpertParallel, ThorShardsItsExpertsWithNoTokenTraffic) {
  auto dir = thor::testing::temp_dir("ep_thor");
  std::vector<std::string> ep = {"--num-experts", "4", "--router", "thor", "--expert-parallel", "--nproc-per-node", "2"};
  ASSERT_EQ(run_thor(train_args(dir / "ck", 8, ep), dir / "ep.log"), 0) << (dir / "ep.log");
  bool announced = false;
  for (auto& l : thor::testing::read_file(dir / "ep.log"))
    announced = announced || l.find("rank 0 holds experts 0..1 of every expert layer") != std::string::npos;
  EXPECT_TRUE(announced);
  auto whole = thor::load_model((dir / "ck" / "checkpoint_last.pt").string(), torch::kCPU);
  int64_t replicated = 0, experts = 0;
  for (auto& kv : whole.model->named_parameters()) {
    bool expert = kv.key().find(".ffn.") != std::string::npos && kv.value().size(0) == 4;
    (expert ? experts : replicated) += kv.value().numel();
  }
  EXPECT_GT(experts, 0);
  auto lines = log_lines(dir / "ck", "gnorm");
  ASSERT_EQ(lines.size(), 8u);
  std::vector<double> share(4, 0.0);
  for (auto& l : lines) {
    EXPECT_FALSE(l.contains("sent_mb_alltoall"));
    // ring all-reduce on 2 ranks sends the payload once: the replicated parameters, one
    // used-flag per parameter and a few scalars; none of the experts' 4 x ... values
    double mb = l["sent_mb_allreduce"].get<double>();
    EXPECT_NEAR(mb, replicated * 4 / 1e6, 0.01 * replicated * 4 / 1e6);
    for (auto& layer : l["experts"])
      for (int e = 0; e < 4; ++e) share[e] += layer["share"][e].get<double>();
  }
  for (int e = 0; e < 4; ++e) EXPECT_GT(share[e], 0.0) << "expert " << e << " never drawn";  // both ranks' experts trained
  // the whole model translates as any checkpoint
  auto tr = thor::testing::start_thor({"translate", "--model", (dir / "ck" / "checkpoint_last.pt").string(), "--input",
                                       (data().parent_path() / "valid.src").string()},
                                      (dir / "tr.log").string());
  EXPECT_EQ(tr.wait(), 0) << (dir / "tr.log");
}

// Expert-parallel checkpoints are saved per rank: rank 1's experts (values and moments) in
// experts_N_1of2.pt beside the checkpoint, which names it; shards of checkpoints no longer
// kept are removed; a missing or mismatched shard is refused with one line naming it.
TEST(ExpertParallel, CheckpointsKeepEachRanksExpertsInItsOwnFile) {
  auto dir = thor::testing::temp_dir("ep_files");
  std::vector<std::string> ep = {"--num-experts", "4",   "--router", "thor", "--expert-parallel", "--nproc-per-node", "2",
                                 "--save-interval-updates", "2", "--keep-last", "1"};
  ASSERT_EQ(run_thor(train_args(dir / "ck", 10, ep), dir / "ep.log"), 0) << (dir / "ep.log");
  const auto ck = dir / "ck";
  std::set<std::string> shards;
  for (auto& e : fs::directory_iterator(ck))
    if (e.path().filename().string().rfind("experts_", 0) == 0) shards.insert(e.path().filename().string());
  // kept: checkpoint_last = checkpoint_10 and checkpoint_best (validated at 4 and 8)
  auto best = thor::read_train_state((ck / "checkpoint_best.pt").string())["position"]["best_update"].get<int64_t>();
  ASSERT_TRUE(best == 4 || best == 8) << best;
  std::set<std::string> expected = {"experts_10_1of2.pt", "experts_" + std::to_string(best) + "_1of2.pt"};
  EXPECT_EQ(shards, expected);
  EXPECT_TRUE(fs::exists(ck / "checkpoint_10.pt"));
  EXPECT_FALSE(fs::exists(ck / "checkpoint_8.pt"));
  auto last = thor::load_model((ck / "checkpoint_last.pt").string(), torch::kCPU);
  auto best_model = thor::load_model((ck / "checkpoint_best.pt").string(), torch::kCPU);
  EXPECT_EQ(best_model.train_state["position"]["num_updates"], best);
  EXPECT_EQ(last.model->expert_layers().front()->w1.size(0), 4);
  // rank 1's rows come from its file: a one-process view of the same experts
  thor::Adam whole(last.model->parameters(), thor::AdamOptions{}, false);
  thor::load_training_state((ck / "checkpoint_last.pt").string(), whole);
  auto params = last.model->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(whole.exp_avg(i).sizes().equals(params[i].sizes())) << i;
    EXPECT_GT(whole.exp_avg_sq(i).abs().sum().item<double>(), 0.0) << "parameter " << i << " has no moments";
  }
  // a missing shard: one error line naming it, from translate too
  fs::rename(ck / "experts_10_1of2.pt", dir / "moved.pt");
  try {
    thor::load_model((ck / "checkpoint_last.pt").string(), torch::kCPU);
    ADD_FAILURE() << "a checkpoint without its shard loaded";
  } catch (const thor::Error& e) {
    EXPECT_NE(std::string(e.what()).find("experts_10_1of2.pt is missing"), std::string::npos) << e.what();
  }
  auto tr = thor::testing::start_thor({"translate", "--model", (ck / "checkpoint_last.pt").string(), "--input",
                                       (data().parent_path() / "valid.src").string()},
                                      (dir / "tr.log").string());
  EXPECT_NE(tr.wait(), 0);
  bool named = false;
  for (auto& l : thor::testing::read_file(dir / "tr.log")) named = named || l.find("experts_10_1of2.pt is missing") != std::string::npos;
  EXPECT_TRUE(named);
  // another update's shard under the expected name
  if (best != 10) {
    fs::copy_file(ck / ("experts_" + std::to_string(best) + "_1of2.pt"), ck / "experts_10_1of2.pt");
    try {
      thor::load_model((ck / "checkpoint_last.pt").string(), torch::kCPU);
      ADD_FAILURE() << "a checkpoint with another update's shard loaded";
    } catch (const thor::Error& e) {
      EXPECT_NE(std::string(e.what()).find("expects shard 1 of 2 at update 10"), std::string::npos) << e.what();
    }
  }
}

// The experts' shards and their Adam moments are assembled from the shard files and sliced
// again on resume: a resumed 2-rank run equals the uninterrupted one bit for bit; the
// checkpoint also continues in one process, and one process's checkpoint on 2 sharded ranks.
TEST(ExpertParallel, ResumeSlicesTheShardedCheckpoint) {
  auto dir = thor::testing::temp_dir("ep_resume");
  std::vector<std::string> ep = {"--num-experts", "4", "--router", "thor", "--expert-parallel", "--nproc-per-node", "2"};
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  ASSERT_EQ(run_thor(train_args(dir / "straight", 8, ep), dir / "s.log"), 0) << (dir / "s.log");
  ASSERT_EQ(run_thor(train_args(dir / "resumed", 4, ep), dir / "r.log"), 0) << (dir / "r.log");
  ASSERT_EQ(run_thor(with(train_args(dir / "resumed", 8, ep), {"--resume"}), dir / "r.log"), 0) << (dir / "r.log");
  expect_same_model(dir / "straight", dir / "resumed", 0.0);
  // 2 sharded ranks -> 1 process, and 1 process -> 2 sharded ranks
  ASSERT_EQ(run_thor(train_args(dir / "resumed", 10, {"--num-experts", "4", "--router", "thor", "--resume"}), dir / "r.log"), 0);
  ASSERT_EQ(run_thor(train_args(dir / "one", 4, {"--num-experts", "4", "--router", "thor"}), dir / "o.log"), 0);
  ASSERT_EQ(run_thor(with(train_args(dir / "one", 8, ep), {"--resume"}), dir / "o.log"), 0) << (dir / "o.log");
  for (auto d : {"resumed", "one"}) {
    auto m = thor::load_model((dir / d / "checkpoint_last.pt").string(), torch::kCPU);
    EXPECT_EQ(m.train_state["position"]["num_updates"], std::string(d) == "one" ? 8 : 10) << d;
    EXPECT_EQ(m.model->expert_layers().front()->w1.size(0), 4) << d;
  }
}

// A shard's router draws uniformly among its own experts only, so over many updates every
// expert of the model gets 1/E of the draws (each rank 1/W of the batches, each of its
// E/W experts 1/(E/W) of those).
TEST(ExpertParallel, ShardsDrawUniformlyAmongTheirOwnExperts) {
  thor::ModelConfig c;
  c.num_experts = 8;
  c.router = "thor";
  std::vector<int64_t> count(8, 0);
  const int draws = 4000;
  for (int64_t shard = 0; shard < 2; ++shard) {
    c.expert_shards = 2, c.expert_shard = shard;
    thor::RandomRouterImpl router(c);
    for (int i = 0; i < draws; ++i)
      for (auto e : router.draw_groups(2)) {
        ASSERT_GE(e, 4 * shard);
        ASSERT_LT(e, 4 * shard + 4);
        ++count[static_cast<size_t>(e)];
      }
  }
  // each expert: 2 x 4000 draws x 1/4 of its shard's = 2000 expected; binomial sd ~39
  for (int e = 0; e < 8; ++e) EXPECT_NEAR(count[static_cast<size_t>(e)], 2000, 200) << e;
  c.route_level = "token";
  EXPECT_THROW(thor::RandomRouterImpl bad(c), thor::Error);
}

// W ranks as threads of this process: allgather through shared memory and a barrier.
class MemoryExchange {
 public:
  explicit MemoryExchange(int ranks) : ranks_(ranks), slots_(static_cast<size_t>(ranks)) {}
  class Rank : public thor::TokenExchange {
   public:
    Rank(MemoryExchange& m, int r) : m_(m), r_(r) {}
    int ranks() const override { return m_.ranks_; }
    int rank() const override { return r_; }
    torch::Tensor alltoall(const torch::Tensor&, const std::vector<int64_t>&, const std::vector<int64_t>&) override {
      throw std::logic_error("not used here");
    }
    torch::Tensor allgather(const torch::Tensor& t) override {
      m_.slots_[static_cast<size_t>(r_)] = t.clone();
      m_.barrier();
      auto out = torch::stack(m_.slots_);
      m_.barrier();
      return out;
    }

   private:
    MemoryExchange& m_;
    int r_;
  };

 private:
  void barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    int gen = generation_;
    if (++arrived_ == ranks_) {
      arrived_ = 0, ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }
  int ranks_;
  std::vector<torch::Tensor> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0, generation_ = 0;
};

// Capacity and the balance loss of gated routers over the global batch: 2 ranks' tokens
// give the decisions and the loss of one router over their concatenation (rank order).
TEST(ExpertParallel, GlobalCapacityAndBalanceEqualOneRouterOverTheGlobalBatch) {
  torch::manual_seed(11);
  const int64_t E = 4, N0 = 37, N1 = 29;
  std::vector<torch::Tensor> probs = {torch::softmax(torch::randn({N0, E}) * 2, -1), torch::softmax(torch::randn({N1, E}) * 2, -1)};
  std::vector<torch::Tensor> valid = {torch::rand({N0}) > 0.1, torch::rand({N1}) > 0.1};
  std::vector<torch::Tensor> experts, top1;
  for (int r = 0; r < 2; ++r) {
    auto top = probs[r].topk(2, -1);
    experts.push_back(std::get<1>(top).masked_fill(valid[r].logical_not().unsqueeze(1), -1).clone());
    top1.push_back(std::get<1>(top).select(1, 0));
  }
  auto whole_e = torch::cat(experts).clone();
  auto whole_valid = torch::cat(valid);
  thor::apply_global_capacity(whole_e, 0.6, 2, E, whole_valid.sum().item<int64_t>(), nullptr);
  auto whole_loss = thor::load_balancing_loss(torch::cat(probs), torch::cat(top1), whole_valid, E, 0.01);
  MemoryExchange mem(2);
  std::vector<double> parts(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      MemoryExchange::Rank ex(mem, r);
      thor::apply_global_capacity(experts[r], 0.6, 2, E, valid[r].sum().item<int64_t>(), &ex);
      auto part = thor::load_balancing_loss(probs[r], top1[r], valid[r], E, 0.01, &ex);
      // undo the global / local token scale the objective's per-rank weighting needs
      parts[r] = part.item<double>() * valid[r].sum().item<double>() / whole_valid.sum().item<double>();
    });
  for (auto& t : threads) t.join();
  EXPECT_TRUE(torch::equal(torch::cat(experts), whole_e));
  EXPECT_GT((whole_e < 0).logical_and(whole_valid.unsqueeze(1)).sum().item<int64_t>(), 0);  // capacity did drop some
  EXPECT_NEAR(parts[0] + parts[1], whole_loss.item<double>(), 1e-7);
}

// Switch with its experts sharded: tokens go to their expert's rank and back (all-to-all,
// forward and backward). Without capacity and auxiliary losses the step is that of one
// process holding every expert on the same global batch.
TEST(ExpertParallel, SwitchOverAllToAllEqualsOneProcessWithAllExperts) {
  auto dir = thor::testing::temp_dir("ep_switch");
  std::vector<std::string> moe = {"--num-experts", "4", "--router", "switch", "--capacity-factor", "0",
                                  "--balance-alpha", "0", "--router-z-loss", "0", "--dropout", "0.1"};
  auto one = train_args(dir / "one", 6, moe);
  one.insert(one.end(), {"--update-freq", "2"});
  ASSERT_EQ(run_thor(one, dir / "one.log"), 0) << (dir / "one.log");
  auto ep = train_args(dir / "ep", 6, moe);
  ep.insert(ep.end(), {"--expert-parallel", "--nproc-per-node", "2"});
  ASSERT_EQ(run_thor(ep, dir / "ep.log"), 0) << (dir / "ep.log");
  expect_same_curves(dir / "one", dir / "ep");
  // (the experts' outputs are summed in another order: Adam makes last-bit differences of
  // near-zero gradients visible at 1e-5 after a few updates)
  expect_same_model(dir / "one", dir / "ep", 1e-4);
  auto lines = log_lines(dir / "ep", "gnorm");
  ASSERT_FALSE(lines.empty());
  EXPECT_GT(lines.back().value("sent_mb_alltoall", 0.0), 0.0);
  // with capacity and the balance loss (global statistics), gshard and hash train too
  for (std::string router : {"switch", "gshard", "hash"}) {
    auto args = train_args(dir / ("ck_" + router), 4, {"--num-experts", "4", "--router", router});
    args.insert(args.end(), {"--expert-parallel", "--nproc-per-node", "2"});
    EXPECT_EQ(run_thor(args, dir / (router + ".log")), 0) << (dir / (router + ".log"));
  }
}

TEST(ExpertParallel, RefusesLayoutsItCannotShard) {
  auto dir = thor::testing::temp_dir("ep_refused");
  struct Case {
    std::vector<std::string> flags;
    std::string says;
  };
  for (const auto& c : std::vector<Case>{
           {{"--num-experts", "2", "--router", "thor"}, "needs at least two experts per rank"},
           {{"--num-experts", "4", "--router", "switch"}, "use --workers 1 (2 asked)"},
           {{"--num-experts", "3", "--router", "random"}, "is not a multiple of the 2 ranks"}}) {
    auto flags = c.flags;
    flags.insert(flags.end(), {"--expert-parallel", "--nproc-per-node", "2"});
    auto log = dir / "refused.log";
    fs::remove(log);
    auto args = train_args(dir / "ck", 2, flags);
    if (c.says.find("--workers") != std::string::npos)  // two shards per rank, which a token exchange cannot run
      for (size_t i = 0; i + 1 < args.size(); ++i)
        if (args[i] == "--workers") args[i + 1] = "2";
    EXPECT_NE(run_thor(args, log), 0);
    bool said = false;
    for (auto& l : thor::testing::read_file(log)) said = said || (l.rfind("thor: error:", 0) == 0 && l.find(c.says) != std::string::npos);
    EXPECT_TRUE(said) << c.says << " (see " << log << ")";
  }
}

}  // namespace
