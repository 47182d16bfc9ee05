#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "rewind/core/error.h"
#include "rewind/featinv/featinv.h"
#include "rewind/models/native.h"
#include "rewind/models/nets.h"
#include "test_util.h"
#include "tiny_models.h"

using namespace rw;
using rw::test::TempDir;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

/// A random (untrained) cnn28 classifier, width 4, saved natively and loaded through the contract.
std::unique_ptr<models::SplitClassifier> tiny_classifier(const TempDir& d, int width = 4) {
  test::save_tiny_classifier(d / "c.pt", width);
  return models::load_classifier(d / "c.pt");
}

/// Smooth images in [-1, 1] (upsampled low-resolution noise): something a 3x3 conv head can keep.
at::Tensor smooth_images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto low = torch::randn({n, 1, 7, 7});
  namespace F = torch::nn::functional;
  auto up = F::interpolate(low, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{28, 28})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
  return torch::tanh(up * 1.5);
}

}  // namespace

TEST(FeatInv, DefenseSpecsParseAndRoundTrip) {
  for (const char* s : {"none", "noise=0.5", "quant=4", "dropout=0.25"}) {
    auto d = featinv::Defense::parse(s);
    EXPECT_EQ(d.str(), s);
    EXPECT_EQ(featinv::Defense::parse(d.str()).value, d.value);
  }
  for (const char* s : {"noise", "noise=-1", "quant=0", "quant=2.5", "dropout=1", "blur=2", "noise=0.5x"}) {
    auto msg = error_of([&] { featinv::Defense::parse(s); });
    EXPECT_NE(msg.find("--defense"), std::string::npos) << s;
  }
}

TEST(FeatInv, DefensesChangeActivationsAsSpecified) {
  torch::manual_seed(0);
  auto a = torch::randn({6, 16, 5, 5}) * 3 + 1;
  // noise: relative RMS of the added noise is sigma; per item, independent of batching
  auto n = featinv::defend(a, featinv::Defense::parse("noise=0.5"), 9);
  for (int64_t i = 0; i < 6; ++i) {
    double rms = std::sqrt(a[i].pow(2).mean().item<double>());
    double noise = std::sqrt((n[i] - a[i]).pow(2).mean().item<double>());
    EXPECT_NEAR(noise / rms, 0.5, 0.06) << i;
  }
  auto tail = featinv::defend(a.slice(0, 2), featinv::Defense::parse("noise=0.5"), 9, 2);
  EXPECT_TRUE(torch::equal(tail, n.slice(0, 2)));
  EXPECT_FALSE(torch::equal(featinv::defend(a, featinv::Defense::parse("noise=0.5"), 10), n));
  // quantisation: at most 2^k values per item, error at most half a step
  auto q = featinv::defend(a, featinv::Defense::parse("quant=3"), 1);
  for (int64_t i = 0; i < 6; ++i) {
    EXPECT_LE(std::get<0>(at::_unique(q[i])).numel(), 8);
    double step = (a[i].max() - a[i].min()).item<double>() / 7;
    EXPECT_LE((q[i] - a[i]).abs().max().item<double>(), step / 2 + 1e-5);
  }
  // dropout: whole channels zeroed (about p of them), the rest scaled by 1/(1-p)
  auto dr = featinv::defend(a, featinv::Defense::parse("dropout=0.5"), 3);
  int64_t zeroed = 0;
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t ch = 0; ch < 16; ++ch) {
      if (dr[i][ch].abs().max().item<float>() == 0) ++zeroed;
      else EXPECT_TRUE(torch::allclose(dr[i][ch], a[i][ch] * 2));
    }
  EXPECT_GT(zeroed, 24);  // 96 channels, p = 0.5
  EXPECT_LT(zeroed, 72);
  EXPECT_TRUE(torch::equal(featinv::defend(a, featinv::Defense{}), a));
}

