// What built this binary (stamped into every output file: run.json, reports, bench rows) and
// where the files it ships with are (demo models, the reports' plotting library).
#pragma once

#include <string>
#include <vector>

namespace rw {

struct BuildInfo {
  std::string version;     ///< project version, e.g. "0.1.0"
  std::string git_commit;  ///< short hash at configure time ("unknown" outside git)
  std::string build_type;  ///< CMAKE_BUILD_TYPE
  std::string compiler;    ///< e.g. "GNU 12.2.0"
  std::string torch;       ///< LibTorch version
  bool debug = false;      ///< true for unoptimised builds (benchmarks warn)
};

const BuildInfo& build_info();
/// One line: "rewind 0.1.0 (abc1234, Release, GNU 12.2.0, torch 1.13.1)".
std::string build_string();

/// The folder of the running executable; "" when /proc/self/exe cannot be read.
std::string executable_dir();
/// Where the shipped files `sub` ("demo", "vega") are, searched in order: $`env` when set and not
/// empty; the install prefix (EXE_DIR/../share/rewind/SUB, for `cmake --install`); the build tree
/// (EXE_DIR/share/rewind/SUB). The first folder holding every file of `files`, normalised; "" when
/// none does.
std::string find_share_dir(const std::string& sub, const char* env, const std::vector<std::string>& files,
                           const std::string& exe_dir);

}  // namespace rw
