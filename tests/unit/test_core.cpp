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