TEST(FeatInv, BatchNormInputsAndStatistics) {
  TempDir d;
  auto c = tiny_classifier(d);
  auto bns = c->batchnorm_stats();
  ASSERT_EQ(bns.size(), 4u);
  EXPECT_EQ(bns[0].stage, "bn1");
  EXPECT_EQ(bns[0].running_mean.numel(), 4);
  torch::NoGradGuard ng;
  auto x = smooth_images(2, 1);
  std::vector<at::Tensor> inputs;
  auto a = c->head_bn(x, "relu2", &inputs);
  ASSERT_EQ(inputs.size(), 2u);  // bn1 and bn2 run before relu2
  EXPECT_TRUE(torch::allclose(inputs[0], c->head(x, "conv1")));
  EXPECT_TRUE(torch::allclose(inputs[1], c->head(x, "conv2")));
  EXPECT_TRUE(torch::allclose(a, c->head(x, "relu2")));
}

TEST(FeatInv, InferenceHeadFoldsBatchNormWithoutChangingValuesOrGradients) {
  TempDir d;
  models::CnnArch a;
  a.name = "cnn28";
  a.channels = 1;
  a.width = 4;
  torch::manual_seed(11);
  auto net = models::make_cnn(a);
  {  // non-trivial BatchNorm statistics and affine parameters, as a trained model has
    torch::NoGradGuard ng;
    for (auto& b : net->named_buffers())
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.3, 2.0);
      else if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0, 0.5);
    for (auto& p : net->named_parameters())
      if (p.key().rfind("bn", 0) == 0) p.value().normal_(p.key().find("weight") != std::string::npos ? 1.0 : 0.0, 0.3);
  }
  net->eval();
  models::save_native(d / "c.pt", *net, a.to_json("classifier"));
  auto c = models::load_classifier(d / "c.pt");
  auto x = smooth_images(2, 9);
  for (const auto& split : c->split_points()) {
    auto fast = c->inference_head(split);
    auto xa = x.clone().set_requires_grad(true), xb = x.clone().set_requires_grad(true);
    auto ya = c->head(xa, split), yb = fast(xb);
    ASSERT_EQ(ya.sizes(), yb.sizes()) << split;
    EXPECT_TRUE(torch::allclose(ya, yb, 1e-4, 1e-5)) << split << " " << (ya - yb).abs().max();
    auto w = torch::randn_like(ya);
    (ya * w).sum().backward();
    (yb * w).sum().backward();
    EXPECT_TRUE(torch::allclose(xa.grad(), xb.grad(), 1e-3, 1e-5)) << split;
  }
}

TEST(FeatInv, WhiteBoxRecoversShallowSplitsNotDeepOnes) {
  TempDir d;
  auto c = tiny_classifier(d);
  auto x = smooth_images(3, 2);
  featinv::WhiteBoxOptions o;
  o.loop.steps = 250;
  o.loop.lr = 0.1;
  auto shallow = featinv::white_box(*c, "conv1", featinv::activations(*c, "conv1", x), o);
  auto deep = featinv::white_box(*c, "fc2", featinv::activations(*c, "fc2", x), o);
  auto qs = featinv::quality(x, shallow.recon), qd = featinv::quality(x, deep.recon);
  EXPECT_GT(qs.psnr.min().item<double>(), 30.0) << qs.psnr;
  EXPECT_GT(qs.ssim.min().item<double>(), 0.95) << qs.ssim;
  EXPECT_LT(qd.psnr.max().item<double>(), qs.psnr.min().item<double>() - 10) << qd.psnr;
  EXPECT_LT(shallow.feature_loss.max().item<double>(), 1e-3);
  EXPECT_EQ(shallow.recon.sizes(), x.sizes());
  EXPECT_LE(shallow.recon.abs().max().item<double>(), 1.0);
}

