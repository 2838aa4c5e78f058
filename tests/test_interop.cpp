// safetensors in and out: the round trip is exact (parameters bit for bit, the second export
// byte for byte, the same translations), NumPy reads the file by the published spec alone,
// and malformed files and mismatched models are refused with a line naming the problem.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "thor/common/error.h"
#include "thor/common/safetensors.h"
#include "thor/train/checkpoint.h"
#include "thor/train/interop.h"

namespace fs = std::filesystem;
using thor::testing::sh;
using thor::testing::slurp;

namespace {

// A THOR checkpoint (2 experts) trained a few updates, in its own directory.
fs::path thor_checkpoint() {
  static fs::path ck = [] {
    auto dir = thor::testing::temp_dir("interop");
    thor::testing::make_toy_corpus(dir / "train", 120, 71, "en", "de");
    thor::testing::make_toy_corpus(dir / "valid", 6, 72, "en", "de");
    const std::string bin = THOR_BIN;
    EXPECT_EQ(sh(bin + " --threads 1 prepare -s en -t de --trainpref " + (dir / "train").string() + " --validpref " +
                 (dir / "valid").string() + " --destdir " + (dir / "data").string() + " --vocab-size 80 2> /dev/null"),
              0);
    EXPECT_EQ(sh(bin + " --threads 1 train " + (dir / "data").string() +
                 " --encoder-embed-dim 16 --ffn-dim 32 --encoder-layers 2 --decoder-layers 2 --attention-heads 2"
                 " --share-all-embeddings --num-experts 2 --router thor --max-tokens 300 --max-update 4 --no-eval-bleu"
                 " --no-progress --save-dir " + (dir / "ck").string() + " 2> /dev/null"),
              0);
    return dir / "ck" / "checkpoint_last.pt";
  }();
  return ck;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const thor::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Safetensors, RoundTripIsExact) {
  const auto ck = thor_checkpoint();
  const auto dir = ck.parent_path().parent_path();
  thor::export_safetensors(ck.string(), (dir / "st").string());
  for (auto f : {"model.safetensors", "config.json", "sentencepiece.model"}) EXPECT_TRUE(fs::exists(dir / "st" / f)) << f;
  thor::import_safetensors((dir / "st").string(), (dir / "imported.pt").string());
  auto a = thor::load_model(ck.string(), torch::kCPU), b = thor::load_model((dir / "imported.pt").string(), torch::kCPU);
  auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  double max_diff = 0;
  for (auto& kv : pa) max_diff = std::max(max_diff, (kv.value() - pb[kv.key()]).abs().max().item<double>());
  EXPECT_EQ(max_diff, 0.0);
  EXPECT_EQ(nlohmann::json(a.config).dump(), nlohmann::json(b.config).dump());
  EXPECT_EQ(a.vocab.serialized(), b.vocab.serialized());
  EXPECT_EQ(a.train_state.at("meta"), b.train_state.at("meta"));
  // exported again: the same bytes
  thor::export_safetensors((dir / "imported.pt").string(), (dir / "st2").string());
  EXPECT_EQ(slurp(dir / "st" / "model.safetensors"), slurp(dir / "st2" / "model.safetensors"));
  EXPECT_EQ(slurp(dir / "st" / "config.json"), slurp(dir / "st2" / "config.json"));
  // config.json speaks Hugging Face's names
  auto cfg = nlohmann::json::parse(slurp(dir / "st" / "config.json"));
  EXPECT_EQ(cfg.at("d_model"), 16);
  EXPECT_EQ(cfg.at("encoder_ffn_dim"), 32);
  EXPECT_EQ(cfg.at("encoder_attention_heads"), 2);
  EXPECT_EQ(cfg.at("num_experts"), 2);
  EXPECT_EQ(cfg.at("source_lang"), "en");
  // the same translations from both checkpoints (a fixed expert: no random draw)
  const std::string bin = THOR_BIN;
  for (auto [name, model] : {std::pair{"orig", ck}, std::pair{"imported", dir / "imported.pt"}})
    ASSERT_EQ(sh(bin + " --threads 1 translate --beam 2 --expert-select fixed:1 --model " + model.string() + " --input " +
                 (dir / "valid.en").string() + " > " + (dir / (std::string(name) + ".out")).string() + " 2> /dev/null"),
              0);
  EXPECT_EQ(slurp(dir / "orig.out"), slurp(dir / "imported.out"));
  EXPECT_FALSE(slurp(dir / "orig.out").empty());
  // and through the command line, a THOR model made dense on the way (--expert)
  ASSERT_EQ(sh(bin + " export --model " + ck.string() + " --format safetensors --expert 1 --out " + (dir / "st-dense").string() +
               " 2> /dev/null && " + bin + " import --from " + (dir / "st-dense").string() + " --out " +
               (dir / "dense.pt").string() + " 2> /dev/null && " + bin + " --threads 1 translate --beam 2 --model " +
               (dir / "dense.pt").string() + " --input " + (dir / "valid.en").string() + " > " + (dir / "dense.out").string() +
               " 2> /dev/null"),
            0);
  EXPECT_EQ(slurp(dir / "orig.out"), slurp(dir / "dense.out"));
}

TEST(Safetensors, NumpyReadsTheFileByTheSpec) {
  const auto ck = thor_checkpoint();
  const auto dir = ck.parent_path().parent_path();
  thor::export_safetensors(ck.string(), (dir / "st-np").string());
  ASSERT_EQ(sh("/usr/bin/python3 " + std::string(THOR_SOURCE_DIR) + "/tests/safetensors_numpy.py " +
               (dir / "st-np" / "model.safetensors").string() + " > " + (dir / "np.json").string()),
            0)
      << "needs Debian's python3-numpy (bash scripts/install-deps.sh)";
  auto np = nlohmann::json::parse(slurp(dir / "np.json"));
  auto lm = thor::load_model(ck.string(), torch::kCPU);
  size_t checked = 0;
  for (auto& kv : lm.model->named_parameters()) {
    ASSERT_TRUE(np.contains(kv.key())) << kv.key();
    const auto& e = np[kv.key()];
    EXPECT_EQ(e.at("dtype"), "F32");
    EXPECT_EQ(e.at("shape").get<std::vector<int64_t>>(), kv.value().sizes().vec()) << kv.key();
    auto flat = kv.value().reshape({-1});
    EXPECT_EQ(e.at("first").get<double>(), flat[0].item<double>()) << kv.key();
    EXPECT_EQ(e.at("last").get<double>(), flat[-1].item<double>()) << kv.key();
    EXPECT_NEAR(e.at("sum").get<double>(), kv.value().to(torch::kDouble).sum().item<double>(), 1e-9) << kv.key();
    ++checked;
  }
  EXPECT_GT(checked, 20u);
  EXPECT_EQ(np.at("__metadata__").at("producer"), "thor");
}

TEST(Safetensors, MalformedFilesAreRefusedSayingWhy) {
  auto dir = thor::testing::temp_dir("safetensors_bad");
  thor::Safetensors st;
  st.tensors = {{"a", torch::arange(6, torch::kFloat).reshape({2, 3})}, {"b", torch::tensor({7, 8}, torch::kLong)}};
  const auto good = (dir / "good.safetensors").string();
  thor::write_safetensors(good, st);
  auto back = thor::read_safetensors(good);
  ASSERT_EQ(back.tensors.size(), 2u);
  EXPECT_TRUE(torch::equal(back.tensors[0].second, st.tensors[0].second));
  EXPECT_EQ(back.tensors[1].first, "b");
  // a file made of a header and data bytes as given
  auto file = [&](const std::string& header, const std::string& data, int64_t claimed = -1) {
    const auto p = (dir / "bad.safetensors").string();
    std::ofstream out(p, std::ios::binary);
    const uint64_t n = claimed >= 0 ? static_cast<uint64_t>(claimed) : header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << data;
    out.close();
    return error_of([&] { thor::read_safetensors(p); });
  };
  const std::string f32x2 = std::string(8, '\0');
  EXPECT_NE(file("", "", 0).find("not a JSON object"), std::string::npos);
  EXPECT_NE(file("{}", "", 1000).find("a header of 1000 bytes in a file of 10"), std::string::npos);
  EXPECT_NE(file("{}", "", int64_t{1} << 40).find("over the 100 MB limit"), std::string::npos);
  EXPECT_NE(file("{\"a\": ", "").find("not valid JSON"), std::string::npos);
  EXPECT_NE(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2)
                .find("the name 'a' appears twice"),
            std::string::npos);
  EXPECT_NE(file(R"({"a":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}})", f32x2).find("unknown dtype 'F128'"),
            std::string::npos);
  EXPECT_NE(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", f32x2).find("outside the 8 data bytes"),
            std::string::npos);
  EXPECT_NE(file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32x2).find("8 bytes for a F32 tensor of 3 elements"),
            std::string::npos);
  EXPECT_NE(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                 f32x2)
                .find("overlaps"),
            std::string::npos);
  EXPECT_NE(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f32x2).find("a gap of 4 bytes"), std::string::npos);
  EXPECT_NE(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f32x2).find("4 data bytes belong to no tensor"),
            std::string::npos);
  EXPECT_NE(file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x2).find("not a non-negative integer"),
            std::string::npos);
  EXPECT_NE(file(R"({"a":{"dtype":"F32","shape":[2]}})", f32x2).find("lacks dtype, shape or data_offsets"), std::string::npos);
  EXPECT_NE(file(R"({"__metadata__":{"k":1}})", "").find("is not a string"), std::string::npos);
  // the good file cut short, and empty
  const auto bytes = slurp(good);
  std::ofstream(dir / "cut.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() - 5);
  EXPECT_NE(error_of([&] { thor::read_safetensors((dir / "cut.safetensors").string()); }).find("outside the"),
            std::string::npos);
  std::ofstream(dir / "empty.safetensors", std::ios::binary).close();
  EXPECT_NE(error_of([&] { thor::read_safetensors((dir / "empty.safetensors").string()); }).find("shorter than the 8-byte"),
            std::string::npos);
}

