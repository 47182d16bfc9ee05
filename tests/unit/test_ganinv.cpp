#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "rewind/core/error.h"
#include "rewind/ganinv/invert.h"
#include "rewind/models/native.h"
#include "rewind/models/nets.h"
#include "rewind/optim/loop.h"
#include "rewind/optim/losses.h"
#include "test_util.h"
#include "tiny_models.h"

using namespace rw;
using rw::test::TempDir;

TEST(Losses, IdentityAndOrdering) {
  torch::manual_seed(0);
  auto x = torch::rand({3, 3, 16, 16}) * 2 - 1;
  auto y = (x + 0.1 * torch::randn_like(x)).clamp(-1, 1);
  auto z = torch::rand({3, 3, 16, 16}) * 2 - 1;
  EXPECT_TRUE(torch::allclose(optim::ssim(x, x), torch::ones({3}), 1e-5, 1e-5));
  EXPECT_TRUE((optim::ssim(x, y) > optim::ssim(x, z)).all().item<bool>());
  EXPECT_TRUE((optim::mse(x, y) < optim::mse(x, z)).all().item<bool>());
  EXPECT_TRUE(torch::isinf(optim::psnr(x, x)).all().item<bool>());
  // PSNR on the [0,1] scale: a uniform error of 0.1 in [-1,1] units is 0.05 on [0,1] -> 26.02 dB
  auto p = optim::psnr(torch::zeros({1, 1, 4, 4}), torch::full({1, 1, 4, 4}, 0.1));
  EXPECT_NEAR(p.item<double>(), -10 * std::log10(0.05 * 0.05), 1e-3);
  EXPECT_NEAR(optim::total_variation(torch::zeros({1, 1, 4, 4})).item<double>(), 0.0, 1e-9);
  EXPECT_GT(optim::total_variation(z)[0].item<double>(), 0.1);
}

namespace {
/// Item-wise failure, as a diverging generator would give: NaN loss for items with |v| > 100.
at::Tensor nan_past_100(const at::Tensor& v) {
  auto blown = v.flatten(1).abs().gt(100).any(1);
  return v.pow(2).flatten(1).sum(1) +
         torch::where(blown, torch::full_like(blown, NAN, torch::kFloat), torch::zeros_like(blown, torch::kFloat));
}
/// Two items [2, 2]: the first starts blown (NaN), the second fine.
at::Tensor blown_start() { return torch::tensor({{1000.0f, 0.0f}, {0.5f, 0.5f}}); }
/// A reset that counts its calls and sets the bad items to ones.
optim::ResetFn count_and_reset_to_ones(int& resets) {
  return [&resets](const at::Tensor& bad, at::Tensor& v) {
    ++resets;
    v.copy_(torch::where(bad.view({-1, 1}), torch::ones_like(v), v));
  };
}
}  // namespace

TEST(Loop, MinimisesIndependentItemsAndKeepsBest) {
  auto target = torch::tensor({{1.0f, -2.0f}, {3.0f, 0.5f}, {-1.0f, -1.0f}});
  auto f = [&](const at::Tensor& v) { return (v - target).pow(2).sum(1); };
  optim::LoopOptions o;
  o.steps = 300;
  o.lr = 0.1;
  auto r = optim::minimise(torch::zeros({3, 2}), f, o, [](const at::Tensor&, at::Tensor&) {});
  EXPECT_TRUE(torch::allclose(r.best_vars, target, 1e-3, 1e-3)) << r.best_vars;
  EXPECT_LT(r.best_loss.max().item<float>(), 1e-5);
  o.optimizer = "lbfgs";
  o.lr = 1;
  o.steps = 20;
  auto r2 = optim::minimise(torch::zeros({3, 2}), f, o, [](const at::Tensor&, at::Tensor&) {});
  EXPECT_TRUE(torch::allclose(r2.best_vars, target, 1e-4, 1e-4));
}

