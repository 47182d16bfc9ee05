// TorchScript models made by a PyTorch user (data-tools/make_client_models.py with Debian's
// python3-torch) must load and run through rewind's contracts.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/featinv/featinv.h"
#include "rewind/ganinv/invert.h"
#include "rewind/models/discriminator.h"
#include "rewind/models/models.h"
#include "rewind/models/native.h"
#include "rewind/models/nets.h"
#include "rewind/optim/losses.h"
#include "test_util.h"

using namespace rw;
using rw::test::TempDir;
namespace fs = std::filesystem;

namespace {
const std::string kPython = "/usr/bin/python3";

bool python_torch_available() {
  return fs::exists(kPython) && std::system((kPython + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0;
}
}  // namespace

class ClientModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!python_torch_available()) return;
    dir_ = new TempDir();
    std::string script = std::string(REWIND_TEST_FIXTURES) + "/../../data-tools/make_client_models.py";
    ok_ = std::system((kPython + " " + script + " " + dir_->path() + " >/dev/null").c_str()) == 0;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!python_torch_available()) GTEST_SKIP() << "python3-torch not installed (apt-get install python3-torch)";
    ASSERT_TRUE(ok_) << "make_client_models.py failed";
  }
  std::string path(const std::string& name) const { return (*dir_) / name; }
  static TempDir* dir_;
  static bool ok_;
};
TempDir* ClientModels::dir_ = nullptr;
bool ClientModels::ok_ = false;

TEST_F(ClientModels, Generator) {
  auto g = models::load_generator(path("generator.pt"));
  EXPECT_EQ(g->latent_dim(), 16);
  EXPECT_EQ(g->output_shape().channels, 3);
  EXPECT_EQ(g->output_shape().height, 32);
  torch::NoGradGuard ng;
  auto x = g->generate(torch::randn({4, 16}));
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{4, 3, 32, 32}));
  EXPECT_LE(x.abs().max().item<float>(), 1.0f);
}

/// Loads with the log captured; `freeze` sets REWIND_FREEZE=1 (freezing is opt-in).
template <class Load>
auto load_logged(Load load, bool freeze, std::string* log) {
  if (freeze) setenv("REWIND_FREEZE", "1", 1);
  else unsetenv("REWIND_FREEZE");
  const auto level = log_level();
  set_log_level(LogLevel::kInfo);
  auto old = set_log_sink([log](LogLevel, const std::string& m) { *log += m + "\n"; });
  auto model = load();
  set_log_sink(old);
  set_log_level(level);
  unsetenv("REWIND_FREEZE");
  return model;
}

/// Output and input gradient of sum(f(x) * v), v fixed.
static std::pair<at::Tensor, at::Tensor> out_and_grad(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& x0) {
  auto x = x0.clone().requires_grad_(true);
  auto y = f(x);
  auto v = torch::cos(torch::arange(y.numel(), torch::kFloat32).view(y.sizes()));
  auto g = torch::autograd::grad({(y * v).sum()}, {x})[0];
  return {y.detach(), g};
}

