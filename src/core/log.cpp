#include "rewind/core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace rw {

namespace {
std::mutex g_mu;
LogSink g_sink;
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace

LogSink set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(g_mu);
  std::swap(g_sink, sink);
  return sink;
}

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

void log_message(LogLevel level, const std::string& msg) {
  if (static_cast<int>(level) < g_level.load()) return;
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_sink) {
    g_sink(level, msg);
    return;
  }
  const char* tag = level == LogLevel::kWarn ? "warning: " : level == LogLevel::kError ? "error: " : "";
  std::fprintf(stderr, "%s%s\n", tag, msg.c_str());
}

}  // namespace rw
