// Crash-safe writes: every file rewind writes goes to a temporary name in the same folder and is
// renamed over the target only when complete, so a killed run never leaves a half-written file
// (leveldb's rule). Parent folders are created as needed.
#pragma once

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

/// Creates `dir` and parents; throws Error{kInput} naming it on failure.
void ensure_dir(const std::string& dir);

}  // namespace rw::io