TEST(Loop, FusedAdamFollowsTheGenericAdamAndResetsNan) {
  // 4-D variables (images), per-item objectives: the fused loop must take the same Adam steps
  torch::manual_seed(5);
  auto target = torch::randn({3, 1, 4, 4});
  auto f = [&](const at::Tensor& v) { return (v - target).pow(2).flatten(1).mean(1) + 0.1 * v.abs().flatten(1).mean(1); };
  optim::LoopOptions o;
  o.steps = 60;
  o.lr = 0.05;
  auto none = [](const at::Tensor&, at::Tensor&) {};
  auto a = optim::minimise(torch::zeros({3, 1, 4, 4}), f, o, none);
  auto b = optim::fused_adam(torch::zeros({3, 1, 4, 4}), f, o, none);
  EXPECT_TRUE(torch::allclose(a.best_vars, b.best_vars, 1e-4, 1e-5)) << (a.best_vars - b.best_vars).abs().max();
  EXPECT_TRUE(torch::allclose(a.best_loss, b.best_loss, 1e-4, 1e-6));
  EXPECT_LT(b.best_loss.max().item<float>(), f(torch::zeros({3, 1, 4, 4})).min().item<float>());
  // an item that goes NaN is reset at the next check (every 50 steps) and its best stays finite
  int resets = 0;
  auto r = optim::fused_adam(blown_start(), nan_past_100, o, count_and_reset_to_ones(resets));
  EXPECT_EQ(r.nan_resets, 1);
  EXPECT_EQ(resets, 1);
  EXPECT_TRUE(torch::isfinite(r.best_loss).all().item<bool>());
  EXPECT_LT(r.best_loss[0].item<float>(), 2.0f);
}

