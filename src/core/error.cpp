#include "rewind/core/error.h"

namespace rw {

int exit_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage: return 2;
    case ErrorKind::kInput: return 3;
    case ErrorKind::kModel: return 4;
    case ErrorKind::kCancelled: return 130;
    case ErrorKind::kInternal: return 1;
  }
  return 1;
}

const char* kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage: return "usage error";
    case ErrorKind::kInput: return "input error";
    case ErrorKind::kModel: return "model error";
    case ErrorKind::kCancelled: return "cancelled";
    case ErrorKind::kInternal: return "internal error";
  }
  return "error";
}

static std::string with_location(const std::string& msg, const char* file, int line) {
  if (!file) return msg;
  std::string f(file);
  auto pos = f.rfind("/src/");
  if (pos == std::string::npos) pos = f.rfind("/data-tools/");
  if (pos != std::string::npos) f = f.substr(pos + 1);
  return msg + " [" + f + ":" + std::to_string(line) + "]";
}

Error::Error(ErrorKind kind, const std::string& msg, const char* file, int line)
    : std::runtime_error(with_location(msg, file, line)), kind_(kind), message_(msg) {}

}  // namespace rw
