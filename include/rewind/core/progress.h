// Progress reporting for long work.
//
// Every long-running library function takes a `const ProgressFn&` and calls it after each unit of
// work. The callback returns false to cancel; the function then stops at the next safe point,
// keeps (and has already written) what it finished, and throws Error{kCancelled}.
// An empty ProgressFn means "no reporting, never cancel".
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace rw {

struct Progress {
  std::string stage;    ///< short name of the work, e.g. "render", "invert"
  int64_t done = 0;     ///< units finished so far
  int64_t total = 0;    ///< units in all (0 when unknown)
  std::string detail;   ///< optional, e.g. "loss 0.0123"
};

using ProgressFn = std::function<bool(const Progress&)>;

/// Calls fn (if set) and throws Error{kCancelled} when it returns false.
void report_progress(const ProgressFn& fn, const Progress& p);

/// A ProgressFn that draws "stage  done/total  rate/s  ETA" on stderr, at most ~8 times a second,
/// only when enabled (the CLI enables it when stderr is a terminal and --quiet is not given).
/// It also returns false once cancel_requested() is true (SIGINT), so Ctrl-C stops cleanly.
class TerminalProgress {
 public:
  explicit TerminalProgress(bool enabled);
  ~TerminalProgress();
  ProgressFn fn();
  /// Ends the current line (if anything was drawn).
  void finish();

 private:
  bool on_progress(const Progress& p);
  bool enabled_;
  bool drawn_ = false;
  std::string stage_;
  std::chrono::steady_clock::time_point stage_start_;
  std::chrono::steady_clock::time_point last_draw_;
};

/// Installs a SIGINT handler that sets a flag instead of killing the process (a second SIGINT
/// kills). cancel_requested() reads the flag.
void install_cancel_handler();
bool cancel_requested();
void reset_cancel_for_testing();

/// "1:02:03" / "2:03" style duration.
std::string format_duration(double seconds);

}  // namespace rw