TEST_F(ClientModels, TorchScriptFrozenOnRequestComputesTheSame) {
  torch::manual_seed(3);
  setenv("REWIND_COMPILE", "0", 1);  // plain DCGANs are otherwise compiled, not frozen
  for (const std::string name : {"generator.pt", "generator_wplus.pt", "stylegan.pt"}) {
    std::string log_frozen, log_plain;
    auto gf = load_logged([&] { return models::load_generator(path(name)); }, true, &log_frozen);
    auto gp = load_logged([&] { return models::load_generator(path(name)); }, false, &log_plain);
    EXPECT_NE(log_frozen.find("frozen for the CPU"), std::string::npos) << name << ": " << log_frozen;
    EXPECT_EQ(log_plain.find("frozen"), std::string::npos) << log_plain;  // not asked: as exported, silently
    auto z = torch::randn({5, gf->latent_dim()});
    auto [yf, df] = out_and_grad([&](const at::Tensor& x) { return gf->generate(x); }, z);
    auto [yp, dp] = out_and_grad([&](const at::Tensor& x) { return gp->generate(x); }, z);
    EXPECT_LT((yf - yp).abs().max().item<double>(), 1e-5) << name;
    EXPECT_LT(((df - dp).norm() / dp.norm()).item<double>(), 1e-4) << name;
    if (gf->has_mapping()) {  // the other methods are kept and frozen too
      auto [wf, dwf] = out_and_grad([&](const at::Tensor& x) { return gf->mapping(x); }, z);
      auto [wp, dwp] = out_and_grad([&](const at::Tensor& x) { return gp->mapping(x); }, z);
      EXPECT_LT((wf - wp).abs().max().item<double>(), 1e-5) << name;
      auto [sf, dsf] = out_and_grad([&](const at::Tensor& x) { return gf->synthesis(x); }, wp);
      auto [sp, dsp] = out_and_grad([&](const at::Tensor& x) { return gp->synthesis(x); }, wp);
      EXPECT_LT((sf - sp).abs().max().item<double>(), 1e-5) << name;
      EXPECT_LT(((dsf - dsp).norm() / dsp.norm()).item<double>(), 1e-4) << name;
    }
  }
  std::string log_frozen, log_plain;
  auto ef = load_logged([&] { return models::load_embedder(path("embedder.pt")); }, true, &log_frozen);
  auto ep = load_logged([&] { return models::load_embedder(path("embedder.pt")); }, false, &log_plain);
  EXPECT_NE(log_frozen.find("frozen for the CPU"), std::string::npos) << log_frozen;
  auto img = torch::rand({3, 3, 64, 64}) * 2 - 1;
  auto [af, gaf] = out_and_grad([&](const at::Tensor& x) { return ef->embed(x); }, img);
  auto [ap, gap] = out_and_grad([&](const at::Tensor& x) { return ep->embed(x); }, img);
  EXPECT_LT((af - ap).abs().max().item<double>(), 1e-5);
  EXPECT_LT(((gaf - gap).norm() / gap.norm()).item<double>(), 1e-4);
  unsetenv("REWIND_COMPILE");
}

/// Loads a generator with REWIND_COMPILE set to `compile` ("" leaves it unset: the default), log captured.
static std::unique_ptr<models::Generator> load_compiled(const std::string& path, const char* compile, std::string* log) {
  if (*compile) setenv("REWIND_COMPILE", compile, 1);
  auto g = load_logged([&] { return models::load_generator(path); }, false, log);
  unsetenv("REWIND_COMPILE");
  return g;
}