TEST(Safetensors, ImportRefusesAnotherModel) {
  const auto ck = thor_checkpoint();
  const auto dir = ck.parent_path().parent_path();
  thor::export_safetensors(ck.string(), (dir / "st-mm").string());
  const auto weights = (dir / "st-mm" / "model.safetensors").string();
  auto st = thor::read_safetensors(weights);
  auto rewrite = [&](const std::function<void(thor::Safetensors&)>& change) {
    auto copy = st;
    change(copy);
    thor::write_safetensors(weights, copy);
    return error_of([&] { thor::import_safetensors((dir / "st-mm").string(), (dir / "mm.pt").string()); });
  };
  const auto first = st.tensors.front().first;
  EXPECT_NE(rewrite([&](auto& s) { s.tensors.erase(s.tensors.begin()); }).find("tensor '" + first + "' missing"),
            std::string::npos);
  EXPECT_NE(rewrite([&](auto& s) { s.tensors.front().second = torch::zeros({3, 3}); }).find("the model needs"), std::string::npos);
  EXPECT_NE(rewrite([&](auto& s) { s.tensors.emplace_back("extra.weight", torch::zeros({1})); })
                .find("tensor 'extra.weight' is not part of this model"),
            std::string::npos);
  thor::write_safetensors(weights, st);
  // a config that is not this vocabulary's
  auto cfg = nlohmann::json::parse(slurp(dir / "st-mm" / "config.json"));
  cfg["thor"]["vocab_size"] = 81;
  std::ofstream(dir / "st-mm" / "config.json") << cfg.dump();
  EXPECT_NE(error_of([&] { thor::import_safetensors((dir / "st-mm").string(), (dir / "mm.pt").string()); })
                .find("sentencepiece.model has 80 pieces, the config says vocab_size 81"),
            std::string::npos);
  cfg["thor"]["d_model"] = 1e300;
  std::ofstream(dir / "st-mm" / "config.json") << cfg.dump();
  EXPECT_NE(error_of([&] { thor::import_safetensors((dir / "st-mm").string(), (dir / "mm.pt").string()); })
                .find("'d_model' must be an integer"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "mm.pt"));
}

