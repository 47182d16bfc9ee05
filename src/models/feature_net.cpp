// Feature extractors for perceptual losses: the face descriptor's residual groups, or the split
// points of any classifier / discriminator.
#include <torch/torch.h>

#include <filesystem>

#include "rewind/core/error.h"
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

}  // namespace

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
