// See framed_file.h. Header (32 bytes, little-endian): magic[8], version u32, crc32 u32,
// payload length u64, reserved u64 (0).
#include "thor/common/framed_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "thor/common/error.h"

namespace thor {

namespace {
constexpr size_t kHeader = 32;

void put32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void put64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint32_t get32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// pread until n bytes or end of file.
size_t read_at(int fd, uint64_t pos, void* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t k = ::pread(fd, static_cast<char*>(buf) + done, n - done, static_cast<off_t>(pos + done));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    done += static_cast<size_t>(k);
  }
  return done;
}

}  // namespace

FramedWriter::FramedWriter(const std::string& path, const FrameKind& kind)
    : kind_(kind), file_(path), crc_(crc32(0L, Z_NULL, 0)) {
  unsigned char zero[kHeader] = {};
  file_.write(zero, kHeader);  // filled in by commit()
}

void FramedWriter::write(const void* data, size_t n) {
  file_.write(data, n);
  const auto* p = static_cast<const Bytef*>(data);
  for (size_t left = n; left > 0;) {  // crc32 takes a uInt length
    const auto k = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
    crc_ = crc32(crc_, p, k);
    p += k, left -= k;
  }
  length_ += n;
}

void FramedWriter::commit() {
  unsigned char h[kHeader] = {};
  std::memcpy(h, kind_.magic, 8);
  put32(h + 8, kind_.version);
  put32(h + 12, static_cast<uint32_t>(crc_));
  put64(h + 16, length_);
  file_.write_at(0, h, kHeader);
  file_.commit();
}

size_t FramedFile::read(uint64_t pos, void* buf, size_t n) const {
  if (pos >= length) return 0;
  n = static_cast<size_t>(std::min<uint64_t>(n, length - pos));
  return read_at(*fd, offset + pos, buf, n);
}

FramedFile open_framed(const std::string& path, const FrameKind& kind) {
  const std::string what = std::string("thor ") + kind.what;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(path + ": no such " + kind.what);
  const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::shared_ptr<const int> fd(new int(raw), [](const int* p) {
    ::close(*p);
    delete p;
  });
  const auto size = static_cast<uint64_t>(std::filesystem::file_size(path));
  if (size == 0) throw Error(path + ": empty file (0 bytes), not a " + what);
  unsigned char h[kHeader] = {};
  const size_t got = read_at(*fd, 0, h, kHeader);
  FramedFile out;
  out.path = path;
  out.fd = fd;
  if (got < 8 || std::memcmp(h, kind.magic, 8) != 0) {
    const char* sig = kind.unframed_signature;
    if (sig && got >= std::strlen(sig) && std::memcmp(h, sig, std::strlen(sig)) == 0) {
      out.version = kind.oldest - 1, out.offset = 0, out.length = size;  // written before framing
      return out;
    }
    throw Error(path + ": not a " + what + " (unknown contents)");
  }
  if (got < kHeader) throw Error(path + ": truncated " + what + " (" + std::to_string(size) + " bytes, no whole header)");
  if (get64(h + 24) != 0) throw Error(path + ": damaged " + what + " (reserved header bytes are set)");
  out.version = get32(h + 8);
  const uint32_t stored_crc = get32(h + 12);
  out.offset = kHeader, out.length = get64(h + 16);
  if (out.version > kind.version)
    throw Error(path + ": written by a newer thor (" + kind.what + " format " + std::to_string(out.version) +
                "; this thor reads formats " + std::to_string(kind.unframed_signature ? kind.oldest - 1 : kind.oldest) +
                " to " + std::to_string(kind.version) + "): upgrade thor to read it");
  if (out.version < kind.oldest)
    throw Error(path + ": " + kind.what + " format " + std::to_string(out.version) + " is no longer read (oldest " +
                std::to_string(kind.oldest) + ")");
  if (size - kHeader < out.length)
    throw Error(path + ": truncated " + what + " (" + std::to_string(size - kHeader) + " of " +
                std::to_string(out.length) + " payload bytes)");
  if (size - kHeader > out.length)
    throw Error(path + ": damaged " + what + " (" + std::to_string(size - kHeader - out.length) +
                " bytes after the payload)");
  unsigned long crc = crc32(0L, Z_NULL, 0);
  std::vector<unsigned char> buf(1 << 20);
  for (uint64_t pos = 0; pos < out.length;) {
    const size_t n = read_at(*fd, kHeader + pos, buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), out.length - pos)));
    if (n == 0) throw Error(path + ": cannot read (file changed while reading)");
    crc = crc32(crc, buf.data(), static_cast<uInt>(n));
    pos += n;
  }
  if (static_cast<uint32_t>(crc) != stored_crc) {
    char msg[64];
    std::snprintf(msg, sizeof msg, "stored %08x, computed %08x", stored_crc, static_cast<uint32_t>(crc));
    throw Error(path + ": damaged " + what + " (checksum mismatch: " + msg + ")");
  }
  return out;
}

}  // namespace thor
