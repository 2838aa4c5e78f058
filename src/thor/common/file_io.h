// Durable file writes: a file appears under its name whole or not at all, and survives a
// crash or power loss once the call returns (written to NAME.tmp, fsync'ed, renamed over
// NAME, the directory fsync'ed).
#pragma once
#include <cstdint>
#include <string>

namespace thor {

// Written in pieces with write(), then commit(). Errors throw Error naming the file and the
// system's reason (e.g. "No space left on device"); on failure, or destroyed uncommitted (an
// exception on the way), NAME.tmp is removed and NAME left as it was.
class DurableFile {
 public:
  explicit DurableFile(std::string path);
  ~DurableFile();
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;
  void write(const void* data, size_t n);
  // Overwrites bytes already written at `offset` (a header filled in last).
  void write_at(size_t offset, const void* data, size_t n);
  void commit();

 private:
  void write_all(const void* data, size_t n, int64_t offset);  // offset < 0: at the end
  std::string path_, tmp_;
  int fd_ = -1;
};

// Makes `to` a durable second name of the committed file `from` (a hard link renamed into
// place; a streamed copy where the file system has no hard links). A later write of either
// name replaces that name only (rename gives it a new file).
void link_durably(const std::string& from, const std::string& to);

}  // namespace thor
