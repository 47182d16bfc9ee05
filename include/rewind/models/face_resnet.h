// The dlib face-recognition ResNet (128-d descriptor, the net behind face-api's
// computeFaceDescriptor), ported to LibTorch from the TensorFlow.js weights shipped in the npm
// package @vladmandic/face-api (model/face_recognition_model*; package and weights MIT, upstream
// dlib weights public domain). See data-tools/face-api/README.md and /work/shared/face-descriptor.md.
//
// Input  [N, 3, 150, 150] float32 RGB, values 0..255 (an aligned face crop).
// Output [N, 128] descriptors, NOT L2-normalised (norms ~1.3-1.5); same person: Euclidean < 0.6.
// The mean-RGB subtraction and /255 happen inside forward(), as in face-api.
//
// Parameter names (stable, used by save_native / load_native_weights):
//   <layer>.conv.weight [cout, cin, k, k], <layer>.conv.bias [cout],
//   <layer>.scale.weight [cout], <layer>.scale.bias [cout]   (frozen per-channel affine)
// with <layer> = conv32_down | <block>.conv1 | <block>.conv2, and fc [256, 128] (x @ fc, no bias).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace rw::models {

/// Convolution without padding-mode magic: conv2d(x, weight, stride, padding) + bias.
class FaceConv2dImpl : public torch::nn::Module {
 public:
  FaceConv2dImpl(int64_t cin, int64_t cout, int64_t kernel, int64_t stride, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
  int64_t stride, padding;
};
TORCH_MODULE(FaceConv2d);

/// Per-channel affine x * weight + bias (dlib's "affine" layer that replaces batch norm).
class FaceScaleImpl : public torch::nn::Module {
 public:
  explicit FaceScaleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
};
TORCH_MODULE(FaceScale);

/// conv + bias, affine, optional ReLU.
class FaceConvLayerImpl : public torch::nn::Module {
 public:
  FaceConvLayerImpl(int64_t cin, int64_t cout, int64_t kernel, int64_t stride, int64_t padding, bool relu);
  torch::Tensor forward(const torch::Tensor& x);
  FaceConv2d conv{nullptr};
  FaceScale scale{nullptr};
  bool relu;
};
TORCH_MODULE(FaceConvLayer);

/// Residual block. down = false: 3x3/s1/p1 conv1 (+ReLU), conv2, + x, ReLU.
/// down = true: conv1 is 3x3/s2 without padding; the shortcut is a 2x2/s2 average pool, zero-filled
/// after its channels when cout > cin; a conv branch one smaller than the shortcut is zero-padded
/// by one row at the bottom and one column at the right.
class FaceResidualImpl : public torch::nn::Module {
 public:
  FaceResidualImpl(int64_t cin, int64_t cout, bool down);
  torch::Tensor forward(const torch::Tensor& x);
  FaceConvLayer conv1{nullptr}, conv2{nullptr};
  bool down;
};
TORCH_MODULE(FaceResidual);

class FaceResNetImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kInputSize = 150;
  static constexpr int64_t kDim = 128;

  FaceResNetImpl();
  /// x [N, 3, 150, 150] RGB 0..255 -> [N, 128], un-normalised. Differentiable in x.
  torch::Tensor forward(torch::Tensor x);
  /// The residual groups, input to output: conv32 (after the first conv, pool and the 32-channel
  /// blocks: [N, 32, 35, 35]), conv64 [N, 64, 17, 17], conv128 [N, 128, 8, 8], conv256
  /// [N, 256, 4, 4], conv256_out [N, 256, 2, 2].
  static const std::vector<std::string>& stage_names();
  /// The activations after `stage` for x as in forward(). Error{kUsage} for an unknown stage.
  torch::Tensor features(torch::Tensor x, const std::string& stage);

  FaceConvLayer conv32_down{nullptr};
  FaceResidual conv32_1{nullptr}, conv32_2{nullptr}, conv32_3{nullptr};
  FaceResidual conv64_down{nullptr}, conv64_1{nullptr}, conv64_2{nullptr}, conv64_3{nullptr};
  FaceResidual conv128_down{nullptr}, conv128_1{nullptr}, conv128_2{nullptr};
  FaceResidual conv256_down{nullptr}, conv256_1{nullptr}, conv256_2{nullptr};
  FaceResidual conv256_down_out{nullptr};
  torch::Tensor fc;  ///< [256, 128]
};
TORCH_MODULE(FaceResNet);

/// Loads face-api's face_recognition_model-weights_manifest.json and its .bin shard(s) from
/// `model_dir` (dequantising uint8 tensors as q * scale + min in double, then float32, like tfjs).
/// Returns the net in eval mode with frozen parameters. Throws Error{kModel} naming the file for a
/// missing / malformed manifest, a short or long .bin, or an unexpected tensor name / shape.
FaceResNet load_face_api(const std::string& model_dir);

/// load_face_api + save_native(out_path) with the arch record
/// {"kind":"embedder","name":"face_resnet","dim":128,"input_size":150,"channels":3,"source":...}.
void convert_face_api(const std::string& model_dir, const std::string& out_path);

/// Builds the net from a native rewind file written by convert_face_api (arch name must be
/// "face_resnet"). Eval mode, frozen parameters.
FaceResNet load_face_resnet_native(const std::string& path);

/// Where face-api's model folder was looked for, and where it was found ("" when nowhere).
struct FaceApiSearch {
  std::string found;
  std::vector<std::string> searched;
};
/// face-api's model folder: $REWIND_FACE_API_DIR if set and present, else the first
/// data-tools/face-api/node_modules/@vladmandic/face-api/model (or share/rewind/face-api/model, an
/// install prefix) in the executable's folder or one of its parents, then in the current folder or
/// one of its parents. Set it up with `npm ci --prefix data-tools/face-api` in the source tree.
FaceApiSearch find_face_api_dir();
/// find_face_api_dir().found.
std::string default_face_api_dir();

}  // namespace rw::models
