// Crash-safe writes: every file rewind writes goes to a temporary name in the same folder and is
// renamed over the target only when complete, so a killed run never leaves a half-written file
// (leveldb's rule). Parent folders are created as needed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace rw::io {

/// Writes `data` to `path` atomically. Throws Error{kInput} naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& data);

/// For writers that need a file name (OpenCV, FAISS): `writer(tmp)` must create the file `tmp`
/// (same folder and extension as `path`); it is then renamed to `path`. If the writer throws or
/// returns false, the temporary is removed and Error{kInput} is thrown.
void write_via_temp(const std::string& path, const std::function<bool(const std::string& tmp)>& writer);

/// Reads a whole file. Throws Error{kInput} naming the path when it cannot be read.
std::string read_file(const std::string& path);

/// FNV-1a 64-bit, fed in pieces (a dataset's tensors, a file's blocks) without copying them.
class ContentHasher {
 public:
  void update(const void* data, size_t n);
  std::string hex() const;  ///< 16 hex digits

 private:
  uint64_t h_ = 1469598103934665603ull;
};

/// FNV-1a 64-bit hash of `bytes` as 16 hex digits. Not cryptographic: it detects damage (any
/// single changed byte always changes it), not tampering.
std::string content_hash(const std::string& bytes);
/// The same hash of a file's contents, streamed; `bytes` (optional) receives its size.
/// Throws Error{kInput} naming the path when it cannot be read or is not a regular file.
std::string file_content_hash(const std::string& path, int64_t* bytes = nullptr);

/// Fault injection for the crash-consistency tests: when the environment variable
/// REWIND_CRASH_POINT equals `name`, the process exits at once with status 137 (as if killed),
/// without unwinding or flushing. A no-op otherwise.
void crash_point(const char* name);

/// An exclusive advisory lock (flock) on `path`, held for the object's lifetime and released by the
/// kernel if the process dies, so a stale lock never blocks. Throws Error{kUsage} naming `what`
/// and the other run's pid when another process holds it.
class FileLock {
 public:
  FileLock(const std::string& path, const std::string& what);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

/// Creates `dir` and parents; throws Error{kInput} naming it on failure.
void ensure_dir(const std::string& dir);

}  // namespace rw::io