// tools/convert_fairseq.py on synthetic fairseq checkpoints (dense and THOR, E = 2, written
// as torch.save writes them by tests/fake_fairseq_checkpoint.py): every thor tensor equals
// the one computed from the definitions, the vocabulary keeps fairseq's ids and the
// original segmentation, the decoder starts from </s>, and the result translates.
TEST(FairseqImport, TensorMappingOnSyntheticCheckpoints) {
  const auto ck = thor_checkpoint();
  const auto root = ck.parent_path().parent_path();
  const auto spm = root / "data" / "spm.model";
  auto original = thor::Vocab::from_file(spm.string());
  for (int experts : {1, 2}) {
    const auto dir = root / ("fairseq" + std::to_string(experts));
    fs::create_directories(dir);
    ASSERT_EQ(sh("/usr/bin/python3 " + std::string(THOR_SOURCE_DIR) + "/tests/fake_fairseq_checkpoint.py " + spm.string() +
                 " " + dir.string() + " " + std::to_string(experts)),
              0);
    ASSERT_EQ(sh("/usr/bin/python3 " + std::string(THOR_SOURCE_DIR) + "/tools/convert_fairseq.py " +
                 (dir / "checkpoint.pt").string() + " --dict " + (dir / "dict.txt").string() + " --spm " + spm.string() +
                 " --out " + (dir / "conv").string() + " 2> " + (dir / "convert.log").string()),
              0)
        << slurp(dir / "convert.log");
    thor::import_safetensors((dir / "conv").string(), (dir / "imported.pt").string());
    auto lm = thor::load_model((dir / "imported.pt").string(), torch::kCPU);
    EXPECT_EQ(lm.config.num_experts, experts);
    EXPECT_EQ(lm.config.bos_id, lm.config.eos_id);  // fairseq's decoder starts from </s>
    EXPECT_EQ(lm.train_state.at("meta").at("src_lang"), "de");
    auto expected = thor::read_safetensors((dir / "expected.safetensors").string());
    auto params = lm.model->named_parameters();
    auto buffers = lm.model->named_buffers();
    size_t compared = 0;
    for (const auto& [name, want] : expected.tensors) {
      const torch::Tensor* got = params.find(name);
      if (!got) got = buffers.find(name);
      ASSERT_TRUE(got) << name;
      ASSERT_TRUE(got->sizes().equals(want.sizes())) << name << " " << got->sizes() << " vs " << want.sizes();
      EXPECT_LE((*got - want).abs().max().item<double>(), name == "positions" ? 1e-5 : 0.0) << name;
      ++compared;
    }
    EXPECT_EQ(compared, params.size() + 1);  // every parameter, and the positions
    // fairseq's ids: its dictionary's k-th symbol is thor id 4 + k
    auto pieces = nlohmann::json::parse(slurp(dir / "pieces.json"));
    const auto tokens = pieces.at("dict_tokens").get<std::vector<std::string>>();
    for (size_t k = 0; k + 1 < tokens.size(); ++k) EXPECT_EQ(lm.vocab.piece_to_id(tokens[k]), static_cast<int>(4 + k)) << tokens[k];
    for (const auto& p : pieces.at("unseen")) EXPECT_GE(lm.vocab.piece_to_id(p.get<std::string>()), static_cast<int>(4 + tokens.size()));
    // the same segmentation as the original model (piece by piece)
    for (const auto& line : thor::testing::read_file(root / "valid.en")) {
      auto a = original.encode(line), b = lm.vocab.encode(line);
      ASSERT_EQ(a.size(), b.size()) << line;
      for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(original.decode({a[i]}), lm.vocab.decode({b[i]})) << line;
    }
    // and it translates
    ASSERT_EQ(sh(std::string(THOR_BIN) + " --threads 1 translate --beam 2 --max-len-b 5 --expert-select fixed:0 --model " +
                 (dir / "imported.pt").string() + " --input " + (root / "valid.en").string() + " > " +
                 (dir / "out.txt").string() + " 2> /dev/null"),
              0);
    EXPECT_EQ(thor::testing::read_file(dir / "out.txt").size(), thor::testing::read_file(root / "valid.en").size());
  }
  // a checkpoint that is not one
  thor::testing::write_file(root / "notzip.pt", {"hello"});
  EXPECT_NE(sh("/usr/bin/python3 " + std::string(THOR_SOURCE_DIR) + "/tools/convert_fairseq.py " + (root / "notzip.pt").string() +
               " --dict x --spm " + spm.string() + " --out " + (root / "nz").string() + " 2> " + (root / "nz.log").string()),
            0);
  EXPECT_NE(slurp(root / "nz.log").find("not a PyTorch zip checkpoint"), std::string::npos) << slurp(root / "nz.log");
}
