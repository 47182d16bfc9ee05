// He et al.'s black-box attack: an inverse network (decoder) trained on auxiliary data.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>

#include "rewind/core/error.h"
#include "rewind/core/runtime.h"
#include "rewind/featinv/featinv.h"

namespace nn = torch::nn;

namespace rw::featinv {

namespace {

struct DecoderImpl : nn::Module {
  DecoderImpl(const std::vector<int64_t>& act_shape, const models::ImageShape& img, int64_t width) {
    RW_CHECK(!act_shape.empty(), Internal, "inverse net: empty activation shape");
    int64_t h = 0, w = 0;
    if (act_shape.size() == 3) {  // conv activations [C', H', W']
      spatial = true;
      in_shape = act_shape;
      h = act_shape[1];
      w = act_shape[2];
      front = register_module("front", nn::Sequential(nn::BatchNorm2d(act_shape[0]),
                                                      nn::Conv2d(nn::Conv2dOptions(act_shape[0], width, 3).padding(1)),
                                                      nn::ReLU(true)));
    } else {  // anything else is flattened
      int64_t f = 1;
      for (auto s : act_shape) f *= s;
      h = std::max<int64_t>(1, img.height / 4);
      w = std::max<int64_t>(1, img.width / 4);
      front = register_module("front", nn::Sequential(nn::BatchNorm1d(f), nn::Linear(f, width * h * w), nn::ReLU(true),
                                                      nn::Unflatten(nn::UnflattenOptions(1, {width, h, w}))));
    }
    body = register_module("body", nn::Sequential());
    auto block = [&] {
      body->push_back(nn::Conv2d(nn::Conv2dOptions(width, width, 3).padding(1).bias(false)));
      body->push_back(nn::BatchNorm2d(width));
      body->push_back(nn::ReLU(true));
    };
    while (h * 2 <= img.height && w * 2 <= img.width) {
      body->push_back(nn::Upsample(nn::UpsampleOptions().scale_factor(std::vector<double>{2, 2}).mode(torch::kNearest)));
      block();
      h *= 2;
      w *= 2;
    }
    if (h != img.height || w != img.width) {
      body->push_back(nn::Upsample(nn::UpsampleOptions()
                                       .size(std::vector<int64_t>{img.height, img.width})
                                       .mode(torch::kBilinear)
                                       .align_corners(false)));
    }
    block();
    body->push_back(nn::Conv2d(nn::Conv2dOptions(width, img.channels, 3).padding(1)));
    body->push_back(nn::Tanh());
  }
  torch::Tensor forward(torch::Tensor a) {
    if (!spatial) a = a.flatten(1);
    return body->forward(front->forward(a));
  }
  bool spatial = false;
  std::vector<int64_t> in_shape;
  nn::Sequential front{nullptr}, body{nullptr};
};
TORCH_MODULE(Decoder);

}  // namespace

struct InverseNet::Impl {
  Decoder net{nullptr};
  std::vector<int64_t> act_shape;
};

InverseNet::InverseNet(const std::vector<int64_t>& act_shape, const models::ImageShape& image, int64_t width,
                       uint64_t seed)
    : impl_(std::make_unique<Impl>()) {
  RW_CHECK(width > 0, Usage, "--inv-width must be positive");
  torch::manual_seed(seed);
  impl_->net = Decoder(act_shape, image, width);
  impl_->act_shape = act_shape;
}
InverseNet::~InverseNet() = default;
InverseNet::InverseNet(InverseNet&&) noexcept = default;
InverseNet& InverseNet::operator=(InverseNet&&) noexcept = default;

int64_t InverseNet::parameters() const {
  int64_t n = 0;
  for (const auto& p : impl_->net->parameters()) n += p.numel();
  return n;
}

std::vector<double> InverseNet::train(const at::Tensor& aux_acts, const at::Tensor& aux_images,
                                      const InverseNetOptions& o, const ProgressFn& progress) {
  RW_CHECK(aux_acts.size(0) == aux_images.size(0) && aux_acts.size(0) >= 2, Usage,
           "the inverse network needs at least 2 auxiliary images (--aux)");
  RW_CHECK(o.epochs >= 0 && o.batch > 0 && std::isfinite(o.lr) && o.lr > 0, Usage,
           "--inv-epochs >= 0, --inv-batch > 0 and --inv-lr a finite number > 0");
  auto& net = impl_->net;
  net->to(aux_acts.device());
  net->train();
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(o.lr));
  const int64_t m = aux_acts.size(0);
  const int64_t per_epoch = (m + o.batch - 1) / o.batch;
  const int64_t total = per_epoch * o.epochs;
  auto gen = at::detail::createCPUGenerator(mix_seed(o.seed, 0x1DEC0DEull));
  std::vector<double> curve;
  int64_t step = 0;
  for (int64_t e = 0; e < o.epochs; ++e) {
    auto perm = torch::randperm(m, gen, torch::kLong).to(aux_acts.device());
    double sum = 0;
    int64_t count = 0;
    for (int64_t s = 0; s < m; s += o.batch) {
      auto idx = perm.slice(0, s, std::min(m, s + o.batch));
      if (idx.size(0) < 2) continue;  // BatchNorm needs 2 items
      const double lr = 0.5 * o.lr * (1 + std::cos(M_PI * double(step) / double(std::max<int64_t>(1, total))));
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
      opt.zero_grad();
      auto loss = (net->forward(aux_acts.index_select(0, idx)) - aux_images.index_select(0, idx)).pow(2).mean();
      loss.backward();
      opt.step();
      sum += loss.item<double>() * double(idx.size(0));
      count += idx.size(0);
      ++step;
      char detail[48];
      std::snprintf(detail, sizeof detail, "epoch %lld mse %.4f", (long long)(e + 1), sum / double(count));
      report_progress(progress, {"inverse-net", step, total, detail});
    }
    curve.push_back(count ? sum / double(count) : 0.0);
  }
  net->eval();
  return curve;
}