TEST(Loop, EarlyStopAndNanResetAndCancel) {
  auto f = [](const at::Tensor& v) { return v.pow(2).sum(1); };
  optim::LoopOptions o;
  o.steps = 1000;
  o.lr = 0.5;
  o.patience = 5;
  o.schedule = "constant";
  auto r = optim::minimise(torch::ones({2, 3}), f, o, [](const at::Tensor&, at::Tensor&) {});
  EXPECT_LT(r.steps, 1000);
  // an item whose loss is NaN at its start is reset, counted, and then optimised
  optim::LoopOptions o2;
  o2.steps = 50;
  o2.lr = 0.1;
  int resets = 0;
  auto r2 = optim::minimise(blown_start(), nan_past_100, o2, count_and_reset_to_ones(resets));
  EXPECT_EQ(r2.nan_resets, 1);
  EXPECT_EQ(resets, 1);
  EXPECT_TRUE(torch::isfinite(r2.best_loss).all().item<bool>());
  EXPECT_LT(r2.best_loss[0].item<float>(), 0.5f);
  try {
    optim::minimise(torch::ones({1, 1}), f, o2, [](const at::Tensor&, at::Tensor&) {},
                    [](const Progress& p) { return p.done < 3; });
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
}

namespace {
std::unique_ptr<models::Generator> tiny_generator(const TempDir& d) {
  test::save_tiny_generator(d / "g.pt");
  return models::load_generator(d / "g.pt");
}
}  // namespace

// The slow reference for recovery: a planted latent must be found again.
TEST(Invert, RecoversPlantedLatents) {
  TempDir d;
  auto g = tiny_generator(d);
  torch::manual_seed(1);
  auto z_true = torch::randn({2, 8});
  at::Tensor targets;
  {
    torch::NoGradGuard ng;
    targets = g->generate(z_true);
  }
  ganinv::InvertOptions o;
  o.restarts = 3;
  o.loop.steps = 200;
  o.loop.lr = 0.05;
  auto r = ganinv::invert(*g, targets, o);
  ASSERT_EQ(r.latents.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(r.recon.sizes(), targets.sizes());
  EXPECT_LT(r.terms.select(1, 0).max().item<float>(), 1e-3) << r.terms;
  EXPECT_TRUE(torch::allclose(r.loss, r.terms.select(1, 0)));  // default loss = mse only
  EXPECT_EQ(r.restart.dtype(), torch::kLong);
  // a non-member (random image) is reproduced far worse than members
  auto noise = torch::rand({1, 3, 32, 32}) * 2 - 1;
  auto rn = ganinv::invert(*g, noise, o);
  EXPECT_GT(rn.terms[0][0].item<float>(), 10 * r.terms.select(1, 0).max().item<float>());
}

// --precision bf16: the search runs the compiled generator in bfloat16, finds what fp32 finds (planted
// latents), and the reported reconstruction and errors are the fp32 generator's at the latents found.
TEST(Invert, Bf16SearchReportsFp32Errors) {
  TempDir d;
  auto g = tiny_generator(d);
  torch::manual_seed(2);
  auto z_true = torch::randn({3, 8});
  at::Tensor targets, y32, y16;
  {
    torch::NoGradGuard ng;
    targets = g->generate(z_true);
    ASSERT_EQ(g->set_precision("bf16"), "");
    y16 = g->generate(z_true);
    ASSERT_EQ(g->set_precision("fp32"), "");
    y32 = g->generate(z_true);
  }
  EXPECT_TRUE(torch::equal(y32, targets));  // back to fp32 exactly
  const double diff = (y16 - y32).abs().max().item<double>();
  EXPECT_GT(diff, 0.0);   // bf16 did run
  EXPECT_LT(diff, 0.05);  // and computes the same images to bf16's precision
  ganinv::InvertOptions o;
  o.restarts = 3;
  o.loop.steps = 200;
  o.precision = "bf16";
  auto r = ganinv::invert(*g, targets, o);
  EXPECT_LT(r.terms.select(1, 0).max().item<float>(), 2e-3) << r.terms;
  torch::NoGradGuard ng;
  auto again = g->generate(r.latents);
  EXPECT_TRUE(torch::equal(again, r.recon));  // the reported reconstruction is fp32's
  EXPECT_NEAR((again - targets).pow(2).mean({1, 2, 3})[0].item<double>(), r.terms[0][0].item<double>(), 1e-6);
  o.precision = "fp16";
  EXPECT_THROW(ganinv::invert(*g, targets, o), Error);
}

TEST(Invert, ResultsDoNotDependOnBatching) {
  TempDir d;
  auto g = tiny_generator(d);
  auto targets = torch::rand({5, 3, 32, 32}) * 2 - 1;
  ganinv::InvertOptions o;
  o.restarts = 2;
  o.loop.steps = 15;
  o.batch = 64;
  auto a = ganinv::invert(*g, targets, o);
  o.batch = 4;  // 2 targets per chunk
  int chunks = 0;
  std::vector<at::Tensor> got;
  auto b = ganinv::invert(*g, targets, o, nullptr, {}, [&](int64_t first, const ganinv::InvertResult& r) {
    EXPECT_EQ(first, 2 * chunks);
    ++chunks;
    got.push_back(r.latents);
  });
  EXPECT_EQ(chunks, 3);
  EXPECT_FALSE(b.latents.defined());  // chunks went to the callback, not kept
  EXPECT_TRUE(torch::allclose(a.latents, torch::cat(got), 1e-4, 1e-4));
  // and a resumed tail (first_index = 3) reproduces the same rows
  auto c = ganinv::invert(*g, targets.slice(0, 3), o, nullptr, {}, {}, 3);
  EXPECT_TRUE(torch::allclose(c.latents, a.latents.slice(0, 3), 1e-4, 1e-4));
}

TEST(Invert, ExtraTermsAndRefineAndErrors) {
  TempDir d;
  auto g = tiny_generator(d);
  auto targets = torch::rand({2, 3, 32, 32}) * 2 - 1;
  ganinv::InvertOptions o;
  o.restarts = 1;
  o.loop.steps = 5;
  o.w_ssim = 0.5;
  o.w_prior = 0.1;
  o.w_l1 = 0.2;
  o.refine = "pixel";
  o.refine_steps = 30;
  auto r = ganinv::invert(*g, targets, o);
  EXPECT_GT(r.terms.select(1, 2).min().item<float>(), 0.0f);  // 1 - SSIM
  EXPECT_GT(r.terms.select(1, 1).min().item<float>(), 0.0f);  // L1
  auto w = torch::tensor({1.0, 0.2, 0.5, 0.0, 0.1, 0.0}, torch::kFloat32);
  EXPECT_TRUE(torch::allclose(r.loss, (r.terms * w).sum(1), 1e-5, 1e-5));
  ASSERT_TRUE(r.refined.defined());
  EXPECT_TRUE((r.refined_mse < r.terms.select(1, 0)).all().item<bool>());  // the residual explains more
  ganinv::InvertOptions bad;
  bad.latent = "w";
  EXPECT_THROW(ganinv::invert(*g, targets, bad), Error);  // no mapping network
  bad = {};
  bad.w_identity = 1;
  EXPECT_THROW(ganinv::invert(*g, targets, bad), Error);  // no embedder
  EXPECT_THROW(ganinv::invert(*g, torch::zeros({1, 1, 32, 32}), {}), Error);  // wrong channels
}

// --refine feature:LAYER: the native generator split at a layer is the same function, and a bounded
// residual on its activations explains more of a target than the latent alone (less than the
// unconstrained pixel residual can, as the later layers still shape the image).
TEST(Invert, RefineAtAGeneratorLayer) {
  TempDir d;
  auto g = tiny_generator(d);
  const auto layers = g->feature_layers();
  ASSERT_GE(layers.size(), 2u);
  EXPECT_EQ(layers.front(), "fc");
  {
    torch::NoGradGuard ng;
    auto z = torch::randn({3, g->latent_dim()});
    for (const auto& l : layers) EXPECT_TRUE(torch::allclose(g->tail(g->head(z, l), l), g->generate(z), 1e-4, 1e-4)) << l;
  }
  auto targets = torch::rand({2, 3, 32, 32}) * 2 - 1;
  ganinv::InvertOptions o;
  o.restarts = 1;
  o.loop.steps = 20;
  o.refine = "feature:" + layers[1];
  o.refine_steps = 40;
  auto r = ganinv::invert(*g, targets, o);
  ASSERT_TRUE(r.refined.defined());
  EXPECT_EQ(r.refined.sizes(), targets.sizes());
  EXPECT_TRUE((r.refined_mse < r.terms.select(1, 0)).all().item<bool>()) << r.refined_mse << r.terms;
  o.refine = "feature:nope";
  EXPECT_THROW(ganinv::invert(*g, targets, o), Error);
  o.refine = "feature:fc";
  o.latent = "w";
  EXPECT_THROW(ganinv::invert(*g, targets, o), Error);
}

// --batch 0 on CUDA: a trial step's peak memory per row sizes the chunk to 80% of the free memory.
TEST(Loop, RowsThatFitFollowTheTrialStep) {
  // 64 rows took 64 MiB: 1 MiB a row; 1000 MiB free -> 800 rows
  EXPECT_EQ(optim::rows_that_fit(64, 64 << 20, 1000ll << 20, 1, 65536), 800);
  EXPECT_EQ(optim::rows_that_fit(64, 64 << 20, 1000ll << 20, 1, 65536, 0.5), 500);
  EXPECT_EQ(optim::rows_that_fit(64, 64 << 20, 1000ll << 20, 1, 512), 512);   // capped
  EXPECT_EQ(optim::rows_that_fit(64, 64 << 20, 10ll << 20, 4, 65536), 8);     // 8 rows fit
  EXPECT_EQ(optim::rows_that_fit(64, 64 << 20, 1ll << 20, 4, 65536), 4);      // never below the floor
  EXPECT_EQ(optim::rows_that_fit(64, 0, 1ll << 20, 4, 4096), 4096);           // nothing measured
  EXPECT_THROW(optim::rows_that_fit(0, 1, 1, 1, 2), Error);
  // on the CPU the automatic chunk is 64 rows, a multiple of the restarts, and runs no trial
  bool ran = false;
  auto trial = [&](int64_t) { ran = true; };
  EXPECT_EQ(optim::auto_chunk_rows(torch::kCPU, 1, trial, "test"), 64);
  EXPECT_EQ(optim::auto_chunk_rows(torch::kCPU, 3, trial, "test"), 63);
  EXPECT_EQ(optim::auto_chunk_rows(torch::kCPU, 100, trial, "test"), 100);
  EXPECT_FALSE(ran);
}