// --wb-precision bf16: the classifier's cast copy computes the same activations to bf16's precision
// (plain and BatchNorm-folded heads), the search recovers a shallow split as fp32 does, and the
// reported feature error is fp32's; fp32 afterwards is the model again, exactly; fp16 is CUDA's only.
TEST(FeatInv, Bf16WhiteBoxReportsFp32Errors) {
  TempDir d;
  auto c = tiny_classifier(d);
  auto x = smooth_images(3, 2);
  {
    torch::NoGradGuard ng;
    auto a32 = c->head(x, "relu2");
    ASSERT_EQ(c->set_precision("bf16"), "");
    auto a16 = c->head(x, "relu2"), f16 = c->inference_head("relu2")(x);
    EXPECT_EQ(a16.scalar_type(), torch::kFloat32);
    const double scale = a32.abs().max().item<double>();
    EXPECT_GT((a16 - a32).abs().max().item<double>(), 0.0);
    EXPECT_LT((a16 - a32).abs().max().item<double>(), 0.05 * scale);
    EXPECT_LT((f16 - a32).abs().max().item<double>(), 0.05 * scale);
    ASSERT_EQ(c->set_precision("fp32"), "");
    EXPECT_TRUE(torch::equal(c->head(x, "relu2"), a32));
    EXPECT_NE(c->set_precision("fp16").find("fp16 runs on CUDA only"), std::string::npos);
  }
  featinv::WhiteBoxOptions o;
  o.loop.steps = 250;
  o.loop.lr = 0.1;
  o.precision = "bf16";
  auto r = featinv::white_box(*c, "conv1", featinv::activations(*c, "conv1", x), o);
  auto q = featinv::quality(x, r.recon);
  EXPECT_GT(q.psnr.min().item<double>(), 25.0) << q.psnr;
  {
    torch::NoGradGuard ng;
    auto a0 = c->head(x, "conv1");
    auto again = (c->head(r.recon, "conv1") - a0).pow(2).flatten(1).mean(1) / a0.pow(2).flatten(1).mean(1);
    EXPECT_TRUE(torch::allclose(again, r.feature_loss, 1e-4, 1e-7)) << again << r.feature_loss;
  }
  o.precision = "fp16";
  EXPECT_THROW(featinv::white_box(*c, "conv1", featinv::activations(*c, "conv1", x), o), Error);
}

TEST(FeatInv, WhiteBoxIsPerItemAndRestartsKeepTheBest) {
  TempDir d;
  auto c = tiny_classifier(d);
  auto x = smooth_images(3, 4);
  auto a = featinv::activations(*c, "relu2", x);
  featinv::WhiteBoxOptions o;
  o.loop.steps = 40;
  o.restarts = 2;
  auto all = featinv::white_box(*c, "relu2", a, o);
  o.batch = 2;  // one target (x 2 restarts) per chunk
  auto chunked = featinv::white_box(*c, "relu2", a, o);
  EXPECT_TRUE(torch::allclose(all.recon, chunked.recon, 1e-4, 1e-4));
  EXPECT_EQ(all.restart.sizes(), (std::vector<int64_t>{3}));
  // the kept restart is at least as good (in feature loss) as the grey start alone
  o.restarts = 1;
  o.batch = 0;
  auto single = featinv::white_box(*c, "relu2", a, o);
  EXPECT_LE(all.feature_loss.sum().item<double>(), single.feature_loss.sum().item<double>() * 1.05);
}

