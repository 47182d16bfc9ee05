// rewind's native nets (LibTorch modules): what `rewind train` trains and native model files hold.
// Include only from .cpp files (pulls in torch/nn).
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace rw::models {

/// Eval-mode BatchNorm as a per-channel affine map y = x * scale + shift
/// (scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale), for folding it
/// into the linear / conv layer before it. Returns {scale, shift}, each [C].
std::pair<torch::Tensor, torch::Tensor> batchnorm_affine(const torch::Tensor& weight, const torch::Tensor& bias,
                                                         const torch::Tensor& running_mean,
                                                         const torch::Tensor& running_var, double eps);

// ------------------------------------------------------------------------------------------------
/// DCGAN-family generator. arch: dcgan28 (7->14->28), dcgan32 (4->...->32), dcgan64 (4->...->64), dcgan128 (4->...->128).
/// z [N, latent_dim] -> linear + BN + ReLU to the first feature map, then per doubling nearest x2
/// upsampling + 3x3 conv + BN + ReLU, last conv to `channels`, tanh -> images [N, channels, res, res].
struct GanArch {
  std::string name = "dcgan64";  ///< dcgan28 | dcgan32 | dcgan64 | dcgan128
  int64_t latent_dim = 128;
  int channels = 3;
  int width = 32;  ///< channels of the last hidden layer (ngf / ndf); cost grows with width^2
  int resolution() const;
  nlohmann::json to_json(const std::string& kind) const;
  static GanArch from_json(const nlohmann::json& j);
};

class FrozenDcgan;

/// Position of `layer` among `names`; Error{kUsage} "<what> has no layer '<layer>'; layers: ..." when
/// it is not one of them. The one layer-name lookup of the networks here and their feature nets.
size_t layer_index(const std::vector<std::string>& names, const std::string& layer, const std::string& what);

class DcganGeneratorImpl : public torch::nn::Module {
 public:
  friend class FrozenDcgan;
  explicit DcganGeneratorImpl(const GanArch& arch);
  torch::Tensor forward(torch::Tensor z);
  const GanArch& arch() const { return arch_; }
  /// Its intermediate layers, input to output: "fc" (the first feature map, 4x4 or 7x7), then
  /// "block1", "block2", ... (after each upsample + conv + BatchNorm + ReLU, twice the size).
  std::vector<std::string> layer_names() const;
  /// z -> the activations after `layer`; head(z, l) then tail(., l) is forward(z).
  torch::Tensor head(const torch::Tensor& z, const std::string& layer);
  torch::Tensor tail(torch::Tensor a, const std::string& layer);

 private:
  GanArch arch_;
  torch::nn::Linear fc_{nullptr};
  torch::nn::BatchNorm1d bn0_{nullptr};
  torch::nn::Sequential net_{nullptr};
  int64_t base_ = 4, first_channels_ = 0;
};
TORCH_MODULE(DcganGenerator);

/// A trained DcganGenerator compiled for inversion and sampling on CPU (weights frozen): BatchNorm
/// folded into the preceding linear / conv; every "nearest x2 upsample + 3x3 conv" computed exactly
/// as four 2x2 convolutions on the low-resolution map (one per output phase), interleaved, with the
/// input gradient computed the same way as forward convolutions (LibTorch 1.13's CPU conv backward
/// goes through the slow col2im). The same function with 2.25x fewer multiply-adds; differentiable in z.
class FrozenDcgan {
 public:
  explicit FrozenDcgan(DcganGeneratorImpl& g);
  torch::Tensor forward(const torch::Tensor& z) const;
  void to(const torch::Device& d);

 private:
  struct Up {
    torch::Tensor k;       // [4 * cout, cin, 2, 2] phase kernels (phase 2a + c), BatchNorm folded in
    torch::Tensor k_back;  // [4 * cin, cout, 2, 2] their flipped transposes: input-gradient kernels
    torch::Tensor bias;    // [cout]
    bool relu = true;      // false for the output layer (tanh follows)
  };
  torch::Tensor fc_w_, fc_b_;
  int64_t c0_ = 0, base_ = 4;
  std::vector<Up> ups_;
};

/// Conv2d with spectral normalisation (one power iteration per training forward, Miyato et al.).
class SNConv2dImpl : public torch::nn::Module {
 public:
  SNConv2dImpl(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::Tensor weight_, bias_, u_;
  int64_t stride_, pad_;
};
TORCH_MODULE(SNConv2d);

/// DCGAN discriminator with spectral norm: images -> [N] real/fake scores (hinge loss).
class DcganDiscriminatorImpl : public torch::nn::Module {
 public:
  explicit DcganDiscriminatorImpl(const GanArch& arch);
  torch::Tensor forward(torch::Tensor x);
  /// Its blocks (4x4 / stride 2 conv + LeakyReLU), input to output: "block1" (half resolution) ...
  /// the feature layers a perceptual loss can use.
  std::vector<std::string> stage_names() const;
  /// The activations after `stage`; Error{kUsage} listing the stages for an unknown one.
  torch::Tensor features(torch::Tensor x, const std::string& stage);

 private:
  torch::nn::Sequential net_{nullptr};
};
TORCH_MODULE(DcganDiscriminator);

// ------------------------------------------------------------------------------------------------
/// A chain of named stages: split-classifier and embedder trunks. Stage names are the split points.
class StagedNetImpl : public torch::nn::Module {
 public:
  void add(const std::string& name, torch::nn::AnyModule m);
  /// Runs stages (after `from`, up to and including `to`); from = "" starts at the input,
  /// to = "" runs to the end.
  torch::Tensor run(torch::Tensor x, const std::string& from = "", const std::string& to = "");
  torch::Tensor forward(torch::Tensor x) { return run(std::move(x)); }
  const std::vector<std::string>& names() const { return names_; }
  int index_of(const std::string& name) const;  ///< -1 when absent

 private:
  std::vector<std::string> names_;
  std::vector<torch::nn::AnyModule> stages_;
};
TORCH_MODULE(StagedNet);

/// Classifier / embedder architecture record.
/// cnn28: 1x28x28 (Fashion-MNIST); cnn64: 3x64x64 (synthetic faces). Stages: conv1 bn1 relu1 ...
struct CnnArch {
  std::string name = "cnn28";  ///< cnn28 | cnn32 | cnn64
  int channels = 1;
  int width = 32;              ///< channels of the first conv; later blocks double it
  int64_t outputs = 10;        ///< classes (classifier) or embedding dim (embedder)
  int resolution() const;
  nlohmann::json to_json(const std::string& kind) const;
  static CnnArch from_json(const nlohmann::json& j);
};

/// Builds the staged CNN: conv/bn/relu blocks with pools, then flatten, fc1, relu, fc2 (outputs).
StagedNet make_cnn(const CnnArch& arch);

}  // namespace rw::models