at::Tensor InverseNet::decode(const at::Tensor& acts, int64_t batch) {
  torch::NoGradGuard ng;
  auto& net = impl_->net;
  net->eval();
  net->to(acts.device());
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < acts.size(0); s += batch) parts.push_back(net->forward(acts.slice(0, s, std::min(acts.size(0), s + batch))));
  return torch::cat(parts);
}

AttackResult inverse_network(models::SplitClassifier& c, const std::string& split, const at::Tensor& acts,
                             const at::Tensor& aux_images, const Defense& d, const InverseNetOptions& o,
                             const ProgressFn& progress, std::vector<double>* epoch_losses) {
  const auto t0 = std::chrono::steady_clock::now();
  auto aux_acts = defend(activations(c, split, aux_images), d, o.seed ^ 0xA0Aull);
  std::vector<int64_t> shape(aux_acts.sizes().begin() + 1, aux_acts.sizes().end());
  std::vector<int64_t> tshape(acts.sizes().begin() + 1, acts.sizes().end());
  RW_CHECK(shape == tshape, Internal, "inverse network: target and auxiliary activations differ in shape");
  InverseNet inv(shape, c.input_shape(), o.width, o.seed);
  auto curve = inv.train(aux_acts, aux_images, o, progress);
  if (epoch_losses) *epoch_losses = curve;
  AttackResult r;
  r.recon = inv.decode(acts).clamp(-1, 1);
  r.restart = torch::zeros({acts.size(0)}, torch::kLong);
  {
    torch::NoGradGuard ng;
    auto a = activations(c, split, r.recon);
    auto denom = acts.pow(2).flatten(1).mean(1).clamp_min(1e-12);
    r.feature_loss = (a - acts).pow(2).flatten(1).mean(1) / denom;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace rw::featinv
