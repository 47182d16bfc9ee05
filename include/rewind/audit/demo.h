// The embedded default of `rewind audit` / `rewind compare` with no arguments: synthetic identities
// (half of them trained the shipped demo GAN) and the shipped demo models.
#pragma once

#include <string>

#include "rewind/core/progress.h"

namespace rw::audit {

struct DemoPaths {
  std::string generator, embedder, classifier;  ///< the shipped demo models
  std::string dataset, reference;               ///< manifests rendered under the work folder
  std::string meta;                             ///< demo.json
};

/// The folder holding the shipped demo models, searched in order: $REWIND_DEMO_DIR; next to the
/// executable's install prefix (PREFIX/share/rewind/demo, for `cmake --install`); the build tree
/// (EXE_DIR/share/rewind/demo). "" when none holds demo.json.
std::string find_demo_dir(const std::string& executable_dir);

/// Checks the demo models in `models_dir` and renders the demo's synthetic dataset (with member
/// labels) and reference identities under `work` (once; reused when present).
DemoPaths prepare_demo(const std::string& models_dir, const std::string& work, const ProgressFn& progress = {});

}  // namespace rw::audit
