// The CUDA path against the CPU path. These run where rewind is built against a CUDA LibTorch and a
// GPU is visible (experiments/bench/gpu_bench.sh runs them on the lent GPU machine first); elsewhere
// each test says it was skipped and why.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "rewind/core/runtime.h"
#include "rewind/featinv/featinv.h"
#include "rewind/ganinv/invert.h"
#include "rewind/models/native.h"
#include "rewind/models/nets.h"
#include "test_util.h"
#include "tiny_models.h"

using namespace rw;
using rw::test::TempDir;

namespace {

#define REQUIRE_CUDA()                                                                   \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device (or a CPU-only LibTorch) here"

std::string save_generator(const TempDir& d) {
  test::save_tiny_generator(d / "g.pt");
  return d / "g.pt";
}

std::string save_classifier(const TempDir& d) {
  test::save_tiny_classifier(d / "c.pt");
  return d / "c.pt";
}

}  // namespace

// The same search on the GPU finds what the CPU finds: CPU targets in, CPU results out, the
// generator's outputs equal to float rounding, the planted latents recovered on both.
TEST(Cuda, InvertMatchesTheCpu) {
  REQUIRE_CUDA();
  TempDir d;
  const auto path = save_generator(d);
  auto gc = models::load_generator(path, torch::kCPU);
  auto gg = models::load_generator(path, torch::Device("cuda:0"));
  EXPECT_TRUE(gg->device().is_cuda());
  torch::manual_seed(2);
  auto z = torch::randn({6, 8});
  at::Tensor targets;
  {
    torch::NoGradGuard ng;
    targets = gc->generate(z);
    auto on_gpu = gg->generate(z);  // CPU in, CPU out
    EXPECT_TRUE(on_gpu.is_cpu());
    EXPECT_LT((on_gpu - targets).abs().max().item<double>(), 1e-4);
  }
  ganinv::InvertOptions o;
  o.restarts = 3;
  o.loop.steps = 200;
  for (bool graph : {false, true}) {
    o.cuda_graph = graph;
    auto rc = ganinv::invert(*gc, targets, o);
    auto rg = ganinv::invert(*gg, targets, o);
    EXPECT_TRUE(rg.latents.is_cpu() && rg.recon.is_cpu() && rg.terms.is_cpu());
    EXPECT_LT(rg.terms.select(1, 0).max().item<float>(), 2e-3) << "graph " << graph << rg.terms;
    EXPECT_LT(rc.terms.select(1, 0).max().item<float>(), 2e-3) << rc.terms;
  }
  // CUDA targets stay on the GPU
  auto r = ganinv::invert(*gg, targets.cuda(), o);
  EXPECT_TRUE(r.latents.is_cuda());
}

// CUDA graph replay and eager steps compute the same optimisation.
TEST(Cuda, GraphEqualsEager) {
  REQUIRE_CUDA();
  auto target = torch::randn({64, 16}).cuda();
  auto f = [&](const at::Tensor& v) { return (v - target).pow(2).sum(1); };
  optim::LoopOptions o;
  o.steps = 100;
  auto reset = [](const at::Tensor&, at::Tensor&) {};
  auto eager = optim::fused_adam(torch::zeros({64, 16}).cuda(), f, o, reset, {}, "t", 0, 0, false);
  auto graph = optim::fused_adam(torch::zeros({64, 16}).cuda(), f, o, reset, {}, "t", 0, 0, true);
  EXPECT_LT((eager.best_vars - graph.best_vars).abs().max().item<double>(), 1e-5);
  // an objective that reads a value on the host cannot be captured: it runs eagerly, same result
  auto syncing = [&](const at::Tensor& v) {
    auto l = (v - target).pow(2).sum(1);
    (void)l.sum().item<float>();
    return l;
  };
  auto fallback = optim::fused_adam(torch::zeros({64, 16}).cuda(), syncing, o, reset, {}, "t", 0, 0, true);
  EXPECT_LT((eager.best_vars - fallback.best_vars).abs().max().item<double>(), 1e-5);
}

// --batch 0 on CUDA: a trial step sizes the chunk; more rows than the CPU's 64.
TEST(Cuda, AutoBatchMeasuresATrialStep) {
  REQUIRE_CUDA();
  bool ran = false;
  auto rows = optim::auto_chunk_rows(torch::Device("cuda:0"), 4, [&](int64_t n) {
    ran = true;
    auto x = torch::randn({n, 1 << 16}, torch::TensorOptions(torch::Device("cuda:0"))).requires_grad_(true);
    (x * x).sum().backward();
  }, "test");
  EXPECT_TRUE(ran);
  EXPECT_GT(rows, 64);
  EXPECT_EQ(rows % 4, 0);
}

// White-box split inversion on the GPU equals the CPU's (CPU activations in, CPU images out).
TEST(Cuda, WhiteBoxMatchesTheCpu) {
  REQUIRE_CUDA();
  TempDir d;
  const auto path = save_classifier(d);
  auto cc = models::load_classifier(path, torch::kCPU);
  auto cg = models::load_classifier(path, torch::Device("cuda:0"));
  torch::manual_seed(5);
  auto x = torch::nn::functional::interpolate(
               torch::rand({4, 1, 7, 7}) * 2 - 1,
               torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{28, 28}).mode(torch::kBilinear).align_corners(false));
  const std::string split = cc->split_points().front();
  at::Tensor acts;
  {
    torch::NoGradGuard ng;
    acts = cc->head(x, split);
  }
  featinv::WhiteBoxOptions o;
  o.loop.steps = 100;
  auto rc = featinv::white_box(*cc, split, acts, o);
  auto rg = featinv::white_box(*cg, split, acts, o);
  EXPECT_TRUE(rg.recon.is_cpu());
  EXPECT_LT((rc.recon - rg.recon).abs().max().item<double>(), 0.05);
}

// bf16 / fp16 on the GPU: the images agree with fp32 to their precision; fp32 again is exact.
TEST(Cuda, LowPrecisionAgrees) {
  REQUIRE_CUDA();
  TempDir d;
  auto g = models::load_generator(save_generator(d), torch::Device("cuda:0"));
  auto z = torch::randn({8, 8}).cuda();
  torch::NoGradGuard ng;
  auto y = g->generate(z);
  for (const char* p : {"bf16", "fp16"}) {
    ASSERT_EQ(g->set_precision(p), "") << p;
    auto yl = g->generate(z);
    EXPECT_EQ(yl.scalar_type(), torch::kFloat32);
    EXPECT_LT((yl - y).abs().max().item<double>(), 0.05) << p;
    ASSERT_EQ(g->set_precision("fp32"), "");
    EXPECT_TRUE(torch::equal(g->generate(z), y)) << p;
  }
}
