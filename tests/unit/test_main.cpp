#include <gtest/gtest.h>

#include "rewind/core/log.h"
#include "rewind/core/runtime.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  rw::init_threads(1);  // tiny shapes: one thread is fastest and deterministic; ctest runs tests in parallel
  rw::set_log_level(rw::LogLevel::kWarn);
  return RUN_ALL_TESTS();
}