// A user's plain TorchScript DCGAN runs as FrozenDcgan on the CPU by default, computing what the module
// computes (checked here against the module itself, outside rewind's loader); one whose forward does more
// than its modules in order runs as exported, and says why.
TEST_F(ClientModels, TorchScriptDcganCompiledComputesTheSame) {
  torch::manual_seed(4);
  for (const std::string name : {"generator.pt", "generator_linear.pt"}) {
    std::string log_on, log_off;
    auto on = load_compiled(path(name), "", &log_on);
    auto off = load_compiled(path(name), "0", &log_off);
    EXPECT_NE(log_on.find("compiled for the CPU (ConvTranspose2d stack as phase convolutions"), std::string::npos) << name << ": " << log_on;
    EXPECT_EQ(log_off.find("compiled"), std::string::npos) << log_off;
    auto module = torch::jit::load(path(name));
    module.eval();
    for (int64_t n : {1, 7}) {
      auto z = torch::randn({n, 16});
      auto [yc, dc] = out_and_grad([&](const at::Tensor& x) { return on->generate(x); }, z);
      auto [ym, dm] = out_and_grad([&](const at::Tensor& x) { return module.forward({x}).toTensor(); }, z);
      auto [yo, dd] = out_and_grad([&](const at::Tensor& x) { return off->generate(x); }, z);
      EXPECT_GT(ym.abs().max().item<double>(), 0.05) << name;  // not a degenerate case
      EXPECT_LT((yc - ym).abs().max().item<double>(), 1e-5) << name;
      EXPECT_LT(((dc - dm).norm() / dm.norm()).item<double>(), 1e-4) << name;
      EXPECT_TRUE(torch::equal(yo, ym)) << name;
    }
  }
  for (const std::string name : {"generator_flipped.pt", "generator_clamped.pt"}) {  // forward does more
    std::string log;
    auto g = load_compiled(path(name), "", &log);
    EXPECT_NE(log.find("runs as exported, not compiled for the CPU (the compiled stack differs from forward(z)"), std::string::npos)
        << name << ": " << log;
    auto module = torch::jit::load(path(name));
    torch::NoGradGuard ng;
    auto z = torch::randn({3, 16}) * 3;
    EXPECT_TRUE(torch::equal(g->generate(z), module.forward({z}).toTensor())) << name;
  }
  {  // bf16 on a generator as exported: a cast copy of the module, used only when it runs and agrees with
     // fp32 on a probe. This LibTorch's CPU ConvTranspose2d fails in bf16: refused before any work, saying so
    std::string l;
    auto g = load_compiled(path("generator_flipped.pt"), "", &l);
    const auto why = g->set_precision("bf16");
    EXPECT_NE(why.find("does not run in bf16 on cpu"), std::string::npos) << why;
    ganinv::InvertOptions o;
    o.precision = "bf16";
    o.loop.steps = 2;
    try {
      ganinv::invert(*g, torch::zeros({1, 3, 32, 32}), o);
      ADD_FAILURE() << "bf16 accepted for a generator that fails in bf16";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--precision bf16: TorchScript generator generator_flipped.pt"), std::string::npos) << e.what();
    }
    EXPECT_NE(g->set_precision("fp16").find("fp16 runs on CUDA only"), std::string::npos);
    // a StyleGAN2-like generator as exported (modulated convolutions) runs in bf16: the same images to
    // bf16's precision, and fp32 afterwards is the module again, exactly
    auto s = load_compiled(path("stylegan.pt"), "", &l);
    torch::NoGradGuard ng;
    auto z = torch::randn({4, 32});
    auto y = s->generate(z);
    ASSERT_EQ(s->set_precision("bf16"), "");
    auto y16 = s->generate(z);
    EXPECT_EQ(y16.scalar_type(), torch::kFloat32);
    const double diff = (y16 - y).abs().max().item<double>();
    EXPECT_GT(diff, 0.0);
    EXPECT_LT(diff, 0.05);
    auto x16 = s->synthesis(s->mapping(z));  // the other methods run in bf16 too
    EXPECT_LT((x16 - y).abs().max().item<double>(), 0.05);
    ASSERT_EQ(s->set_precision("fp32"), "");
    EXPECT_TRUE(torch::equal(s->generate(z), y));
    auto c = load_compiled(path("generator.pt"), "", &l);
    EXPECT_EQ(c->set_precision("bf16"), "");
    EXPECT_EQ(c->set_precision("fp32"), "");
  }
  for (const std::string name : {"generator_wplus.pt", "stylegan.pt"}) {  // style-based: not tried
    std::string l;
    load_compiled(path(name), "", &l);
    EXPECT_EQ(l.find("compiled"), std::string::npos) << name << ": " << l;
  }
}

// split-attack's GAN prior in bf16 (#19 left it fp32 only): a generator that runs in bf16 gives a search
// close to the fp32 one and is fp32 again afterwards; one that cannot is refused before any work
TEST_F(ClientModels, GanPriorInBf16) {
  std::string l;
  auto s = load_compiled(path("stylegan.pt"), "", &l);
  auto c = models::load_classifier(path("classifier.pt"));
  at::Tensor x;
  {
    torch::NoGradGuard ng;
    x = models::adapt_images(s->generate(torch::randn({2, 32}, at::detail::createCPUGenerator(3))), c->input_shape());
  }
  const auto split = c->split_points().front();
  auto acts = featinv::activations(*c, split, x);
  featinv::GanPriorOptions o;
  o.restarts = 1;
  o.loop.steps = 20;
  auto a = featinv::gan_prior(*s, *c, split, acts, o);
  o.precision = "bf16";
  auto b = featinv::gan_prior(*s, *c, split, acts, o);
  EXPECT_EQ(b.recon.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::isfinite(b.recon).all().item<bool>());
  EXPECT_FALSE(torch::equal(a.recon, b.recon));  // it did run in bf16
  // the same search to bf16's precision: each target's final feature loss within 10% of fp32's
  EXPECT_LT(((a.feature_loss - b.feature_loss).abs() / a.feature_loss).max().item<double>(), 0.1)
      << a.feature_loss << " vs " << b.feature_loss;
  {
    torch::NoGradGuard ng;
    auto z = torch::randn({2, 32});
    auto again = s->generate(z);
    EXPECT_EQ(s->set_precision("fp32"), "");
    EXPECT_TRUE(torch::equal(s->generate(z), again));  // fp32 after the search
  }
  o.precision = "fp16";  // CUDA only
  try {
    featinv::gan_prior(*s, *c, split, acts, o);
    ADD_FAILURE() << "fp16 accepted on the CPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--precision fp16"), std::string::npos) << e.what();
  }
}

