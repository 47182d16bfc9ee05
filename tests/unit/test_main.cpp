#include <gtest/gtest.h>

#include "rewind/core/log.h"
#include "rewind/core/runtime.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  rw::init_threads(0);
  rw::set_log_level(rw::LogLevel::kWarn);
  return RUN_ALL_TESTS();
}
