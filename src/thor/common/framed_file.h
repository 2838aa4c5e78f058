// Framed files: a fixed header before the payload (magic, format version, payload length,
// CRC32 of the payload from zlib), so a truncated, bit-flipped, zero-length or foreign file
// is told apart from a good one before its payload is parsed, and a file written by a newer
// format is refused instead of misread. Written durably (common/file_io.h) and streamed:
// the header is filled in once the payload is written.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "thor/common/file_io.h"

namespace thor {

struct FrameKind {
  const char* magic;     // 8 bytes
  const char* what;      // "checkpoint", for messages
  uint32_t version;      // written
  uint32_t oldest;       // the oldest version still read
  // Version `oldest - 1` may be an unframed payload (files written before framing): read
  // when the payload starts with this signature (nullptr: never).
  const char* unframed_signature = nullptr;
};

class FramedWriter {
 public:
  FramedWriter(const std::string& path, const FrameKind& kind);
  void write(const void* data, size_t n);
  void commit();

 private:
  FrameKind kind_;
  DurableFile file_;
  uint64_t length_ = 0;
  unsigned long crc_;
};

// A checked framed file: its payload is bytes [offset, offset + length) of `path`.
struct FramedFile {
  std::string path;
  uint32_t version = 0;  // oldest - 1 for an unframed payload
  uint64_t offset = 0, length = 0;
  // Reads payload bytes [pos, pos + n) (clamped to the payload); returns the count read.
  size_t read(uint64_t pos, void* buf, size_t n) const;
  std::shared_ptr<const int> fd;  // open while any copy lives
};

// Checks header, length and checksum (one pass over the file). Throws Error naming the
// file and what is wrong: missing, empty, not this kind, newer version, truncated,
// checksum mismatch.
FramedFile open_framed(const std::string& path, const FrameKind& kind);

}  // namespace thor
