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

/// A DCGAN-style generator compiled for inversion and sampling on CPU (weights frozen, BatchNorm
/// folded in): a dense first layer z [N, D] -> relu(z W^T + b) viewed as [N, c0, base, base], then
/// up layers that each double the size, every one the linear map of a ConvTranspose2d(kernel 4,
/// stride 2, padding 1) plus bias, ReLU between them and tanh on the last.
/// Forward: one 2x2 convolution with 4 x cout outputs on the padded low-resolution map (one output
/// group per output phase), interleaved; the input gradient: one stride-2 4x4 convolution. LibTorch
/// 1.13's CPU transposed convolution and its backward loop over the batch through im2col / col2im;
/// these are oneDNN convolutions over the whole batch. Differentiable in z.
/// Made from rewind's own generator (nearest x2 upsample + 3x3 conv is such a transposed convolution
/// with a 4x4 kernel, at 2.25x fewer multiply-adds than the upsampled conv) or from the ConvTranspose2d
/// stack of a user's TorchScript DCGAN (models.cpp, checked against the module before use).
class FrozenDcgan {
 public:
  struct Up {
    torch::Tensor w;     ///< [cin, cout, 4, 4] the transposed convolution's weight, BatchNorm folded in
    torch::Tensor bias;  ///< [cout]
    bool relu = true;    ///< false for the output layer (tanh follows)
  };
  explicit FrozenDcgan(DcganGeneratorImpl& g);
  /// fc_w [c0 * base * base, D], fc_b [c0 * base * base], the dense layer's output laid out as [c0, base, base].
  FrozenDcgan(torch::Tensor fc_w, torch::Tensor fc_b, int64_t c0, int64_t base, std::vector<Up> ups);
  torch::Tensor forward(const torch::Tensor& z) const;
  void to(const torch::Device& d);
  /// The up layers' arithmetic: kFloat32 (default) or kBFloat16 (weights, activations and their
  /// gradients in bfloat16; z, the dense layer and the output stay float32).
  void set_dtype(torch::ScalarType t);

 private:
  void prepare();  // the phase kernels of every layer, in dtype_
  torch::Tensor fc_w_, fc_b_;
  int64_t c0_ = 0, base_ = 4;
  std::vector<Up> ups_;
  std::vector<torch::Tensor> phase_;  // per up layer [4 * cout, cin, 2, 2]: phase (a, c)'s kernel at 2a + c
  std::vector<torch::Tensor> bias4_;  // per up layer [4 * cout]: its bias once per phase
  std::vector<torch::Tensor> w_;      // per up layer: Up::w in dtype_ (the input-gradient convolution)
  torch::ScalarType dtype_ = torch::kFloat32;
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
