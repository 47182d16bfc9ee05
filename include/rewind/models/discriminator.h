// A GAN's discriminator as a membership scorer (the white-box attack of Hayes et al. 2019, LOGAN).
// Torch-free header; the implementation lives in src/models/feature_net.cpp beside the other
// discriminator reader.
#pragma once

#include <memory>
#include <string>

#include "rewind/models/models.h"

namespace rw::models {

/// A GAN's discriminator, for the white-box membership attack of Hayes et al. (LOGAN, 2019): a
/// discriminator trained on a small set learns to call exactly its training images real.
/// score(): images [N, C, H, W] in [-1, 1] (adapted to its input like a feature net) -> [N]
/// float32 logits on the images' device, higher = judged more real.
class Discriminator {
 public:
  virtual ~Discriminator() = default;
  virtual at::Tensor score(const at::Tensor& images) = 0;
  virtual std::string describe() const = 0;  ///< "discriminator G.pt.disc (dcgan32, 3x32x32)"
  virtual std::string id() const = 0;        ///< describe() and the file's hash (stage fingerprints)
};

/// A native discriminator (`train gan` writes G.disc next to G) or a TorchScript module whose
/// forward(images) returns N logits ([N] or [N, 1]; input size and channels as `input`, which
/// TorchScript files cannot state: pass the generator's output shape). Error{kModel} naming the file
/// for anything else.
std::unique_ptr<Discriminator> load_discriminator(const std::string& path, const ImageShape& input,
                                                  const c10::Device& device = default_device());

}  // namespace rw::models
