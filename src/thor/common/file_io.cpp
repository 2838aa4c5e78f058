// See file_io.h.
#include "thor/common/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "thor/common/error.h"

namespace thor {

namespace {
[[noreturn]] void fail(const std::string& path, const char* what, int err) {
  throw Error(path + ": cannot " + what + ": " + std::strerror(err));
}

void sync_directory(const std::string& path) {
  auto dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) fail(dir.string(), "open directory", errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) fail(dir.string(), "sync directory", err);  // EINVAL: fs without dir sync
}
}  // namespace

DurableFile::DurableFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(tmp_, "create", errno);
}

DurableFile::~DurableFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void DurableFile::write(const void* data, size_t n) { write_all(data, n, -1); }

void DurableFile::write_at(size_t offset, const void* data, size_t n) {
  write_all(data, n, static_cast<int64_t>(offset));
}

void DurableFile::write_all(const void* data, size_t n, int64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = offset < 0 ? ::write(fd_, p, n) : ::pwrite(fd_, p, n, static_cast<off_t>(offset));
    if (k < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd_), fd_ = -1;
      ::unlink(tmp_.c_str());
      fail(tmp_, "write", err);
    }
    p += k;
    n -= static_cast<size_t>(k);
    if (offset >= 0) offset += k;
  }
}

void DurableFile::commit() {
  int err = 0;
  if (::fsync(fd_) != 0) err = errno;
  if (::close(fd_) != 0 && err == 0) err = errno;
  fd_ = -1;
  if (err != 0) {
    ::unlink(tmp_.c_str());
    fail(tmp_, "sync", err);
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    err = errno;
    ::unlink(tmp_.c_str());
    fail(path_, ("rename " + tmp_ + " to it").c_str(), err);
  }
  sync_directory(path_);
}

void link_durably(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  ::unlink(tmp.c_str());
  if (::link(from.c_str(), tmp.c_str()) == 0) {
    if (std::rename(tmp.c_str(), to.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      fail(to, ("rename " + tmp + " to it").c_str(), err);
    }
    sync_directory(to);
    return;
  }
  // no hard links here: a streamed copy
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) fail(from, "open", errno);
  DurableFile out(to);
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(in);
      fail(from, "read", err);
    }
    if (n == 0) break;
    out.write(buf, static_cast<size_t>(n));
  }
  ::close(in);
  out.commit();
}

}  // namespace thor
