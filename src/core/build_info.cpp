#include "rewind/core/build_info.h"

#include <torch/version.h>

#include <cstdlib>
#include <filesystem>

#include "build_config.h"
#include "git_commit.h"

namespace rw {

const BuildInfo& build_info() {
  static const BuildInfo info = [] {
    BuildInfo b;
    b.version = REWIND_VERSION;
    b.git_commit = REWIND_GIT_COMMIT;
    b.build_type = REWIND_BUILD_TYPE;
    b.compiler = REWIND_COMPILER;
    b.torch = TORCH_VERSION;
#ifdef NDEBUG
    b.debug = false;
#else
    b.debug = true;
#endif
    return b;
  }();
  return info;
}

std::string build_string() {
  const auto& b = build_info();
  return "rewind " + b.version + " (" + b.git_commit + ", " + b.build_type + ", " + b.compiler +
         ", torch " + b.torch + ")";
}

std::string executable_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

std::string find_share_dir(const std::string& sub, const char* env, const std::vector<std::string>& files,
                           const std::string& exe_dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  if (const char* e = std::getenv(env); e && *e) candidates.emplace_back(e);
  if (!exe_dir.empty()) {
    candidates.push_back(fs::path(exe_dir) / ".." / "share" / "rewind" / sub);
    candidates.push_back(fs::path(exe_dir) / "share" / "rewind" / sub);
  }
  for (const auto& c : candidates) {
    bool all = true;
    for (const auto& f : files) all = all && fs::is_regular_file(c / f);
    if (all) return c.lexically_normal().string();
  }
  return "";
}

}  // namespace rw
