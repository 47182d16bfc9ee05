// A tiny log sink: messages go to stderr (default) or to a sink set by the embedding program or a
// test. Results never go through the log; they go to stdout or files.
#pragma once

#include <functional>
#include <string>

#include "rewind/core/error.h"

namespace rw {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kSilent = 4 };

using LogSink = std::function<void(LogLevel, const std::string&)>;

/// Replaces the sink (an empty sink restores stderr). Returns the previous one.
LogSink set_log_sink(LogSink sink);
/// Messages below `level` are dropped. Default kInfo.
void set_log_level(LogLevel level);
LogLevel log_level();

void log_message(LogLevel level, const std::string& msg);

template <typename... Args>
void log_info(const Args&... args) {
  if (log_level() <= LogLevel::kInfo) log_message(LogLevel::kInfo, detail::concat(args...));
}
template <typename... Args>
void log_warn(const Args&... args) {
  if (log_level() <= LogLevel::kWarn) log_message(LogLevel::kWarn, detail::concat(args...));
}
template <typename... Args>
void log_debug(const Args&... args) {
  if (log_level() <= LogLevel::kDebug) log_message(LogLevel::kDebug, detail::concat(args...));
}

}  // namespace rw
