// Feature extractors for perceptual losses: the face descriptor's residual groups, or the split
// points of any classifier / discriminator.
#include <torch/torch.h>

#include <filesystem>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/models/discriminator.h"
#include "rewind/models/face_resnet.h"
#include "rewind/models/models.h"
#include "rewind/models/native.h"
#include "rewind/models/nets.h"

namespace rw::models {

namespace {

/// What every feature net here shares: its name for reports and its id (name + file hash) for
/// resume checks and stage fingerprints.
class NamedFeatures : public FeatureNet {
 public:
  NamedFeatures(std::string name, const std::string& path) : name_(std::move(name)), id_(name_ + ":" + file_hash(path)) {}
  std::string describe() const override { return name_; }
  std::string id() const override { return id_; }

 private:
  std::string name_, id_;
};

std::string file_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

class FaceFeatures : public NamedFeatures {
 public:
  FaceFeatures(const std::string& path, const std::string& layer, const c10::Device& device)
      : NamedFeatures("face ResNet " + file_name(path) + " at " + layer, path),
        net_(load_face_resnet_native(path)),
        layer_(layer) {
    layer_index(FaceResNetImpl::stage_names(), layer, "the face descriptor " + path);
    net_->to(device);
  }
  at::Tensor features(const at::Tensor& x) override {
    const int s = int(FaceResNetImpl::kInputSize);
    return net_->features((adapt_images(x, {3, s, s}) + 1.0) * 127.5, layer_);
  }

 private:
  FaceResNet net_;
  std::string layer_;
};

class DiscFeatures : public NamedFeatures {
 public:
  DiscFeatures(const std::string& path, const nlohmann::json& arch, const std::string& layer, const c10::Device& device)
      : NamedFeatures("discriminator " + file_name(path) + " at " + layer, path),
        arch_(GanArch::from_json(arch)),
        net_(arch_),
        layer_(layer) {
    load_native_weights(path, *net_);
    net_->eval();
    for (auto& p : net_->parameters()) p.set_requires_grad(false);
    layer_index(net_->stage_names(), layer, "the discriminator " + path);
    net_->to(device);
  }
  at::Tensor features(const at::Tensor& x) override {
    const int r = arch_.resolution();
    return net_->features(adapt_images(x, {int(arch_.channels), r, r}), layer_);
  }

 private:
  GanArch arch_;
  DcganDiscriminator net_;
  std::string layer_;
};

class SplitFeatures : public NamedFeatures {
 public:
  SplitFeatures(std::unique_ptr<SplitClassifier> c, const std::string& path, const std::string& layer)
      : NamedFeatures(c->describe() + " at " + layer, path), c_(std::move(c)) {
    check_split(*c_, layer);
    head_ = c_->inference_head(layer);
  }
  at::Tensor features(const at::Tensor& x) override { return head_(adapt_images(x, c_->input_shape())); }

 private:
  std::unique_ptr<SplitClassifier> c_;
  SplitClassifier::HeadFn head_;
};

class NativeDiscriminator : public Discriminator {
 public:
  NativeDiscriminator(const std::string& path, const nlohmann::json& arch, const c10::Device& device)
      : arch_(GanArch::from_json(arch)), net_(arch_) {
    load_native_weights(path, *net_);
    net_->eval();
    for (auto& p : net_->parameters()) p.set_requires_grad(false);
    net_->to(device);
    device_ = device;
    const int r = arch_.resolution();
    name_ = "discriminator " + file_name(path) + " (" + arch.value("name", std::string("dcgan")) + ", " +
            std::to_string(arch_.channels) + "x" + std::to_string(r) + "x" + std::to_string(r) + ")";
    id_ = "discriminator (" + arch.value("name", std::string("dcgan")) + "):" + file_hash(path);  // contents, not the name
  }
  at::Tensor score(const at::Tensor& x) override {
    torch::NoGradGuard ng;
    const int r = arch_.resolution();
    auto in = adapt_images(x, {int(arch_.channels), r, r}).to(device_, torch::kFloat32);
    return net_->forward(in).to(x.device(), torch::kFloat32).view({-1});
  }
  std::string describe() const override { return name_; }
  std::string id() const override { return id_; }

