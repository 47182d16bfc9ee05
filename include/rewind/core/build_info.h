// What built this binary: stamped into every output file (run.json, reports, bench rows).
#pragma once

#include <string>

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

}  // namespace rw
