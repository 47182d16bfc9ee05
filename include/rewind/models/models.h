// The three model contracts every attack runs against, and their loaders.
//
// Tensor convention: images [N, C, H, W] float32 RGB (C = 3) or grey (C = 1) in [-1, 1];
// latents [N, D]; embeddings [N, d] L2-normalised; activations whatever the split layer emits.
//
// A model file is either TorchScript (exported by a PyTorch user) or a native rewind file (see
// native.h); load_* accept both. Loaded models are in eval mode with parameters frozen
// (requires_grad = false), so gradients flow only to the inputs an attack optimises.
//
// Devices: a model computes on the device it was loaded onto (device()); its methods take inputs on
// any device and return on the input's device, so pipelines may feed CPU batches to a GPU model
// (one copy each way) while optimisation loops keep their tensors on device() (no copies).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <functional>
#include <string>
#include <vector>

#include "rewind/core/error.h"

namespace rw::models {

/// The device loaders use when none is named: rw::current_device() (the CLI's --device; the CPU
/// unless chosen).
c10::Device default_device();

struct ImageShape {
  int channels = 3;
  int height = 64;
  int width = 64;
};

// ------------------------------------------------------------------------------------------------
/// Generator: z [N, latent_dim] -> x [N, C, H, W] in [-1, 1].
/// TorchScript contract: `forward(z)`, attribute `latent_dim: int`. Style-based (StyleGAN-class)
/// generators add methods `mapping(z) -> w` and `synthesis(ws) -> x` for W / W+ inversion:
///   - mapping returns [N, w_dim] (or [N, num_ws, w_dim] with equal rows, as StyleGAN2-ADA's does);
///   - with an int attribute `num_ws` (one style per synthesis layer), synthesis takes
///     ws [N, num_ws, w_dim] (W+); without it, one w [N, w_dim];
///   - optional `w_avg` (tensor attribute or buffer [w_dim]): the mean W, for truncation and the
///     mean-W start that projectors use; when absent rewind averages mapping() over 10000 seeded z.
/// Noise inputs: keep them in buffers (StyleGAN's noise_mode 'const'); for a model on the CPU that
/// draws noise inside forward, rewind reseeds torch's default CPU generator before every call, so
/// each call sees the same noise.
class Generator {
 public:
  virtual ~Generator() = default;
  virtual int64_t latent_dim() const = 0;
  virtual ImageShape output_shape() const = 0;
  virtual at::Tensor generate(const at::Tensor& z) = 0;
  virtual bool has_mapping() const { return false; }
  /// Width of W (mapping's output); latent_dim() without a mapping.
  virtual int64_t w_dim() const { return latent_dim(); }
  /// Style inputs of synthesis (W+ rows); 0 when synthesis takes a single w.
  virtual int64_t num_ws() const { return 0; }
  /// z [N, latent_dim] -> w [N, w_dim].
  virtual at::Tensor mapping(const at::Tensor& z);
  /// w [N, w_dim] (the same style for every layer) or ws [N, num_ws, w_dim] -> x [N, C, H, W].
  virtual at::Tensor synthesis(const at::Tensor& w);
  /// The mean W [w_dim]: the model's `w_avg` or the mean of mapping() over 10000 seeded z (computed
  /// once). Error{kModel} without a mapping.
  virtual at::Tensor w_avg();
  /// Intermediate layers whose activations `--refine feature:LAYER` can optimise, input to output
  /// (native generators: fc, block1, ...); empty when the generator exposes none (TorchScript).
  virtual std::vector<std::string> feature_layers() const { return {}; }
  /// z -> the activations after `layer` [N, ...]; tail(head(z, l), l) = generate(z).
  virtual at::Tensor head(const at::Tensor& z, const std::string& layer);
  virtual at::Tensor tail(const at::Tensor& a, const std::string& layer);
  virtual void to(const c10::Device& device) = 0;
  /// Where it computes (the last to()).
  virtual c10::Device device() const { return c10::kCPU; }
  /// The arithmetic of generate() from now on: "fp32" (default), "bf16" or "fp16" (CUDA only): the
  /// generator's layers in that type, z and the returned images float32. Returns "" when set, else
  /// why this generator cannot. rewind's generators: compiled ones in their compiled form, the others
  /// as a cast copy of the module.
  virtual std::string set_precision(const std::string& p) {
    return p == "fp32" ? "" : describe() + " runs only in fp32";
  }
  /// "native dcgan64 (latent 128, 3x64x64)" or "torchscript gen.pt (latent 100, 1x28x28)".
  virtual std::string describe() const = 0;
  /// Stable id for resume checks and stage fingerprints: describe() and the file's hash (a file
  /// replaced under the same name is another generator).
  virtual std::string id() const { return describe(); }
};

/// Loads and checks a generator: runs one probe batch and throws Error{kModel} naming the file and
/// the contract that failed (missing latent_dim, output not [N,C,H,W], channels not 1/3, values
/// outside [-1, 1]).
std::unique_ptr<Generator> load_generator(const std::string& path, const c10::Device& device = default_device());

// ------------------------------------------------------------------------------------------------
/// Embedder: images [N, C, H, W] in [-1, 1] (any size; resized to input_size) -> [N, dim] L2-normalised.
/// TorchScript contract: `forward(x) -> e[N, d]`, optional attributes `input_size: int`,
/// `channels: int` (defaults: the probe tries 3x112x112).
class Embedder {
 public:
  virtual ~Embedder() = default;
  virtual int64_t dim() const = 0;
  virtual ImageShape input_shape() const = 0;
  /// Embeds a batch; resizes and converts channels as needed. Output L2-normalised.
  virtual at::Tensor embed(const at::Tensor& images) = 0;
  virtual void to(const c10::Device& device) = 0;
  virtual c10::Device device() const { return c10::kCPU; }
  virtual std::string describe() const = 0;
  /// Stable id for index manifests: "<name>:<file hash>".
  virtual std::string id() const = 0;
};

std::unique_ptr<Embedder> load_embedder(const std::string& path, const c10::Device& device = default_device());

// ------------------------------------------------------------------------------------------------
/// Split classifier: head(x, split) -> activations after stage `split`; tail(a, split) -> logits.
/// TorchScript contract: methods `head(x)` and `tail(a)` (one split point, named "head"), or a
/// module whose top-level children run in order; children that are Sequential are entered, so
/// dotted names reach nested stages ("features.6"). A Linear stage flattens its input.
class SplitClassifier;
/// Throws Error{kUsage} listing the valid names when `split` is not one of them.
void check_split(const SplitClassifier& c, const std::string& split);

class SplitClassifier {
 public:
  virtual ~SplitClassifier() = default;
  /// Valid split names, input to output.
  virtual std::vector<std::string> split_points() const = 0;
  virtual ImageShape input_shape() const = 0;
  virtual int64_t num_classes() const = 0;
  virtual at::Tensor head(const at::Tensor& x, const std::string& split) = 0;
  virtual at::Tensor tail(const at::Tensor& a, const std::string& split) = 0;
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  virtual void to(const c10::Device& device) = 0;
  virtual c10::Device device() const { return c10::kCPU; }
  /// The arithmetic of head / tail / forward / head_bn and of inference_heads made from now on:
  /// "fp32" (default), "bf16" or "fp16" (CUDA only), as a cast copy of the model checked on a probe;
  /// inputs and outputs stay float32. Returns "" when set, else why not.
  virtual std::string set_precision(const std::string& p) { return p == "fp32" ? "" : describe() + " runs only in fp32"; }
  virtual std::string describe() const = 0;
  /// describe() and the file's hash: what resume checks and stage fingerprints compare.
  virtual std::string id() const { return describe(); }

