// thor::Error — the one exception type for configuration, I/O and data problems.
// Thrown anywhere in the library; caught only in main(), which prints what() as one
// line and exits non-zero. Tensor preconditions use TORCH_CHECK instead.
#pragma once
#include <stdexcept>
#include <string>

namespace thor {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace thor
