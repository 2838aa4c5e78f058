// Fuzz target: the checkpoint loader (load_model, read_train_state; what translate, resume,
// average and export read first). The first byte picks what the rest is:
//   even: the whole file as written on disk (framed header, or anything else);
//   odd:  a payload, framed here with a valid header and CRC32, so mutations reach the
//         archive reader and thor's checks of its contents instead of stopping at the CRC.
// A good checkpoint (scripts/fuzz.sh makes the seeds from a real one) must load; anything
// else must be refused with thor::Error naming the file.
#include <zlib.h>

#include <cstring>
#include <vector>

#include "fuzz_common.h"
#include "thor/train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thor;
  if (size == 0) return 0;
  const bool frame = data[0] % 2 == 1;
  ++data, --size;
  std::string path;
  if (!frame) {
    path = fuzz::write_bytes("checkpoint.pt", data, size);
  } else {
    // header (framed_file.cpp): magic[8], version u32, crc32 u32, length u64, reserved u64
    std::vector<uint8_t> file(32 + size);
    std::memcpy(file.data(), "THORCKPT", 8);
    const uint32_t version = 2;
    const auto crc = static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), data, static_cast<uInt>(size)));
    const uint64_t length = size;
    for (int i = 0; i < 4; ++i) file[8 + i] = static_cast<uint8_t>(version >> (8 * i));
    for (int i = 0; i < 4; ++i) file[12 + i] = static_cast<uint8_t>(crc >> (8 * i));
    for (int i = 0; i < 8; ++i) file[16 + i] = static_cast<uint8_t>(length >> (8 * i));
    if (size) std::memcpy(file.data() + 32, data, size);
    path = fuzz::write_bytes("checkpoint.pt", file.data(), file.size());
  }
  fuzz::expect_refusal_or_success("read_train_state", [&] { read_train_state(path); });
  fuzz::expect_refusal_or_success("load_model", [&] {
    auto m = load_model(path, torch::kCPU);
    // what loads must be usable: one forward pass of its own shapes
    torch::NoGradGuard ng;
    auto src = torch::full({1, 3}, m.config.eos_id, torch::kLong);
    auto tgt = torch::full({1, 2}, m.config.bos_id, torch::kLong);
    m.model->forward(src, tgt);
  });
  return 0;
}
