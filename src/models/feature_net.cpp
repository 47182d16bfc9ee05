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

class FaceFeatures : public FeatureNet {
 public:
  FaceFeatures(const std::string& path, const std::string& layer) : net_(load_face_resnet_native(path)), layer_(layer) {
    const auto& names = FaceResNetImpl::stage_names();
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    RW_CHECK(std::find(names.begin(), names.end(), layer) != names.end(), Usage, "--feature-layer '", layer,
             "' is not a layer of the face descriptor ", path, "; layers: ", list);
    name_ = "face ResNet " + std::filesystem::path(path).filename().string() + " at " + layer;
  }
  at::Tensor features(const at::Tensor& x) override {
    const int s = int(FaceResNetImpl::kInputSize);
    return net_->features((adapt_images(x, {3, s, s}) + 1.0) * 127.5, layer_);
  }
  std::string describe() const override { return name_; }
  std::string id() const override { return id_; }
  void to(const c10::Device& d) { net_->to(d); }
  std::string id_;

 private:
  FaceResNet net_;
  std::string layer_, name_;
};

class DiscFeatures : public FeatureNet {
 public:
  DiscFeatures(const std::string& path, const nlohmann::json& arch, const std::string& layer)
      : arch_(GanArch::from_json(arch)), net_(arch_), layer_(layer) {
    load_native_weights(path, *net_);
    net_->eval();
    for (auto& p : net_->parameters()) p.set_requires_grad(false);
    const auto names = net_->stage_names();
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    RW_CHECK(std::find(names.begin(), names.end(), layer) != names.end(), Usage, "--feature-layer '", layer,
             "' is not a layer of the discriminator ", path, "; layers: ", list);
    name_ = "discriminator " + std::filesystem::path(path).filename().string() + " at " + layer;
  }
  at::Tensor features(const at::Tensor& x) override {
    const int r = arch_.resolution();
    return net_->features(adapt_images(x, {int(arch_.channels), r, r}), layer_);
  }
  std::string describe() const override { return name_; }
  std::string id() const override { return id_; }
  void to(const c10::Device& d) { net_->to(d); }
  std::string id_;

 private:
  GanArch arch_;
  DcganDiscriminator net_;
  std::string layer_, name_;
};

class SplitFeatures : public FeatureNet {
 public:
  SplitFeatures(std::unique_ptr<SplitClassifier> c, const std::string& path, const std::string& layer)
      : c_(std::move(c)), layer_(layer) {
    check_split(*c_, layer);
    head_ = c_->inference_head(layer);
    name_ = c_->describe() + " at " + layer;
    (void)path;
  }
  at::Tensor features(const at::Tensor& x) override { return head_(adapt_images(x, c_->input_shape())); }
  std::string describe() const override { return name_; }
  std::string id() const override { return id_; }
  std::string id_;

 private:
  std::unique_ptr<SplitClassifier> c_;
  SplitClassifier::HeadFn head_;
  std::string layer_, name_;
};

}  // namespace

std::unique_ptr<FeatureNet> load_feature_net(const std::string& path, const std::string& layer,
                                             const c10::Device& device) {
  RW_CHECK(!layer.empty(), Usage, "a feature net needs --feature-layer NAME (the face descriptor: conv32, conv64, "
           "conv128, conv256 or conv256_out; a discriminator: block1, block2, ...; a classifier: one of its split points)");
  if (is_native(path)) {
    const auto arch = read_native_arch(path);
    if (arch.value("name", "") == "face_resnet") {
      auto f = std::make_unique<FaceFeatures>(path, layer);
      f->to(device);
      f->id_ = f->describe() + ":" + file_hash(path);
      return f;
    }
    if (arch.value("kind", "") == "discriminator") {  // `train gan` writes it next to the generator (.disc)
      auto f = std::make_unique<DiscFeatures>(path, arch, layer);
      f->to(device);
      f->id_ = f->describe() + ":" + file_hash(path);
      return f;
    }
    const std::string kind = arch.value("kind", "");
    RW_CHECK(kind == "classifier", Usage, "--feature-net ", path, " holds a ", kind.empty() ? "model of no known kind" : kind,
             ": a feature net is the face descriptor (convert face-api), a discriminator (train gan's G.disc) or a "
             "classifier");
  }
  auto f = std::make_unique<SplitFeatures>(load_classifier(path, device), path, layer);
  f->id_ = f->describe() + ":" + file_hash(path);
  return f;
}

}  // namespace rw::models
