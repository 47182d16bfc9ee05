// Shared by the libFuzzer targets: the bytes go to a per-process file (the readers take paths,
// as rewind reads them), and rw::Error is the expected outcome of bad bytes. Any other exception
// escapes LLVMFuzzerTestOneInput and libFuzzer reports it, as it reports crashes, leaks and
// sanitizer findings.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "rewind/core/error.h"
#include "rewind/core/log.h"

namespace rw::fuzz {

inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  static const std::string dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("rewind-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    rw::set_log_level(rw::LogLevel::kSilent);
    return d.string();
  }();
  const std::string path = dir + "/" + name;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

inline const std::string& dir_of(const std::string& path) {
  static std::string d;
  d = std::filesystem::path(path).parent_path().string();
  return d;
}

/// `REWIND_FUZZ_SEEDS=DIR target` writes the target's seed corpus into DIR and exits (how
/// tests/fuzz/corpus/ was made); `write` gets (name, bytes-file-writer).
inline void maybe_write_seeds(int* argc, char*** argv, void (*write)(const std::string& dir)) {
  if (const char* d = std::getenv("REWIND_FUZZ_SEEDS")) {
    std::filesystem::create_directories(d);
    rw::set_log_level(rw::LogLevel::kSilent);
    write(d);
    std::exit(0);
  }
}

}  // namespace rw::fuzz
