// Small untrained native models saved to a folder, shared by the model-heavy unit tests.
#pragma once

#include <torch/torch.h>

#include <string>

#include "rewind/models/native.h"
#include "rewind/models/nets.h"

namespace rw::test {

/// A random (untrained) DCGAN generator (latent 8, width 8, `arch`: dcgan32 RGB or dcgan28 grey) saved
/// natively to `path`, with sharper BatchNorm statistics than the untrained defaults, so that its images
/// depend strongly on z.
inline void save_tiny_generator(const std::string& path, const std::string& arch = "dcgan32", int channels = 3) {
  models::GanArch a;
  a.name = arch;
  a.latent_dim = 8;
  a.channels = channels;
  a.width = 8;
  torch::manual_seed(7);
  models::DcganGenerator g(a);
  g->eval();
  for (auto& b : g->named_buffers())
    if (b.key().find("running_var") != std::string::npos) b.value().fill_(0.05);
  models::save_native(path, *g, a.to_json("generator"));
}

/// A random (untrained) cnn28 classifier (1x28x28, 10 classes) saved natively to `path`.
inline void save_tiny_classifier(const std::string& path, int width = 4) {
  models::CnnArch a;
  a.name = "cnn28";
  a.channels = 1;
  a.width = width;
  a.outputs = 10;
  torch::manual_seed(3);
  auto net = models::make_cnn(a);
  net->eval();
  models::save_native(path, *net, a.to_json("classifier"));
}

}  // namespace rw::test