TEST_F(ClientModels, StyleGeneratorExposesMappingAndSynthesis) {
  auto g = models::load_generator(path("generator_wplus.pt"));
  ASSERT_TRUE(g->has_mapping());
  torch::NoGradGuard ng;
  auto z = torch::randn({2, 16});
  auto w = g->mapping(z);
  EXPECT_EQ(w.sizes(), (std::vector<int64_t>{2, 16}));
  EXPECT_TRUE(torch::allclose(g->synthesis(w), g->generate(z), 1e-5, 1e-5));
}

TEST_F(ClientModels, ClassifierSplitByChildName) {
  auto c = models::load_classifier(path("classifier.pt"));
  auto names = c->split_points();
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(names.front(), "features.0");
  EXPECT_EQ(names.back(), "classifier.1");
  EXPECT_EQ(c->num_classes(), 10);
  EXPECT_EQ(c->input_shape().height, 28);
  torch::NoGradGuard ng;
  auto x = torch::randn({3, 1, 28, 28});
  auto full = c->forward(x);
  for (const auto& s : names) EXPECT_TRUE(torch::allclose(c->tail(c->head(x, s), s), full, 1e-5, 1e-5)) << s;
  EXPECT_EQ(c->head(x, "features.3").sizes(), (std::vector<int64_t>{3, 8, 14, 14}));
}

// A TorchScript classifier in bf16: a cast copy of the module, stages re-read from it, the same
// activations to bf16's precision, inputs and outputs float32; fp32 again is the module, exactly.
TEST_F(ClientModels, ClassifierInBf16) {
  for (const std::string name : {"classifier.pt", "classifier_ht.pt"}) {
    auto c = models::load_classifier(path(name));
    const std::string split = c->split_points().size() > 3 ? c->split_points()[3] : "head";
    torch::NoGradGuard ng;
    auto x = torch::randn({3, 1, 28, 28});
    auto a = c->head(x, split);
    ASSERT_EQ(c->set_precision("bf16"), "") << name;
    auto a16 = c->head(x, split);
    EXPECT_EQ(a16.scalar_type(), torch::kFloat32);
    const double diff = (a16 - a).abs().max().item<double>(), scale = a.abs().max().item<double>();
    EXPECT_GT(diff, 0.0) << name;
    EXPECT_LT(diff, 0.05 * scale) << name;
    std::vector<at::Tensor> bn;
    EXPECT_LT((c->head_bn(x, split, &bn) - a).abs().max().item<double>(), 0.05 * scale) << name;
    EXPECT_LT((c->forward(x) - c->tail(c->head(x, split), split)).abs().max().item<double>(), 1e-5) << name;
    ASSERT_EQ(c->set_precision("fp32"), "");
    EXPECT_TRUE(torch::equal(c->head(x, split), a)) << name;
  }
}

TEST_F(ClientModels, ClassifierWithHeadTail) {
  auto c = models::load_classifier(path("classifier_ht.pt"));
  EXPECT_EQ(c->split_points(), (std::vector<std::string>{"head"}));
  torch::NoGradGuard ng;
  auto x = torch::randn({2, 1, 28, 28});
  EXPECT_EQ(c->head(x, "head").sizes(), (std::vector<int64_t>{2, 16, 7, 7}));
  EXPECT_TRUE(torch::allclose(c->tail(c->head(x, "head"), "head"), c->forward(x), 1e-5, 1e-5));
}

