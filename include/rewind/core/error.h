// rw::Error and the RW_CHECK family: the library's one way to report a failure.
//
// Two tiers (as in FAISS):
//   RW_ASSERT(cond)            broken invariant inside rewind  -> Error{kInternal}
//   RW_CHECK(cond, kind, msg)  bad input / model / usage      -> Error{kind}, message names the
//                              file, option or contract at fault and what to do about it.
// The CLI maps ErrorKind to the process exit code (see exit_code()).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace rw {

enum class ErrorKind {
  kUsage,      ///< wrong command line: unknown option, missing argument, bad value
  kInput,      ///< unreadable / malformed data file (image, manifest, npy, index)
  kModel,      ///< a model file or its contract is wrong
  kCancelled,  ///< the progress callback asked to stop; finished work is kept
  kInternal,   ///< a bug in rewind
};

/// Process exit code for each kind: 2 usage, 3 input, 4 model, 130 cancelled, 1 internal.
int exit_code(ErrorKind kind);
const char* kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg, const char* file = nullptr, int line = 0);
  ErrorKind kind() const { return kind_; }
  /// The message without the source location (for users); what() includes it.
  const std::string& message() const { return message_; }

 private:
  ErrorKind kind_;
  std::string message_;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace rw

/// Throws rw::Error(kind) with the streamed message when `cond` is false.
/// kind is one of Usage, Input, Model, Internal. Example:
///   RW_CHECK(n > 0, Input, "manifest ", path, " is empty: add rows `path,identity`");
#define RW_CHECK(cond, kind, ...)                                                               \
  do {                                                                                          \
    if (!(cond))                                                                                \
      throw ::rw::Error(::rw::ErrorKind::k##kind, ::rw::detail::concat(__VA_ARGS__), \
                            __FILE__, __LINE__);                                                \
  } while (0)

#define RW_FAIL(kind, ...) \
  throw ::rw::Error(::rw::ErrorKind::k##kind, ::rw::detail::concat(__VA_ARGS__), __FILE__, __LINE__)

#define RW_ASSERT(cond) RW_CHECK(cond, Internal, "internal invariant failed: " #cond)
