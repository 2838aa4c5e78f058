// Test entry point: one intra-op thread so tensor results are reproducible, quiet logs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "thor/common/log.h"
#include "thor/common/runtime.h"

int main(int argc, char** argv) {
  thor::runtime::tune_allocator();
  at::set_num_threads(1);
  thor::log_level() = 0;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
