#include "rewind/core/build_info.h"

#include <torch/version.h>

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

}  // namespace rw