TEST_F(ClientModels, Embedder) {
  auto e = models::load_embedder(path("embedder.pt"));
  EXPECT_EQ(e->dim(), 32);
  EXPECT_EQ(e->input_shape().height, 64);
  torch::NoGradGuard ng;
  auto v = e->embed(torch::rand({5, 3, 100, 80}) * 2 - 1);  // resized internally
  EXPECT_EQ(v.sizes(), (std::vector<int64_t>{5, 32}));
  EXPECT_TRUE(torch::allclose(v.norm(2, 1), torch::ones({5}), 1e-5, 1e-5));
  EXPECT_NE(e->id().find("torchscript:"), std::string::npos);
}

// ---- the style-based contract (#17): mapping, synthesis of W+, num_ws, w_avg --------------------

TEST_F(ClientModels, StyleGanContract) {
  auto g = models::load_generator(path("stylegan.pt"));
  ASSERT_TRUE(g->has_mapping());
  EXPECT_EQ(g->latent_dim(), 32);
  EXPECT_EQ(g->w_dim(), 32);
  EXPECT_EQ(g->num_ws(), 8);
  EXPECT_NE(g->describe().find("8 layers"), std::string::npos) << g->describe();
  torch::NoGradGuard ng;
  auto z = torch::randn({3, 32});
  auto w = g->mapping(z);
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{3, 32}));
  auto x = g->generate(z);
  EXPECT_TRUE(torch::allclose(g->synthesis(w), x, 1e-5, 1e-5));  // one w broadcast to every layer
  EXPECT_TRUE(torch::allclose(g->synthesis(w.unsqueeze(1).expand({-1, 8, -1})), x, 1e-5, 1e-5));
  auto ws = w.unsqueeze(1).repeat({1, 8, 1});
  ws.select(1, 7).add_(1.0);  // another style for the last layer changes the image
  EXPECT_GT((g->synthesis(ws) - x).abs().max().item<float>(), 1e-3f);
  EXPECT_EQ(g->w_avg().sizes(), (std::vector<int64_t>{32}));
  EXPECT_EQ(ganinv::latent_shape(*g, "w+"), (std::vector<int64_t>{8, 32}));
  EXPECT_TRUE(torch::allclose(ganinv::render(*g, "w+", ws.flatten(1)), g->synthesis(ws), 1e-5, 1e-5));
  // the model without num_ws has W but not W+
  auto g1 = models::load_generator(path("generator_wplus.pt"));
  EXPECT_EQ(ganinv::latent_shape(*g1, "w"), (std::vector<int64_t>{16}));
  EXPECT_THROW(ganinv::latent_shape(*g1, "w+"), Error);
  EXPECT_THROW(ganinv::latent_shape(*models::load_generator(path("generator.pt")), "w"), Error);
}

// rewind recovers the client model's own samples in each latent space (the bar: median
// MSE < 1e-3). 8 targets x 4 restarts x 600 Adam steps at lr 0.1.
TEST_F(ClientModels, StyleGanInvertsItsOwnSamplesInZWAndWPlus) {
  auto g = models::load_generator(path("stylegan.pt"));
  at::Tensor targets;
  {
    torch::NoGradGuard ng;
    targets = g->generate(torch::randn({8, 32}, at::detail::createCPUGenerator(7)));
  }
  for (const std::string space : {"z", "w", "w+"}) {
    ganinv::InvertOptions o;
    o.latent = space;
    o.restarts = 4;
    o.loop.steps = 600;
    o.loop.lr = 0.1;
    auto r = ganinv::invert(*g, targets, o);
    auto mse = r.terms.select(1, 0);
    EXPECT_LT(mse.median().item<double>(), 1e-3) << space << ": " << mse;
    std::printf("  %s: median MSE %.2e, max %.2e over 8 samples\n", space.c_str(), mse.median().item<double>(),
                mse.max().item<double>());
    auto shape = ganinv::latent_shape(*g, space);
    shape.insert(shape.begin(), 8);
    EXPECT_EQ(r.latents.sizes(), shape) << space;
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::allclose(ganinv::render(*g, space, r.latents), r.recon, 1e-5, 1e-5)) << space;
  }
}

