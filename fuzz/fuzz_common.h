// Shared by the fuzz targets: a private scratch directory, a file written from the input,
// and the rule every target checks: bad input ends in thor::Error (one line for the user),
// never in a crash, a sanitizer report, or another exception escaping the library.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "thor/common/error.h"

namespace thor::fuzz {

inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const char* shm = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    auto d = std::filesystem::path(shm) / ("thor_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(scratch(), ec); });
    return d;
  }();
  return dir;
}

inline std::string write_bytes(const std::string& name, const uint8_t* data, size_t size) {
  const auto path = (scratch() / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs fn; thor::Error is the expected refusal. Anything else escaping is a finding: abort,
// so libFuzzer records the input.
template <typename Fn>
void expect_refusal_or_success(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const thor::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: an exception other than thor::Error escaped: %s\n", what, e.what());
    std::abort();
  }
}

}  // namespace thor::fuzz