TEST(FeatInv, UnknownSplitListsValidOnesAndProgressCancels) {
  TempDir d;
  auto c = tiny_classifier(d);
  auto x = smooth_images(1, 5);
  auto msg = error_of([&] { featinv::white_box(*c, "features.9", torch::zeros({1, 4, 28, 28}), {}); });
  EXPECT_NE(msg.find("valid splits: conv1, bn1, relu1"), std::string::npos) << msg;
  featinv::WhiteBoxOptions o;
  o.loop.steps = 50;
  int calls = 0;
  try {
    featinv::white_box(*c, "conv1", featinv::activations(*c, "conv1", x), o, [&](const Progress&) { return ++calls < 3; });
    FAIL() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  EXPECT_EQ(calls, 3);
}

TEST(FeatInv, AccuracyThroughDefendedSplit) {
  TempDir d;
  auto c = tiny_classifier(d);
  auto x = smooth_images(64, 6);
  at::Tensor labels;
  {
    torch::NoGradGuard ng;
    labels = c->forward(x).argmax(1);  // the classifier's own answers: clean accuracy is 1
  }
  EXPECT_DOUBLE_EQ(featinv::accuracy_through_split(*c, "relu2", x, labels, {}), 1.0);
  EXPECT_GT(featinv::accuracy_through_split(*c, "relu2", x, labels, featinv::Defense::parse("quant=12")), 0.95);
  const double noisy = featinv::accuracy_through_split(*c, "relu2", x, labels, featinv::Defense::parse("noise=20"));
  EXPECT_LT(noisy, 0.8);
}

TEST(FeatInv, InverseNetTrainingReducesLossAndDecodes) {
  TempDir d;
  auto c = tiny_classifier(d);
  auto aux = smooth_images(64, 7);
  auto targets = smooth_images(4, 8);
  featinv::InverseNetOptions o;
  o.epochs = 6;
  o.batch = 16;
  o.width = 8;
  o.lr = 3e-3;
  std::vector<double> curve;
  auto r = featinv::inverse_network(*c, "pool1", featinv::activations(*c, "pool1", targets), aux, {}, o, {}, &curve);
  ASSERT_EQ(curve.size(), 6u);
  EXPECT_LT(curve.back(), 0.6 * curve.front()) << curve.front() << " -> " << curve.back();
  EXPECT_EQ(r.recon.sizes(), targets.sizes());
  EXPECT_LE(r.recon.abs().max().item<double>(), 1.0);
  // flat activations (after fc1) decode to images too
  featinv::InverseNet flat({256}, {1, 28, 28}, 8, 1);
  EXPECT_EQ(flat.decode(torch::randn({2, 256})).sizes(), (std::vector<int64_t>{2, 1, 28, 28}));
}

TEST(FeatInv, GanPriorBeatsARandomSampleAndRefinementHelps) {
  TempDir d;
  auto c = tiny_classifier(d);
  test::save_tiny_generator(d / "g.pt", "dcgan28", 1);
  auto gen = models::load_generator(d / "g.pt");
  torch::manual_seed(11);
  at::Tensor x, other;
  {
    torch::NoGradGuard ng;
    x = gen->generate(torch::randn({3, 8}));
    other = gen->generate(torch::randn({3, 8}));
  }
  auto a = featinv::activations(*c, "relu2", x);
  featinv::GanPriorOptions o;
  o.restarts = 2;
  o.loop.steps = 80;
  o.loop.lr = 0.1;
  auto r = featinv::gan_prior(*gen, *c, "relu2", a, o);
  const double base = featinv::quality(x, other).psnr.mean().item<double>();
  const double latent = featinv::quality(x, r.recon).psnr.mean().item<double>();
  EXPECT_GT(latent, base + 3) << base << " vs " << latent;
  o.refine_steps = 80;
  auto refined = featinv::gan_prior(*gen, *c, "relu2", a, o);
  EXPECT_LT(refined.feature_loss.mean().item<double>(), r.feature_loss.mean().item<double>());
}

// ------------------------------------------------------------------------------------------------
// The split x defence x attack sweep

#include "rewind/featinv/sweep.h"
#include "rewind/identity/calibration.h"

namespace {

/// A fixed embedder: L2-normalised 7x7 average-pooled pixels (49-d), enough for a calibration.
class PoolEmbedder : public models::Embedder {
 public:
  int64_t dim() const override { return 49; }
  models::ImageShape input_shape() const override { return {1, 28, 28}; }
  at::Tensor embed(const at::Tensor& x) override {
    auto e = torch::adaptive_avg_pool2d(x.mean(1, true), {7, 7}).flatten(1);
    return e / e.norm(2, 1, true).clamp_min(1e-12);
  }
  void to(const c10::Device&) override {}
  std::string describe() const override { return "pool7"; }
  std::string id() const override { return "pool7:test"; }
};

featinv::SweepOptions quick_sweep(int64_t steps = 20) {
  featinv::SweepOptions o;
  o.white_box.loop.steps = steps;
  o.seed = 5;
  return o;
}

}  // namespace

TEST(FeatInvSweep, OneCellPerSplitAndDefenceWithFinitePsnr) {
  TempDir d;
  auto c = tiny_classifier(d);
  featinv::SweepInputs in;
  in.targets = smooth_images(3, 7);
  in.eval_labels = torch::tensor(std::vector<int64_t>{1, 2, 3}, torch::kLong);
  auto o = quick_sweep();
  o.splits = {"conv1", "relu2"};
  o.defenses = {featinv::Defense{}, featinv::Defense::parse("noise=1")};
  o.keep_recon = 2;
  int calls = 0;
  auto r = featinv::run_sweep(*c, in, o, {}, [&](const featinv::SweepCell& cell) {
    ++calls;
    EXPECT_EQ(cell.recon.size(0), 3);  // the full batch inside the callback
  });
  EXPECT_EQ(calls, 4);
  ASSERT_EQ(r.cells.size(), 4u);
  EXPECT_EQ(r.targets, 3);
  EXPECT_FALSE(r.identity);
  const auto points = c->split_points();
  const char* want[4][2] = {{"conv1", "none"}, {"conv1", "noise=1"}, {"relu2", "none"}, {"relu2", "noise=1"}};
  for (size_t i = 0; i < 4; ++i) {
    const auto& cell = r.cells[i];
    EXPECT_EQ(cell.split, want[i][0]);
    EXPECT_EQ(cell.defense.str(), want[i][1]);
    EXPECT_EQ(cell.attack, "white-box");
    EXPECT_EQ(points[size_t(cell.depth)], cell.split);
    ASSERT_EQ(cell.psnr.numel(), 3);
    EXPECT_TRUE(torch::isfinite(cell.psnr).all().item<bool>());
    EXPECT_TRUE(std::isfinite(cell.psnr_mean));
    EXPECT_GE(cell.accuracy, 0);
    EXPECT_LE(cell.accuracy, 1);
    EXPECT_EQ(cell.recon.size(0), 2);  // only keep_recon rows stay after the callback
    EXPECT_FALSE(cell.id_cos.defined());
  }
  // medians average the middle pair (mia::median), here an odd count: the middle value
  auto sorted = std::get<0>(r.cells[0].psnr.to(torch::kDouble).sort());
  EXPECT_DOUBLE_EQ(r.cells[0].psnr_median, sorted[1].item<double>());
  // no labels: accuracy is not measurable
  in.eval_labels = at::Tensor();
  o.splits = {"conv1"};
  o.defenses = {};
  auto r2 = featinv::run_sweep(*c, in, o);
  ASSERT_EQ(r2.cells.size(), 1u);
  EXPECT_EQ(r2.cells[0].defense.kind, "none");
  EXPECT_TRUE(std::isnan(r2.cells[0].accuracy));
}

TEST(FeatInvSweep, NoiseDefenceLowersPsnrAtAShallowSplit) {
  TempDir d;
  auto c = tiny_classifier(d);
  featinv::SweepInputs in;
  in.targets = smooth_images(4, 8);
  auto o = quick_sweep(80);
  o.splits = {"conv1"};
  o.defenses = {featinv::Defense{}, featinv::Defense::parse("noise=1")};
  auto r = featinv::run_sweep(*c, in, o);
  ASSERT_EQ(r.cells.size(), 2u);
  EXPECT_GT(r.cells[0].psnr_mean, r.cells[1].psnr_mean + 1);
  // same seed, same numbers
  auto again = featinv::run_sweep(*c, in, o);
  EXPECT_TRUE(torch::equal(again.cells[1].psnr, r.cells[1].psnr));
}

TEST(FeatInvSweep, CalibratedMatchThresholdIsIdentityCalibrate) {
  TempDir d;
  auto c = tiny_classifier(d);
  PoolEmbedder emb;
  featinv::SweepInputs in;
  in.targets = smooth_images(6, 9);
  in.target_identities = torch::tensor(std::vector<int64_t>{0, 0, 1, 1, 2, 2}, torch::kLong);
  in.embedder = &emb;
  auto o = quick_sweep(5);
  o.splits = {"conv1"};
  o.match_far = 0.1;  // 12 impostor pairs: resolved
  auto r = featinv::run_sweep(*c, in, o);
  auto cal = identity::calibrate(emb.embed(in.targets), in.target_identities, {0.1});
  ASSERT_TRUE(r.identity);
  EXPECT_TRUE(r.match.calibrated);
  EXPECT_DOUBLE_EQ(r.match.threshold, cal.points[0].threshold);
  EXPECT_EQ(r.match.impostor_pairs, 12);
  EXPECT_TRUE(r.match.far_resolved);
  EXPECT_TRUE(r.match.reason.empty());
  const auto& cell = r.cells.at(0);
  ASSERT_EQ(cell.id_cos.numel(), 6);
  EXPECT_TRUE(torch::equal(cell.id_match, cell.id_cos.gt(r.match.threshold)));
  // 12 pairs cannot resolve FAR 1e-3: flagged with a reason, not pretended
  o.match_far = 1e-3;
  auto r2 = featinv::run_sweep(*c, in, o);
  EXPECT_FALSE(r2.match.far_resolved);
  EXPECT_NE(r2.match.reason.find("12 impostor pairs"), std::string::npos) << r2.match.reason;
  // a given threshold is used as is
  o.match_threshold = 0.5;
  auto r3 = featinv::run_sweep(*c, in, o);
  EXPECT_FALSE(r3.match.calibrated);
  EXPECT_EQ(r3.match.threshold, 0.5);
}

TEST(FeatInvSweep, BadOptionsNameTheField) {
  TempDir d;
  auto c = tiny_classifier(d);
  featinv::SweepInputs in;
  in.targets = smooth_images(2, 1);
  auto o = quick_sweep(2);
  o.splits = {"conv1"};
  o.attacks = {"x"};
  EXPECT_NE(error_of([&] { featinv::run_sweep(*c, in, o); }).find("SweepOptions::attacks: unknown attack 'x'"),
            std::string::npos);
  o.attacks = {"inverse-net"};
  EXPECT_NE(error_of([&] { featinv::run_sweep(*c, in, o); }).find("SweepInputs::aux"), std::string::npos);
  o.attacks = {"gan-prior"};
  EXPECT_NE(error_of([&] { featinv::run_sweep(*c, in, o); }).find("SweepInputs::generator"), std::string::npos);
  o.attacks = {"white-box"};
  o.splits = {"nope"};
  EXPECT_NE(error_of([&] { featinv::run_sweep(*c, in, o); }).find("valid splits"), std::string::npos);
  o.splits = {"conv1"};
  o.match_far = 0;
  EXPECT_NE(error_of([&] { featinv::run_sweep(*c, in, o); }).find("SweepOptions::match_far"), std::string::npos);
  // one identity: nothing to calibrate on
  PoolEmbedder emb;
  o.match_far = 1e-3;
  in.embedder = &emb;
  in.target_identities = torch::zeros({2}, torch::kLong);
  EXPECT_NE(error_of([&] { featinv::run_sweep(*c, in, o); }).find("SweepOptions::match_threshold"), std::string::npos);
}