TEST_F(ClientModels, MeanWStartsAtWAvg) {
  auto g = models::load_generator(path("stylegan.pt"));
  at::Tensor targets;
  {
    torch::NoGradGuard ng;
    targets = g->generate(torch::randn({2, 32}));
  }
  ganinv::InvertOptions o;
  o.latent = "w";
  o.w_start = "mean";
  o.restarts = 1;
  o.loop.steps = 1;
  o.loop.lr = 1e-9;
  auto r = ganinv::invert(*g, targets, o);
  EXPECT_TRUE(torch::allclose(r.latents, g->w_avg().unsqueeze(0).expand({2, -1}), 1e-5, 1e-5));
  o.w_prior = 1;  // the prior assumes z ~ N(0, I)
  EXPECT_THROW(ganinv::invert(*g, targets, o), Error);
  o.w_prior = 0;
  o.latent = "z";  // a W start means nothing in z: refused, not ignored
  EXPECT_THROW(ganinv::invert(*g, targets, o), Error);
}

// ---- feature (perceptual) losses (#17) -------------------------------------------------------------

TEST(FeatureLoss, DistanceAndMultiscale) {
  auto a = torch::randn({3, 8, 5, 5}), b = torch::randn({3, 8, 5, 5});
  EXPECT_LT(optim::feature_distance(a, a).abs().max().item<float>(), 1e-6f);
  EXPECT_LT(optim::feature_distance(a, 2.5 * a).abs().max().item<float>(), 1e-5f);  // scale-free per position
  auto d = optim::feature_distance(a, b);
  EXPECT_EQ(d.sizes(), (std::vector<int64_t>{3}));
  EXPECT_GT(d.min().item<float>(), 0.1f);
  EXPECT_LE(optim::feature_distance(a, -a).max().item<float>(), 4.0f + 1e-4f);  // opposite unit vectors: 4
  auto x = torch::rand({2, 3, 16, 16}), y = torch::rand({2, 3, 16, 16});
  EXPECT_TRUE(torch::allclose(optim::multiscale_mse(x, y, 1), optim::mse(x, y)));
  auto px = torch::avg_pool2d(x, 2), py = torch::avg_pool2d(y, 2);
  EXPECT_TRUE(torch::allclose(optim::multiscale_mse(x, y, 2), (optim::mse(x, y) + optim::mse(px, py)) / 2, 1e-6, 1e-6));
}

TEST_F(ClientModels, FeatureNetFromAClassifierAndTheFeatureTerm) {
  auto f = models::load_feature_net(path("classifier.pt"), "features.3");
  auto x = torch::rand({2, 3, 32, 32}) * 2 - 1;  // RGB 32 px into a grey 28 px classifier: adapted
  EXPECT_EQ(f->features(x).sizes(), (std::vector<int64_t>{2, 8, 14, 14}));
  EXPECT_THROW(models::load_feature_net(path("classifier.pt"), "nope"), Error);
  EXPECT_THROW(models::load_feature_net(path("classifier.pt"), ""), Error);

  auto g = models::load_generator(path("stylegan.pt"));
  at::Tensor targets;
  {
    torch::NoGradGuard ng;
    targets = g->generate(torch::randn({3, 32}, at::detail::createCPUGenerator(3)));
  }
  ganinv::InvertOptions o;
  o.latent = "w";
  o.w_feature = 1.0;
  o.loop.steps = 60;
  o.loop.lr = 0.1;
  o.restarts = 2;
  EXPECT_THROW(ganinv::invert(*g, targets, o), Error);  // no feature net
  o.feature_net = models::load_feature_net(path("classifier.pt"), "features.3");
  auto r = ganinv::invert(*g, targets, o);
  ASSERT_EQ(r.terms.size(1), 6);
  auto w = torch::tensor({1.0, 0.0, 0.0, 0.0, 0.0, 1.0}, torch::kFloat32);
  EXPECT_TRUE(torch::allclose(r.loss, (r.terms * w).sum(1), 1e-5, 1e-5));
  // the feature term is the perceptual distance of the reconstruction, and the fit lowers it
  torch::NoGradGuard ng;
  auto start = optim::feature_distance(o.feature_net->features(g->synthesis(g->w_avg().unsqueeze(0).expand({3, -1}))),
                                       o.feature_net->features(targets));
  EXPECT_TRUE(torch::allclose(r.terms.select(1, 5),
                              optim::feature_distance(o.feature_net->features(r.recon), o.feature_net->features(targets)),
                              1e-4, 1e-4));
  EXPECT_LT(r.terms.select(1, 5).mean().item<float>(), start.mean().item<float>());
}