 private:
  GanArch arch_;
  DcganDiscriminator net_;
  c10::Device device_ = torch::kCPU;
  std::string name_, id_;
};

class ScriptDiscriminator : public Discriminator {
 public:
  ScriptDiscriminator(const std::string& path, const ImageShape& input, const c10::Device& device)
      : input_(input), device_(device), path_(path) {
    try {
      m_ = torch::jit::load(path, device);
    } catch (const c10::Error& e) {
      RW_FAIL(Model, "'", path, "' is not a rewind discriminator (train gan's G.disc) nor a TorchScript file (",
              std::string(e.what_without_backtrace()).substr(0, 160), "); export one with torch.jit.script(D).save(path)");
    }
    m_.eval();
    for (auto p : m_.parameters()) p.set_requires_grad(false);
    name_ = "discriminator " + file_name(path) + " (TorchScript, " + std::to_string(input.channels) + "x" +
            std::to_string(input.height) + "x" + std::to_string(input.width) + ")";
    id_ = "discriminator (TorchScript, " + std::to_string(input.channels) + "x" + std::to_string(input.height) + "x" +
          std::to_string(input.width) + "):" + file_hash(path);
    // one probe now, so that a module of another kind fails here with its file named, not mid-run
    auto out = run(torch::zeros({2, input.channels, input.height, input.width}));
    RW_CHECK(out.numel() == 2, Model, "the discriminator '", path, "' returned ", out.sizes(),
             " for 2 images: a discriminator's forward must return one logit per image ([N] or [N, 1])");
  }
  at::Tensor score(const at::Tensor& x) override {
    auto out = run(adapt_images(x, input_));
    RW_CHECK(out.numel() == x.size(0), Model, describe(), " returned ", out.numel(), " values for ", x.size(0),
             " images: a discriminator's forward must return one logit per image");
    return out.to(x.device(), torch::kFloat32).view({-1});
  }
  std::string describe() const override { return name_; }
  std::string id() const override { return id_; }

 private:
  at::Tensor run(const at::Tensor& x) {
    torch::NoGradGuard ng;
    c10::IValue v;
    try {
      v = m_.forward({x.to(device_, torch::kFloat32)});
    } catch (const std::exception& e) {  // c10::Error, or the interpreter's JITException for errors inside forward
      std::string why = e.what();
      const auto nl = why.find_last_of('\n', why.size() > 1 ? why.size() - 2 : 0);
      if (nl != std::string::npos && why.size() > 400) why = why.substr(nl + 1);  // the error, not the traceback
      RW_FAIL(Model, describe(), " (", path_, ") failed on images of shape ", x.sizes(), " (", why.substr(0, 240),
              "): is it this GAN's discriminator, taking its [N, C, H, W] images in [-1, 1]?");
    }
    RW_CHECK(v.isTensor(), Model, describe(), "'s forward returned no tensor: a discriminator returns one logit per image");
    return v.toTensor();
  }
  ImageShape input_;
  c10::Device device_;
  std::string path_;
  torch::jit::Module m_;
  std::string name_, id_;
};

}  // namespace

std::unique_ptr<Discriminator> load_discriminator(const std::string& path, const ImageShape& input,
                                                  const c10::Device& device) {
  RW_CHECK(std::filesystem::exists(path), Model, "discriminator file '", path,
           "' does not exist (train gan writes it as GENERATOR.disc)");
  RW_CHECK(std::filesystem::is_regular_file(path), Model, "discriminator '", path, "' is not a file");
  RW_CHECK(path.size() < 5 || path.compare(path.size() - 5, 5, ".ckpt") != 0, Model, "'", path,
           "' is a training checkpoint; the discriminator is GENERATOR.disc beside it");
  if (is_native(path)) {
    const auto arch = read_native_arch(path);
    const std::string kind = arch.value("kind", "");
    RW_CHECK(kind == "discriminator", Model, "'", path, "' holds ", kind.empty() ? "a model of no known kind" :
             (std::string("aeiou").find(kind[0]) != std::string::npos ? "an " : "a ") + kind,
             ", not a discriminator (train gan writes one as GENERATOR.disc)");
    auto d = std::make_unique<NativeDiscriminator>(path, arch, device);
    const auto a = GanArch::from_json(arch);
    if (a.channels != input.channels || a.resolution() != input.height || a.resolution() != input.width)
      log_warn("the discriminator ", path, " takes ", a.channels, "x", a.resolution(), "x", a.resolution(),
               " images and the generator makes ", input.channels, "x", input.height, "x", input.width,
               ": is it this GAN's discriminator? (its images are adapted to it)");
    return d;
  }
  return std::make_unique<ScriptDiscriminator>(path, input, device);
}

std::unique_ptr<FeatureNet> load_feature_net(const std::string& path, const std::string& layer,
                                             const c10::Device& device) {
  RW_CHECK(!layer.empty(), Usage, "a feature net needs --feature-layer NAME (the face descriptor: conv32, conv64, "
           "conv128, conv256 or conv256_out; a discriminator: block1, block2, ...; a classifier: one of its split points)");
  if (is_native(path)) {
    const auto arch = read_native_arch(path);
    if (arch.value("name", "") == "face_resnet") return std::make_unique<FaceFeatures>(path, layer, device);
    if (arch.value("kind", "") == "discriminator")  // `train gan` writes it next to the generator (.disc)
      return std::make_unique<DiscFeatures>(path, arch, layer, device);
    const std::string kind = arch.value("kind", "");
    RW_CHECK(kind == "classifier", Usage, "--feature-net ", path, " holds a ", kind.empty() ? "model of no known kind" : kind,
             ": a feature net is the face descriptor (convert face-api), a discriminator (train gan's G.disc) or a "
             "classifier");
  }
  return std::make_unique<SplitFeatures>(load_classifier(path, device), path, layer);
}

}  // namespace rw::models