  /// A BatchNorm stage and its stored running statistics ([C] each), for the DeepInversion prior.
  struct BatchNormStats {
    std::string stage;
    at::Tensor running_mean, running_var;
  };
  /// BatchNorm stages, input to output; empty when the model has none or hides them (head/tail
  /// TorchScript modules).
  virtual std::vector<BatchNormStats> batchnorm_stats() const { return {}; }
  /// head(x, split), also appending to *bn_inputs the input of every BatchNorm stage it runs
  /// through (in the order of batchnorm_stats()), as DeepInversion's forward hooks do.
  virtual at::Tensor head_bn(const at::Tensor& x, const std::string& split, std::vector<at::Tensor>* bn_inputs) {
    return head(x, split);
  }
  /// head(·, split) prepared for repeated inference-mode calls (gradients still flow to the
  /// input): native models fold each eval-mode BatchNorm into the convolution before it and run
  /// plain ops, which is what makes white-box inversion fast. Same values as head() up to float
  /// rounding. The default calls head(). The function keeps this model alive by reference.
  using HeadFn = std::function<at::Tensor(const at::Tensor&)>;
  virtual HeadFn inference_head(const std::string& split) {
    check_split(*this, split);
    return [this, split](const at::Tensor& x) { return head(x, split); };
  }
};

std::unique_ptr<SplitClassifier> load_classifier(const std::string& path, const c10::Device& device = default_device());

/// A model (Generator, SplitClassifier) in precision `p` for a scope, fp32 again after it: Error{kUsage}
/// "FLAG P: why" when the model cannot run in `p`. fp32 does nothing.
template <class Model>
class PrecisionScope {
 public:
  PrecisionScope(Model& m, const std::string& p, const char* flag) : m_(m), on_(p != "fp32") {
    if (!on_) return;
    const auto why = m_.set_precision(p);
    RW_CHECK(why.empty(), Usage, flag, " ", p, ": ", why);
  }
  ~PrecisionScope() {
    if (on_) m_.set_precision("fp32");
  }
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  Model& m_;
  bool on_;
};

/// Converts images [N,C,H,W] in [-1,1] to `shape`: grey <-> RGB (channel mean / repeat), bilinear
/// resize. No-op when they match. Error{kInput} for other channel counts.
at::Tensor adapt_images(const at::Tensor& images, const ImageShape& shape);

}  // namespace rw::models

namespace rw::models {

// ------------------------------------------------------------------------------------------------
/// Feature extractor for perceptual (feature) losses: images [N, C, H, W] in [-1, 1], any size
/// (adapted to the net's input: resized, grey <-> RGB) -> the activations at one named layer
/// [N, ...]. Gradients flow to the images.
class FeatureNet {
 public:
  virtual ~FeatureNet() = default;
  virtual at::Tensor features(const at::Tensor& images) = 0;
  /// "face ResNet face.pt at conv64" / "classifier d.pt at features.3".
  virtual std::string describe() const = 0;
  /// describe() and the file's hash: what resume checks and stage fingerprints compare.
  virtual std::string id() const = 0;
};

/// `path` is the face descriptor (a native face_resnet file from `rewind convert face-api`: layers
/// conv32, conv64, conv128, conv256, conv256_out), a native discriminator (`train gan` writes
/// G.disc: layers block1, block2, ...) or any model load_classifier takes, a TorchScript
/// discriminator whose children run in order included (layers: its split points). Error{kUsage} listing the layers when `layer`
/// is not one of them.
std::unique_ptr<FeatureNet> load_feature_net(const std::string& path, const std::string& layer,
                                             const c10::Device& device = default_device());

}  // namespace rw::models
