#include <gtest/gtest.h>

#include <csignal>
#include <set>

#include "rewind/core/build_info.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/progress.h"
#include "rewind/core/runtime.h"

using namespace rw;

TEST(Core, CheckThrowsWithKindMessageAndLocation) {
  try {
    int n = 0;
    RW_CHECK(n > 0, Input, "manifest ", "m.csv", " is empty: add rows");
    FAIL() << "RW_CHECK did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_EQ(e.message(), "manifest m.csv is empty: add rows");
    EXPECT_NE(std::string(e.what()).find("test_core.cpp:"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(RW_CHECK(true, Usage, "never"));
}

TEST(Core, ExitCodesAreDistinct) {
  std::set<int> codes;
  for (auto k : {ErrorKind::kUsage, ErrorKind::kInput, ErrorKind::kModel, ErrorKind::kCancelled, ErrorKind::kInternal})
    codes.insert(exit_code(k));
  EXPECT_EQ(codes.size(), 5u);
  EXPECT_EQ(exit_code(ErrorKind::kUsage), 2);
  EXPECT_EQ(exit_code(ErrorKind::kInput), 3);
}

TEST(Core, ProgressCallbackCanCancel) {
  int calls = 0;
  ProgressFn stop_at_3 = [&](const Progress& p) { ++calls; return p.done < 3; };
  EXPECT_NO_THROW(report_progress(stop_at_3, {"x", 1, 10, ""}));
  EXPECT_NO_THROW(report_progress(stop_at_3, {"x", 2, 10, ""}));
  try {
    report_progress(stop_at_3, {"x", 3, 10, ""});
    FAIL() << "expected cancel";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  EXPECT_EQ(calls, 3);
  EXPECT_NO_THROW(report_progress(ProgressFn{}, {"x", 1, 1, ""}));  // empty fn never cancels
}

TEST(Core, TerminalProgressStopsAfterSigintFlag) {
  reset_cancel_for_testing();
  TerminalProgress tp(false);
  auto fn = tp.fn();
  EXPECT_TRUE(fn({"a", 1, 2, ""}));
  install_cancel_handler();
  std::raise(SIGINT);  // first SIGINT only sets the flag
  EXPECT_TRUE(cancel_requested());
  EXPECT_FALSE(fn({"a", 2, 2, ""}));
  reset_cancel_for_testing();
  std::signal(SIGINT, SIG_DFL);
}

TEST(Core, FormatDuration) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(62), "1:02");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(Core, MixSeedIsDeterministicAndSpreads) {
  EXPECT_EQ(mix_seed(1, 2, 3), mix_seed(1, 2, 3));
  std::set<uint64_t> seen;
  for (uint64_t a = 0; a < 100; ++a)
    for (uint64_t b = 0; b < 10; ++b) seen.insert(mix_seed(a, b));
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_NE(mix_seed(1, 2), mix_seed(2, 1));
}

TEST(Core, LogSinkCapturesAndLevelsFilter) {
  std::vector<std::string> got;
  auto old = set_log_sink([&](LogLevel, const std::string& m) { got.push_back(m); });
  auto old_level = log_level();
  set_log_level(LogLevel::kInfo);
  log_info("a", 1);
  log_debug("hidden");
  log_warn("w");
  set_log_level(old_level);
  set_log_sink(old);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "a1");
  EXPECT_EQ(got[1], "w");
}

TEST(Core, ThreadsAndBuildInfo) {
  EXPECT_EQ(init_threads(1), 1);
  EXPECT_EQ(num_threads(), 1);
  EXPECT_GE(init_threads(0), 1);
  init_threads(1);
  EXPECT_FALSE(build_info().version.empty());
  EXPECT_NE(build_string().find("torch"), std::string::npos);
}

// --device: auto picks CUDA only where this build and machine have it; asking for CUDA where there is
// none is a usage error that says what to do; malformed names are refused.
TEST(Core, SelectDevice) {
  auto usage_message = [](const std::string& spec) -> std::string {
    try {
      select_device(spec);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage) << spec;
      return e.message();
    }
    return "";
  };
  EXPECT_EQ(select_device("cpu"), "cpu");
  EXPECT_EQ(current_device(), "cpu");
  EXPECT_EQ(device_name("cpu"), "");
  for (const std::string bad : {"", "gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "cuda:99999"})
    EXPECT_NE(usage_message(bad), "") << bad;
  EXPECT_NE(usage_message("gpu").find("expected cpu, cuda, cuda:N or auto"), std::string::npos);
  const std::string a = select_device("auto");
  if (a == "cpu") {  // no CUDA here: asking for it says why and what to do
    const auto m = usage_message("cuda");
    EXPECT_NE(m.find("use --device cpu"), std::string::npos) << m;
    EXPECT_EQ(current_device(), "cpu");  // a refused choice changes nothing
  } else {
    EXPECT_EQ(a, "cuda:0");
    EXPECT_EQ(select_device("cuda"), "cuda:0");
    EXPECT_NE(device_name("cuda:0"), "");
  }
  select_device("cpu");
  // auto spreads the ranks of a node over its GPUs by local rank (mpirun's or Slurm's)
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"}) unsetenv(v);
  EXPECT_EQ(local_rank(), 0);
  setenv("SLURM_LOCALID", "3", 1);
  EXPECT_EQ(local_rank(), 3);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5", 1);  // mpirun's first
  EXPECT_EQ(local_rank(), 5);
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  unsetenv("SLURM_LOCALID");
  const auto mem = device_memory("cpu");
  EXPECT_GT(mem.total, 0);
  EXPECT_GT(mem.free, 0);
  EXPECT_LE(mem.free, mem.total);
}
