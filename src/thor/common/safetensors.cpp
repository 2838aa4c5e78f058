// See safetensors.h.
#include "thor/common/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "thor/common/error.h"
#include "thor/common/file_io.h"

namespace thor {

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian: written as in memory");

constexpr uint64_t kMaxHeader = 100'000'000;

const std::vector<std::pair<const char*, torch::ScalarType>>& dtypes() {
  static const std::vector<std::pair<const char*, torch::ScalarType>> t = {
      {"F64", torch::kDouble}, {"F32", torch::kFloat},  {"F16", torch::kHalf},  {"BF16", torch::kBFloat16},
      {"I64", torch::kLong},   {"I32", torch::kInt},    {"I16", torch::kShort}, {"I8", torch::kChar},
      {"U8", torch::kByte},    {"BOOL", torch::kBool}};
  return t;
}

std::string dtype_name(torch::ScalarType t) {
  for (const auto& [name, type] : dtypes())
    if (type == t) return name;
  throw Error(std::string("safetensors: no dtype name for ") + c10::toString(t));
}

}  // namespace

void write_safetensors(const std::string& path, const Safetensors& st) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!st.metadata.empty()) header["__metadata__"] = st.metadata;
  uint64_t offset = 0;
  std::vector<torch::Tensor> data;
  for (const auto& [name, t] : st.tensors) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(c.numel()) * static_cast<uint64_t>(c.element_size());
    header[name] = {{"dtype", dtype_name(c.scalar_type())}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  const uint64_t n = h.size();
  DurableFile f(path);
  f.write(&n, sizeof n);
  f.write(h.data(), h.size());
  for (const auto& c : data) f.write(c.data_ptr(), static_cast<size_t>(c.numel()) * static_cast<size_t>(c.element_size()));
  f.commit();
}

Safetensors read_safetensors(const std::string& path) {
  auto fail = [&](const std::string& what) { return Error(path + ": not a valid safetensors file (" + what + ")"); };
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(path + ": cannot read (" + ec.message() + ")");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  auto read_at = [&](uint64_t pos, void* buf, uint64_t n) {
    for (uint64_t done = 0; done < n;) {
      const ssize_t k = ::pread(fd, static_cast<char*>(buf) + done, n - done, static_cast<off_t>(pos + done));
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) throw fail("truncated");
      done += static_cast<uint64_t>(k);
    }
  };
  if (size < 8) throw fail(std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  read_at(0, &n, 8);
  if (n > kMaxHeader) throw fail("a header of " + std::to_string(n) + " bytes, over the 100 MB limit");
  if (n > size - 8) throw fail("a header of " + std::to_string(n) + " bytes in a file of " + std::to_string(size));
  std::string h(n, '\0');
  read_at(8, h.data(), n);
  if (n == 0 || h[0] != '{') throw fail("the header is not a JSON object");
  // parsed with a callback that sees every key of the top object: duplicates are refused
  std::set<std::string> names;
  std::string duplicate;
  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(h, [&](int depth, nlohmann::ordered_json::parse_event_t event, nlohmann::ordered_json& parsed) {
      if (depth == 1 && event == nlohmann::ordered_json::parse_event_t::key && !names.insert(parsed.get<std::string>()).second)
        duplicate = parsed.get<std::string>();
      return true;
    });
  } catch (const nlohmann::ordered_json::exception& e) {
    throw fail(std::string("the header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) throw fail("the name '" + duplicate + "' appears twice");
  if (!header.is_object()) throw fail("the header is not a JSON object");
  const uint64_t data_start = 8 + n, data_size = size - data_start;
  Safetensors st;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const auto& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw fail("__metadata__ value '" + m.key() + "' is not a string");
        st.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw fail("tensor '" + name + "' lacks dtype, shape or data_offsets");
    if (!v["dtype"].is_string()) throw fail("tensor '" + name + "': dtype is not a string");
    const std::string dt = v["dtype"].get<std::string>();
    auto type = std::find_if(dtypes().begin(), dtypes().end(), [&](const auto& d) { return dt == d.first; });
    if (type == dtypes().end()) throw fail("tensor '" + name + "': unknown dtype '" + dt + "'");
    const auto& shape = v["shape"];
    const auto& off = v["data_offsets"];
    if (!shape.is_array()) throw fail("tensor '" + name + "': shape is not a list");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw fail("tensor '" + name + "': data_offsets is not [begin, end]");
    std::vector<int64_t> dims;
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) throw fail("tensor '" + name + "': a dimension is not a non-negative integer");
      const auto x = d.get<uint64_t>();
      if (x > 0 && numel > std::numeric_limits<uint64_t>::max() / x) throw fail("tensor '" + name + "': shape overflows");
      numel *= x;
      dims.push_back(static_cast<int64_t>(x));
    }
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size)
      throw fail("tensor '" + name + "': data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] outside the " + std::to_string(data_size) + " data bytes");
    const uint64_t item = c10::elementSize(type->second);
    if (numel > std::numeric_limits<uint64_t>::max() / item || numel * item != end - begin)
      throw fail("tensor '" + name + "': " + std::to_string(end - begin) + " bytes for a " + dt + " tensor of " +
                 std::to_string(numel) + " elements");
    spans.push_back({begin, end, name});
    auto t = torch::empty(dims, torch::TensorOptions().dtype(type->second));
    if (end > begin) read_at(data_start + begin, t.data_ptr(), end - begin);
    st.tensors.emplace_back(name, std::move(t));
  }
  // the tensors tile the data exactly: no overlap, no gap, nothing after the last
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  uint64_t at = 0;
  for (const auto& s : spans) {
    if (s.begin < at) throw fail("tensor '" + s.name + "' overlaps another");
    if (s.begin > at) throw fail("a gap of " + std::to_string(s.begin - at) + " bytes before tensor '" + s.name + "'");
    at = s.end;
  }
  if (at != data_size) throw fail(std::to_string(data_size - at) + " data bytes belong to no tensor");
  return st;
}

}  // namespace thor