namespace {
/// A dcgan32 discriminator of width 8 (random weights) saved as train gan saves one, at `path`.
models::DcganDiscriminator saved_discriminator(const std::string& path) {
  models::GanArch arch;
  arch.name = "dcgan32";
  arch.width = 8;
  models::DcganDiscriminator d(arch);
  models::save_native(path, *d, arch.to_json("discriminator"));
  return d;
}
}  // namespace

TEST(FeatureLoss, NativeDiscriminatorBlocks) {
  TempDir tmp;
  const std::string path = tmp / "g.pt.disc";
  auto d = saved_discriminator(path);
  auto f = models::load_feature_net(path, "block2");
  EXPECT_EQ(f->features(torch::rand({2, 3, 32, 32}) * 2 - 1).sizes(), (std::vector<int64_t>{2, 16, 8, 8}));
  EXPECT_EQ(d->stage_names(), (std::vector<std::string>{"block1", "block2", "block3"}));
  EXPECT_THROW(models::load_feature_net(path, "relu1"), Error);
}

// The discriminator attack's scorer: a native G.disc and a TorchScript discriminator give one logit
// per image, equal to their forward; other files are refused naming the file.
TEST(Discriminator, NativeAndTorchScriptScoreOneLogitPerImage) {
  TempDir tmp;
  const std::string path = tmp / "g.pt.disc";
  auto d = saved_discriminator(path);
  d->eval();
  auto x = torch::rand({3, 3, 32, 32}) * 2 - 1;
  auto nat = models::load_discriminator(path, {3, 32, 32});
  auto s = nat->score(x);
  ASSERT_EQ(s.sizes(), (std::vector<int64_t>{3}));
  {
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::allclose(s, d->forward(x).view({-1}), 1e-5, 1e-6));
  }
  EXPECT_EQ(nat->score(torch::rand({2, 1, 32, 32})).numel(), 2);  // grey images are adapted to its 3 channels
  EXPECT_NE(nat->describe().find("g.pt.disc"), std::string::npos);
  // a generator file is not a discriminator
  models::GanArch arch;
  arch.name = "dcgan32";
  arch.width = 8;
  models::DcganGenerator g(arch);
  models::save_native(tmp / "g.pt", *g, arch.to_json("generator"));
  try {
    models::load_discriminator(tmp / "g.pt", {3, 32, 32});
    ADD_FAILURE() << "a generator was taken for a discriminator";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("not a discriminator"), std::string::npos) << e.message();
  }
  // TorchScript: forward(x) -> [N, 1]
  torch::jit::Module m("D");
  torch::manual_seed(3);
  const auto w = torch::randn({3 * 8 * 8, 1}) * 0.1;
  m.register_parameter("w", w, false);
  m.define("def forward(self, x):\n    return x.flatten(1) @ self.w\n");
  m.save(tmp / "d.ts");
  auto ts = models::load_discriminator(tmp / "d.ts", {3, 8, 8});
  auto y = torch::rand({4, 3, 8, 8});
  EXPECT_TRUE(torch::allclose(ts->score(y), (y.flatten(1).matmul(w)).view({-1}), 1e-5, 1e-6));
  // a module that returns images, not logits, is refused when loaded
  torch::jit::Module id("NotD");
  id.define("def forward(self, x):\n    return x\n");
  id.save(tmp / "id.ts");
  EXPECT_THROW(models::load_discriminator(tmp / "id.ts", {3, 8, 8}), Error);
  EXPECT_THROW(models::load_discriminator(tmp / "missing.disc", {3, 8, 8}), Error);
  // an error inside forward (here: it takes grey images) is a model error naming the file, not an internal one
  torch::jit::Module grey("Grey");
  grey.register_parameter("w", torch::randn({1, 1, 3, 3}), false);
  grey.define("def forward(self, x):\n    return torch.conv2d(x, self.w).mean([1, 2, 3])\n");
  grey.save(tmp / "grey.ts");
  try {
    models::load_discriminator(tmp / "grey.ts", {3, 8, 8});
    ADD_FAILURE() << "a grey discriminator ran on colour images";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel) << e.message();
    EXPECT_NE(e.message().find("grey.ts"), std::string::npos) << e.message();
  }
}
