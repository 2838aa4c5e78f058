// Test entry point: one intra-op thread so tensor results are reproducible, quiet logs; the
// temporary directories of a run that passed are removed (a failed run's are kept).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <system_error>

#include "fixtures.h"

#include "thor/common/log.h"
#include "thor/common/runtime.h"

int main(int argc, char** argv) {
  thor::runtime::tune_allocator();
  at::set_num_threads(1);
  thor::log_level() = 0;
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  const char* keep = std::getenv("THOR_KEEP_TEST_DIRS");
  if (rc == 0 && !(keep && *keep)) {
    std::error_code ec;  // a directory that cannot be removed is left, not an error of the tests
    for (const auto& d : thor::testing::made_temp_dirs()) std::filesystem::remove_all(d, ec);
  }
  return rc;
}
