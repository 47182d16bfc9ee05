// The library layer of the pipelines (rw::data::ImageStream, rw::audit), tested without the binary:
// planted embeddings, a tiny planted generator that memorises its "training" images, streamed vs
// in-memory paths, a corrupt image mid-stream, cancellation and resume.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "rewind/audit/audit.h"
#include "rewind/audit/membership.h"
#include "rewind/audit/stages.h"
#include "rewind/core/error.h"
#include "rewind/data/image_stream.h"
#include "rewind/identity/calibration.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/face_crop.h"
#include "rewind/io/image.h"
#include "rewind/io/manifest.h"
#include "rewind/mia/metrics.h"
#include "rewind/models/face_resnet.h"
#include "test_util.h"

using namespace rw;
using rw::test::TempDir;
using rw::test::write_text;

namespace {

constexpr int kSide = 8;

/// x = sum_k softmax(T z)_k * template_k: exactly reproduces its templates (the "training set")
/// in the limit, and its random samples are close to one of them (T large).
class PlantedGenerator : public models::Generator {
 public:
  explicit PlantedGenerator(at::Tensor templates, double temperature = 6.0)
      : t_(std::move(templates)), temp_(temperature) {}
  int64_t latent_dim() const override { return t_.size(0); }
  models::ImageShape output_shape() const override { return {int(t_.size(1)), int(t_.size(2)), int(t_.size(3))}; }
  at::Tensor generate(const at::Tensor& z) override {
    auto w = torch::softmax(z * temp_, 1);
    return torch::einsum("nk,kchw->nchw", {w, t_});
  }
  void to(const c10::Device&) override {}
  std::string describe() const override { return "planted (" + std::to_string(t_.size(0)) + " templates)"; }
  /// Each object its own generator (a file would be told apart by its hash).
  std::string id() const override { return describe() + ":" + std::to_string(reinterpret_cast<uintptr_t>(this)); }

 private:
  at::Tensor t_;
  double temp_;
};

/// A fixed random projection of the pixels, L2-normalised.
class ProjectionEmbedder : public models::Embedder {
 public:
  ProjectionEmbedder() : p_(torch::randn({kSide * kSide, 16}, at::detail::createCPUGenerator(7))) {}
  int64_t dim() const override { return 16; }
  models::ImageShape input_shape() const override { return {1, kSide, kSide}; }
  at::Tensor embed(const at::Tensor& x) override {
    return torch::nn::functional::normalize(x.flatten(1).matmul(p_), torch::nn::functional::NormalizeFuncOptions().dim(1));
  }
  void to(const c10::Device&) override {}
  std::string describe() const override { return "projection"; }
  std::string id() const override { return "projection:test"; }

 private:
  at::Tensor p_;
};

/// n random grey images as PNG files (+ manifest rows), returned as loaded back (PNG-quantised).
at::Tensor write_images(const std::string& dir, const std::string& prefix, int n, int member, uint64_t seed,
                        io::Manifest* m) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto x = torch::rand({n, 1, kSide, kSide}, gen).mul(2).sub(1);
  std::vector<at::Tensor> back;
  for (int i = 0; i < n; ++i) {
    const std::string rel = prefix + std::to_string(i) + ".png";
    io::save_image(dir + "/" + rel, x[i]);
    m->entries.push_back({rel, prefix + std::to_string(i), member, {}});
    back.push_back(io::load_image(dir + "/" + rel, {1, kSide, io::ResizeMode::kRefuse}));
  }
  return torch::stack(back);
}

}  // namespace

TEST(ImageStream, CorruptImageMidStreamIsSkippedAndTheRestStreams) {
  TempDir d;
  io::Manifest m;
  m.base_dir = d.path();
  auto imgs = write_images(d.path(), "a", 7, -1, 1, &m);
  write_text(d / "bad.png", "\x89PNG\r\n\x1a\n garbage without an end");
  m.entries.insert(m.entries.begin() + 3, io::ManifestEntry{"bad.png", "bad", -1, {}});
  data::StreamOptions so;
  so.batch = 3;
  data::ImageStream s(m, io::ImageSpec{1, kSide, io::ResizeMode::kRefuse}, so);
  data::Batch b;
  std::vector<size_t> rows;
  std::vector<at::Tensor> got;
  int batches = 0;
  while (s.next(&b)) {
    EXPECT_LE(b.size(), 3);
    EXPECT_EQ(b.images.size(0), b.size());
    EXPECT_EQ(b.first, int64_t(rows.size()));
    rows.insert(rows.end(), b.rows.begin(), b.rows.end());
    got.push_back(b.images);
    ++batches;
  }
  EXPECT_EQ(batches, 3);  // 7 good images in batches of 3
  ASSERT_EQ(s.skipped().size(), 1u);
  EXPECT_EQ(s.skipped()[0].row, 3u);
  EXPECT_NE(s.skipped()[0].reason.find("bad.png"), std::string::npos) << s.skipped()[0].reason;
  EXPECT_EQ(rows, (std::vector<size_t>{0, 1, 2, 4, 5, 6, 7}));
  EXPECT_TRUE(torch::equal(torch::cat(got), imgs));  // same pixels as loading one by one
  EXPECT_EQ(s.delivered(), 7);
}

TEST(ImageStream, RowsSubsetShardsAndCancel) {
  TempDir d;
  io::Manifest m;
  m.base_dir = d.path();
  write_images(d.path(), "a", 10, -1, 2, &m);
  auto loader = data::image_loader({1, kSide, io::ResizeMode::kRefuse});
  data::StreamOptions so;
  so.batch = 4;
  so.shard.index = 1;
  so.shard.count = 3;
  data::ImageStream s(m, {9, 1, 4, 7, 2}, loader, so);
  auto all = data::load_all(s, "test");
  EXPECT_EQ(all.rows, (std::vector<size_t>{1, 4, 7}));  // rows % 3 == 1, in the order given
  // cancellation: the progress callback says stop -> Error{kCancelled}
  int calls = 0;
  data::StreamOptions one;
  one.batch = 1;
  data::ImageStream c(m, loader, one, [&](const Progress&) { return ++calls < 2; });
  data::Batch b;
  try {
    while (c.next(&b)) {}
    FAIL() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  EXPECT_EQ(calls, 2);
}

TEST(AuditThreshold, ReferenceThresholdCertifiesThePerImageRate) {
  // 1000 reference images with best similarities 0.000, 0.001, ..., 0.999
  std::vector<double> ref;
  for (int i = 0; i < 1000; ++i) ref.push_back(i / 1000.0);
  // one image tested at family-wise 0.1: the most exceedances whose 95% bound is still <= 0.1
  auto t = audit::verdict_threshold(&ref, torch::empty({0, 4}), {}, 0.1, 100, 1);
  ASSERT_TRUE(t.resolved);
  int above = 0;
  for (double v : ref) above += v > t.value;
  EXPECT_LE(mia::rate_upper_bound(above, 1000), 0.1);
  EXPECT_GT(mia::rate_upper_bound(above + 1, 1000), 0.1);  // tight: one more would not be certified
  EXPECT_GT(above, 50);                                     // well below 100 = 10% of 1000 (the bound costs)
  EXPECT_LT(above, 100);
  EXPECT_EQ(audit::verdict_for(0.9995, t), audit::Verdict::kLeaks);
  EXPECT_EQ(audit::verdict_for(0.1, t), audit::Verdict::kNoEvidence);
  // 100 images tested at 0.05: each held to 5e-4, which 1000 references cannot certify
  auto u = audit::verdict_threshold(&ref, torch::empty({0, 4}), {}, 0.05, 100, 100);
  EXPECT_FALSE(u.resolved);
  EXPECT_DOUBLE_EQ(u.per_test, 0.05 / 100);
  EXPECT_DOUBLE_EQ(u.value, 0.999);  // their maximum
  EXPECT_EQ(u.null_needed, mia::null_scores_needed(5e-4));
  EXPECT_NE(u.reason.find("needs at least " + std::to_string(u.null_needed)), std::string::npos) << u.reason;
  EXPECT_EQ(audit::verdict_for(0.9995, u), audit::Verdict::kInconclusive);  // above it, yet no accusation
  EXPECT_EQ(audit::verdict_for(0.5, u), audit::Verdict::kNoEvidence);
}

TEST(Compare, ExposureNeedsRankOneAndTheThresholdWithAControl) {
  // gallery: three people, orthogonal photos; probes built to cover each case
  auto gallery = torch::eye(3);
  auto n = [](std::vector<float> v) { auto t = torch::tensor(v); return t / t.norm(); };
  auto probes = torch::stack({n({1, 0.1f, 0}),      // person 0: own photo at rank 1, cos 0.995: exposed
                              n({0.95f, 0.3f, 0}),  // person 1: matches person 0 better (rank 1 is wrong): not exposed, control
                              n({0, 0.6f, 0.8f})}); // person 2: rank 1 own but cos 0.8 < 0.9: not exposed, no control
  auto e = audit::exposure(probes, gallery, 0.9);
  EXPECT_EQ(e.exposed, (std::vector<bool>{true, false, false}));
  EXPECT_EQ(e.control, (std::vector<bool>{false, true, false}));
  EXPECT_EQ(e.n_exposed, 1);
  EXPECT_EQ(e.n_control, 1);
  EXPECT_NEAR(e.own[2], 0.8, 1e-6);
  // noise probes: neither exposed nor "recognised" at a high threshold, whatever rank 1 they land on
  auto noise = torch::nn::functional::normalize(torch::randn({3, 3}, at::detail::createCPUGenerator(1)),
                                                torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto z = audit::exposure(noise, gallery, 0.999);
  EXPECT_EQ(z.n_exposed, 0);
  EXPECT_EQ(z.n_control, 0);
}

TEST(Audit, DomainFitTellsApartTwoDomainsOnly) {
  auto gen = at::detail::createCPUGenerator(9);
  auto unit = [](const at::Tensor& t) {
    return torch::nn::functional::normalize(t, torch::nn::functional::NormalizeFuncOptions().dim(1));
  };
  auto centre = torch::randn({1, 16}, gen);
  auto samples = unit(centre + 0.5 * torch::randn({300, 16}, gen));
  auto same = unit(centre + 0.5 * torch::randn({60, 16}, gen));                  // the generator's own domain
  auto other = unit(torch::randn({1, 16}, gen) + 0.5 * torch::randn({60, 16}, gen));  // another cluster
  auto a = audit::domain_fit(samples, same, 1);
  auto b = audit::domain_fit(samples, other, 1);
  ASSERT_TRUE(a.probe.ran && b.probe.ran);
  EXPECT_LT(a.probe.m.auc.lo, 0.95) << a.probe.m.auc.value;
  EXPECT_GT(b.probe.m.auc.lo, 0.95) << b.probe.m.auc.value;
  EXPECT_NEAR(a.image_to_sample, a.sample_to_sample, 0.1);
  EXPECT_LT(b.image_to_sample, b.sample_to_sample - 0.2);
  EXPECT_EQ(a.samples, 300);
  EXPECT_EQ(audit::domain_fit(samples, same, 1, 100).samples, 100);  // capped
}

TEST(AuditThreshold, RuleOfThreeByHand) {
  // zero exceedances among n certify rate p (95%) when 0.05^(1/n) >= 1 - p: n >= ln 0.05 / ln(1 - p)
  EXPECT_EQ(mia::null_scores_needed(0.01), 299);  // 2.9957 / 0.01005 = 298.07
  EXPECT_LE(mia::rate_upper_bound(0, 299), 0.01);
  EXPECT_GT(mia::rate_upper_bound(0, 298), 0.01);
  EXPECT_NEAR(mia::rate_upper_bound(0, 1000), 1 - std::pow(0.05, 1e-3), 1e-9);
  EXPECT_EQ(mia::max_exceedances(298, 0.01), -1);
  EXPECT_EQ(mia::max_exceedances(299, 0.01), 0);
}

TEST(AuditThreshold, WithoutReferenceFamilyWiseOverImagesAndSamples) {
  auto emb = torch::nn::functional::normalize(torch::randn({60, 8}, at::detail::createCPUGenerator(3)),
                                              torch::nn::functional::NormalizeFuncOptions().dim(1));
  std::vector<int64_t> labels;
  for (int i = 0; i < 60; ++i) labels.push_back(i / 2);  // 30 identities x 2 images: 1740 impostor pairs
  // 60 images x 10 samples at 0.1: 1.7e-4 per comparison needs ~18,000 pairs: inconclusive, threshold = max
  auto t = audit::verdict_threshold(nullptr, emb, labels, 0.1, 10, 60);
  EXPECT_FALSE(t.resolved);
  EXPECT_EQ(t.null_scores, 1740);
  EXPECT_DOUBLE_EQ(t.per_test, 0.1 / 600);
  auto mx = identity::calibrate(emb, torch::tensor(labels), {1e-12});
  EXPECT_DOUBLE_EQ(t.value, mx.points[0].threshold);
  EXPECT_NE(t.reason.find("--reference"), std::string::npos) << t.reason;
  // one image, one sample at 0.9: resolved, at most k of the pairs above it
  auto r = audit::verdict_threshold(nullptr, emb, labels, 0.9, 1, 1);
  ASSERT_TRUE(r.resolved);
  const int64_t k = mia::max_exceedances(1740, 0.9);
  auto c = identity::calibrate(emb, torch::tensor(labels), {(double(k) + 0.5) / 1740});
  EXPECT_DOUBLE_EQ(r.value, c.points[0].threshold);
}

namespace {
struct Planted {
  TempDir dir;
  io::Manifest m;           // members (rows 0..7) and non-members (rows 8..15)
  io::Manifest members, nonmembers;
  std::unique_ptr<PlantedGenerator> g;
  ProjectionEmbedder e;
  Planted() {
    m.base_dir = members.base_dir = nonmembers.base_dir = dir.path();
    auto t = write_images(dir.path(), "m", 8, 1, 11, &m);
    write_images(dir.path(), "n", 8, 0, 12, &m);
    for (const auto& en : m.entries) (en.member ? members : nonmembers).entries.push_back(en);
    g = std::make_unique<PlantedGenerator>(t);
  }
};

/// Planted, with two reference generators: templates of 8 other images each, never the members.
struct PlantedRefs : Planted {
  io::Manifest other;
  PlantedGenerator r1, r2;
  static io::Manifest in(const std::string& dir) {
    io::Manifest m;
    m.base_dir = dir;
    return m;
  }
  PlantedRefs()
      : other(in(dir.path())),
        r1(write_images(dir.path(), "x", 8, 0, 21, &other)),
        r2(write_images(dir.path(), "y", 8, 0, 22, &other)) {}
};

/// Membership options with a short latent recovery (restarts 2, lr 0.3) and 50 bootstrap resamples.
audit::MembershipOptions short_recovery(const std::string& attacks, int64_t steps) {
  audit::MembershipOptions o;
  o.attacks = attacks;
  o.invert.restarts = 2;
  o.invert.loop.steps = steps;
  o.invert.loop.lr = 0.3;
  o.boot = 50;
  return o;
}

audit::AuditOptions small_audit() {
  audit::AuditOptions o;
  o.samples = 400;
  o.invert.restarts = 2;
  o.invert.loop.steps = 60;
  o.invert.loop.lr = 0.3;
  o.far = 0.5;  // family-wise over 16 images: 0.03125 each, which 120 reference images certify
  return o;
}
}  // namespace

TEST(Audit, PlantedGeneratorFlagsMembersMoreThanNonMembers) {
  Planted p;
  auto o = small_audit();
  // without a reference, 120 impostor pairs cannot certify 0.5 / (16 images x 400 samples): no accusation
  auto u = audit::run(*p.g, p.e, p.m, nullptr, o);
  EXPECT_FALSE(u.threshold.resolved);
  EXPECT_EQ(u.leaking, 0);
  EXPECT_GT(u.inconclusive, 0);
  EXPECT_NE(audit::audit_headline(u, o).find("INCONCLUSIVE"), std::string::npos);
  // 120 strangers' images certify 0.5 / 16 per image (95 needed)
  io::Manifest ref;
  ref.base_dir = p.dir.path();
  write_images(p.dir.path(), "r", 120, 0, 13, &ref);
  auto r = audit::run(*p.g, p.e, p.m, &ref, o);
  ASSERT_TRUE(r.threshold.resolved) << r.threshold.reason;
  EXPECT_EQ(r.inconclusive, 0);
  ASSERT_TRUE(r.truth.has_value());
  EXPECT_EQ(r.truth->members, 8);
  EXPECT_EQ(r.truth->nonmembers, 8);
  EXPECT_GT(r.truth->members_flagged, r.truth->nonmembers_flagged);
  EXPECT_GT(r.truth->auc_identity_nn, 0.8);
  EXPECT_GT(r.truth->auc_recovery, 0.8);
  EXPECT_EQ(r.recovered_identities, 16);  // recover_top 256 covers everyone
  // the ranking puts leaking identities first
  for (size_t k = 1; k < r.identities.size(); ++k)
    if (r.identities[k].leaks) {
      EXPECT_TRUE(r.identities[k - 1].leaks);
    }
  // a recovery budget: only the top 4 + 2 control identities get recovery evidence
  o.recover_top = 4;
  o.recover_control = 2;
  auto b = audit::run(*p.g, p.e, p.m, &ref, o);
  EXPECT_EQ(b.recovered_identities, 6);
  int with = 0;
  for (const auto& ev : b.identities) with += ev.recovery_error.has_value();
  EXPECT_EQ(with, 6);
  for (size_t k = 0; k < 4; ++k) EXPECT_TRUE(b.identities[k].recovery_error.has_value()) << k;
}

namespace {
/// Sets for the dataset-level tests: 20 people x 2 images of yours ("person<k>") and 40 reference
/// images, each its own identity (as a flat folder imports) unless paired by `pair_reference`.
struct OwnAndReference {
  io::Manifest own, ref;
  at::Tensor own_images;
};
OwnAndReference own_and_reference(const std::string& dir, uint64_t seed) {
  OwnAndReference s;
  s.own.base_dir = s.ref.base_dir = dir;
  s.own_images = write_images(dir, "o", 40, -1, seed, &s.own);
  for (size_t i = 0; i < s.own.entries.size(); ++i) s.own.entries[i].identity = "person" + std::to_string(i / 2);
  write_images(dir, "r", 40, 0, seed + 1, &s.ref);
  return s;
}
void pair_reference(io::Manifest& ref) {
  for (size_t i = 0; i < ref.entries.size(); ++i) ref.entries[i].identity = "stranger" + std::to_string(i / 2);
}
/// The audit options of those tests: no latent recovery.
audit::AuditOptions no_recovery_audit() {
  auto o = small_audit();
  o.recover_top = 0;
  o.recover_control = 0;
  return o;
}
}  // namespace

// Images without identity labels (each its own name, as a flat folder imports) would count several
// photos of one person as several people in the dataset-level test: the result says so.
TEST(Audit, DatasetTestCaveatForImagesWithoutIdentities) {
  Planted p;
  const auto o = no_recovery_audit();
  auto sets = own_and_reference(p.dir.path(), 21);
  auto& own = sets.own;
  auto& ref = sets.ref;
  auto flat = audit::run(*p.g, p.e, own, &ref, o);
  ASSERT_TRUE(flat.set_test.ran) << flat.set_test.reason;
  EXPECT_EQ(flat.set_test.owner, 20);
  EXPECT_NE(flat.set_test_caveat.find("the reference's 40 images"), std::string::npos) << flat.set_test_caveat;
  EXPECT_EQ(flat.set_test_caveat.find("your "), std::string::npos) << flat.set_test_caveat;
  EXPECT_NE(audit::set_test_line(flat).find("--layout folder"), std::string::npos);
  pair_reference(ref);
  auto labelled = audit::run(*p.g, p.e, own, &ref, o);
  ASSERT_TRUE(labelled.set_test.ran) << labelled.set_test.reason;
  EXPECT_EQ(labelled.set_test.reference, 20);
  EXPECT_EQ(labelled.set_test_caveat, "");
}

TEST(Membership, PlantedGeneratorSeparatesMembers) {
  Planted p;
  audit::MembershipOptions o;
  o.samples = 400;
  o.invert.restarts = 2;
  o.invert.loop.steps = 60;
  o.invert.loop.lr = 0.3;
  o.boot = 50;
  auto r = audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
  EXPECT_EQ(r.members, 8);
  EXPECT_EQ(r.nonmembers, 8);
  EXPECT_EQ(r.attacks, (std::vector<std::string>{"identity-nn", "recon-identity", "recovery"}));  // no reference GAN
  for (const auto& a : r.metrics)
    if (a.level == "image" && (a.attack == "recovery" || a.attack == "identity-nn")) {
      EXPECT_GT(a.m.auc.value, 0.8) << a.attack;
    }
  // one image per identity: identity rows mirror image rows
  EXPECT_EQ(r.identity_rows.size(), r.rows.size());
  // the attack that could not run is named with its reason, and the repeated identity level is said
  ASSERT_EQ(r.skipped_attacks.count("calibrated"), 1u);
  EXPECT_NE(r.skipped_attacks.at("calibrated").find("reference generator"), std::string::npos);
  EXPECT_TRUE(r.one_image_per_identity);
  auto lines = audit::membership_summary(r);
  bool named = false;
  for (const auto& l : lines) named |= l.find("calibrated: not run") != std::string::npos;
  EXPECT_TRUE(named);
  // the same kind of images on both sides: the blind baseline sees no bias
  ASSERT_TRUE(r.blind.ran) << r.blind.reason;
  EXPECT_FALSE(r.blind.biased) << r.blind.m.auc.lo;
}

namespace {
/// A discriminator that memorised its training images: minus the MSE to the nearest of them.
class PlantedDiscriminator : public models::Discriminator {
 public:
  explicit PlantedDiscriminator(at::Tensor seen) : seen_(std::move(seen)) {}
  at::Tensor score(const at::Tensor& x) override {
    auto d = (x.unsqueeze(1) - seen_.unsqueeze(0)).pow(2).flatten(2).mean(2);  // [N, seen]
    return -std::get<0>(d.min(1));
  }
  std::string describe() const override { return "planted discriminator"; }
  std::string id() const override { return "planted discriminator"; }

 private:
  at::Tensor seen_;
};
}  // namespace

// The discriminator attack: each image's logit from the GAN's discriminator, kept across a resume;
// without a discriminator it is skipped with the flag to give.
TEST(Membership, DiscriminatorAttackScoresEachImage) {
  Planted p;
  TempDir out;
  std::vector<at::Tensor> seen;
  for (const auto& en : p.members.entries)
    seen.push_back(io::load_image(p.dir.path() + "/" + en.path, {1, kSide, io::ResizeMode::kRefuse}));
  audit::MembershipOptions o;
  o.attacks = "identity-nn,discriminator";
  o.samples = 50;
  o.boot = 50;
  o.stage_dir = out / "stages";
  o.discriminator = std::make_shared<PlantedDiscriminator>(torch::stack(seen));
  auto r = audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
  EXPECT_EQ(r.attacks, (std::vector<std::string>{"discriminator", "identity-nn"}));
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const double s = r.score.at("discriminator")[i];
    if (r.rows[i].label) EXPECT_NEAR(s, 0.0, 1e-6) << i;  // a member is one of the images it saw
    else EXPECT_LT(s, -1e-3) << i;
  }
  for (const auto& a : r.metrics) {
    if (a.attack == "discriminator") {
      EXPECT_DOUBLE_EQ(a.m.auc.value, 1.0) << a.level;
    }
  }
  o.resume = true;
  auto again = audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
  EXPECT_EQ(again.score.at("discriminator"), r.score.at("discriminator"));
  o.resume = false;
  o.stage_dir.clear();
  o.discriminator.reset();
  auto none = audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
  EXPECT_EQ(none.attacks, (std::vector<std::string>{"identity-nn"}));
  ASSERT_EQ(none.skipped_attacks.count("discriminator"), 1u);
  EXPECT_NE(none.skipped_attacks.at("discriminator").find("--discriminator"), std::string::npos);
  // NaN logits are left out (said); all NaN is a damaged discriminator
  struct Nan : models::Discriminator {
    bool all;
    explicit Nan(bool a) : all(a) {}
    at::Tensor score(const at::Tensor& x) override {
      auto s = torch::arange(x.size(0), torch::kFloat32);
      if (all) return s.fill_(NAN);
      s[0] = NAN;
      return s;
    }
    std::string describe() const override { return "nan"; }
    std::string id() const override { return all ? "nan-all" : "nan-some"; }
  };
  o.attacks = "discriminator";
  o.discriminator = std::make_shared<Nan>(false);
  auto some = audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
  int nan = 0;
  for (double v : some.score.at("discriminator")) nan += std::isnan(v);
  EXPECT_GE(nan, 2);  // the first image of each class's batch
  o.discriminator = std::make_shared<Nan>(true);
  try {
    audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
    ADD_FAILURE() << "an all-NaN discriminator was used";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel) << e.message();
  }
}

TEST(Membership, BlindBaselineWarnsOnABiasedSplit) {
  Planted p;
  // non-members from another "source": low-resolution noise upscaled (smooth), members native noise
  io::Manifest smooth;
  smooth.base_dir = p.dir.path();
  auto gen = at::detail::createCPUGenerator(21);
  for (int i = 0; i < 8; ++i) {
    auto lo = torch::rand({1, 1, kSide / 4, kSide / 4}, gen).mul(2).sub(1);
    auto up = torch::upsample_bilinear2d(lo, {kSide, kSide}, false).squeeze(0);
    io::save_image(p.dir.path() + "/s" + std::to_string(i) + ".png", up);
    smooth.entries.push_back({"s" + std::to_string(i) + ".png", "s" + std::to_string(i), 0, {}});
  }
  audit::MembershipOptions o;
  o.attacks = "identity-nn";
  o.samples = 50;
  o.boot = 200;
  auto r = audit::run_membership(*p.g, {}, &p.e, p.members, smooth, o);
  ASSERT_TRUE(r.blind.ran) << r.blind.reason;
  EXPECT_TRUE(r.blind.biased) << r.blind.m.auc.value << " [" << r.blind.m.auc.lo << ", " << r.blind.m.auc.hi << "]";
  bool warned = false;
  for (const auto& l : audit::membership_summary(r)) warned |= l.rfind("WARNING: the member / non-member split is biased", 0) == 0;
  EXPECT_TRUE(warned);
}

// Recovery for a seeded draw of rows only; identity-nn on every row; a resumed run reads the same
// scores back; scores.csv names each row's path from its manifest (rows hold no strings).
TEST(Membership, RecoveryDrawResumeAndScoresCsv) {
  Planted p;
  TempDir out;
  audit::MembershipOptions o;
  o.samples = 200;
  o.invert.restarts = 1;
  o.invert.loop.steps = 10;
  o.boot = 50;
  o.recover_max = 3;
  o.stage_dir = out / "stages";
  auto a = audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
  auto measured = [&](const audit::MembershipResult& r, const std::string& k, int label) {
    int n = 0;
    for (size_t i = 0; i < r.rows.size(); ++i) n += r.rows[i].label == label && !std::isnan(r.score.at(k)[i]);
    return n;
  };
  for (int label : {0, 1}) {
    EXPECT_EQ(measured(a, "recovery", label), 3);
    EXPECT_EQ(measured(a, "recon-identity", label), 3);  // the drawn rows kept their embeddings
    EXPECT_EQ(measured(a, "identity-nn", label), 8);
  }
  for (size_t i = 0; i < a.rows.size(); ++i)  // recovery and recon-identity on the same rows
    EXPECT_EQ(std::isnan(a.score.at("recovery")[i]), std::isnan(a.score.at("recon-identity")[i])) << i;
  o.resume = true;
  auto b = audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
  for (const auto& k : a.attacks)
    for (size_t i = 0; i < a.rows.size(); ++i) {
      const double x = a.raw.at(k)[i], y = b.raw.at(k)[i];
      EXPECT_TRUE((std::isnan(x) && std::isnan(y)) || x == y) << k << " row " << i << ": " << x << " vs " << y;
    }
  audit::write_membership_report(out / "rep", a, p.members, p.nonmembers, o, "planted", nlohmann::json::object());
  auto csv = io::parse_csv(io::read_file(out / "rep" + "/scores.csv"));
  ASSERT_EQ(csv.size(), a.rows.size() + 1);
  for (size_t i = 0; i < a.rows.size(); ++i) {
    const auto& m = a.rows[i].label ? p.members : p.nonmembers;
    EXPECT_EQ(csv[i + 1][0], m.entries[a.rows[i].row].path);
    EXPECT_EQ(csv[i + 1][2], std::to_string(a.rows[i].label));
  }
}

TEST(AuditStages, StreamedRecoveryEqualsInMemoryInvert) {
  Planted p;
  ganinv::InvertOptions o;
  o.restarts = 2;
  o.loop.steps = 20;
  o.batch = 6;  // 3 targets per chunk: several chunks and stream batches
  std::vector<size_t> rows;
  for (size_t i = 0; i < p.m.entries.size(); ++i) rows.push_back(i);
  auto rec = audit::recover_rows(*p.g, p.m, rows, o, &p.e, {}, "invert");
  data::ImageStream s(p.m, io::ImageSpec{1, kSide, io::ResizeMode::kRefuse});
  auto all = data::load_all(s, "planted");
  auto ref = ganinv::invert(*p.g, all.images, o);
  auto mse = (ref.recon - all.images).pow(2).flatten(1).mean(1);
  EXPECT_TRUE(torch::equal(rec.mse, mse));
  EXPECT_TRUE(torch::equal(rec.latents, ref.latents));
  // embeddings: streamed in batches = one pass over everything
  data::ImageStream s2(p.m, io::ImageSpec{1, kSide, io::ResizeMode::kRefuse}, {3, 2, {}, "embed"});
  auto emb = audit::embed_stream(p.e, s2);
  EXPECT_TRUE(torch::allclose(emb.emb, p.e.embed(all.images), 1e-6, 1e-6));
}

TEST(AuditStages, ResumeReusesFinishedStagesAndRefusesOtherOptions) {
  Planted p;
  TempDir stages;
  auto o = small_audit();
  o.stage_dir = stages / "s";
  auto a = audit::run(*p.g, p.e, p.m, nullptr, o);
  ASSERT_TRUE(std::filesystem::exists(o.stage_dir + "/dataset.json"));
  o.resume = true;
  auto b = audit::run(*p.g, p.e, p.m, nullptr, o);  // everything from the cache
  ASSERT_EQ(a.identities.size(), b.identities.size());
  for (size_t k = 0; k < a.identities.size(); ++k) {
    EXPECT_EQ(a.identities[k].identity, b.identities[k].identity);
    EXPECT_DOUBLE_EQ(a.identities[k].nn_similarity, b.identities[k].nn_similarity);
    EXPECT_FLOAT_EQ(float(*a.identities[k].recovery_error), float(*b.identities[k].recovery_error));
  }
  o.samples = 300;  // other options: refused, naming the folder
  try {
    audit::run(*p.g, p.e, p.m, nullptr, o);
    FAIL() << "resumed with other options";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(e.message().find(o.stage_dir), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("(--samples was "), std::string::npos) << e.message();  // the flag, not the field
  }
  o.samples = small_audit().samples;
  o.invert.loop.steps += 1;  // a recovery option: named by its flag, not its place in the fingerprint
  try {
    audit::run(*p.g, p.e, p.m, nullptr, o);
    FAIL() << "resumed with other recovery options";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("(--steps was "), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("without --resume"), std::string::npos) << e.message();
  }
  // the same options and manifest, but an image it lists replaced since: refused, never mixed with
  // the kept results of its old contents (the manifest's bytes alone did not show it)
  o.invert.loop.steps = small_audit().invert.loop.steps;
  audit::run(*p.g, p.e, p.m, nullptr, o);  // resumes cleanly while nothing changed
  std::filesystem::copy_file(p.m.resolve(1), p.m.resolve(0), std::filesystem::copy_options::overwrite_existing);
  try {
    audit::run(*p.g, p.e, p.m, nullptr, o);
    FAIL() << "resumed over a replaced image";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(e.message().find("an image the dataset manifest lists changed since"), std::string::npos) << e.message();
  }
  o.resume = false;  // starting over takes the new contents
  EXPECT_NO_THROW(audit::run(*p.g, p.e, p.m, nullptr, o));
}

TEST(Audit, BadOptionsNameTheField) {
  Planted p;
  auto o = small_audit();
  o.far = 2;
  try {
    audit::run(*p.g, p.e, p.m, nullptr, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("AuditOptions::far"), std::string::npos) << e.message();
    EXPECT_EQ(e.message().rfind("--far must be", 0), 0u) << e.message();  // the flag first: the CLI user's word
  }
}

// The sampled-pairs branch (large N) must agree with the exhaustive one: every genuine pair, and an
// impostor threshold close to the exact one. (It once crashed: sort's arguments were swapped.)
TEST(Calibration, SampledPairsAgreeWithAllPairs) {
  auto gen = at::detail::createCPUGenerator(5);
  const int64_t ids = 100, per = 3;
  auto centres = torch::randn({ids, 16}, gen).repeat_interleave(per, 0);
  auto emb = torch::nn::functional::normalize(centres + 0.5 * torch::randn({ids * per, 16}, gen),
                                              torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto labels = torch::arange(ids).repeat_interleave(per);
  auto all = identity::calibrate(emb, labels, {1e-2}, /*max_pairs=*/1'000'000);
  auto sampled = identity::calibrate(emb, labels, {1e-2}, /*max_pairs=*/20'000);  // 44,850 pairs > 20,000: sampled
  EXPECT_EQ(all.genuine_pairs, ids * per * (per - 1) / 2);
  EXPECT_EQ(sampled.genuine_pairs, all.genuine_pairs);
  EXPECT_LT(sampled.impostor_pairs, all.impostor_pairs);
  EXPECT_GT(sampled.impostor_pairs, 18'000);
  EXPECT_NEAR(sampled.points[0].threshold, all.points[0].threshold, 0.03);
  EXPECT_NEAR(sampled.points[0].tar, all.points[0].tar, 0.05);
}

// Thresholds kept from the top impostor scores only equal the threshold over all impostor scores.
TEST(Calibration, TopImpostorsEqualTheFullThreshold) {
  auto gen = at::detail::createCPUGenerator(9);
  auto emb = torch::nn::functional::normalize(torch::randn({300, 8}, gen), torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto labels = torch::arange(150).repeat_interleave(2);
  auto sims = emb.matmul(emb.t());
  auto mask = labels.unsqueeze(0).ne(labels.unsqueeze(1)).triu(1);
  auto impostors = sims.masked_select(mask);
  auto c = identity::calibrate(emb, labels, {1e-1, 1e-2, 1e-3});
  ASSERT_EQ(c.impostor_pairs, impostors.numel());
  for (const auto& op : c.points) {
    EXPECT_DOUBLE_EQ(op.threshold, identity::threshold_for_far(impostors, op.far)) << op.far;
    EXPECT_DOUBLE_EQ(op.far_actual, impostors.gt(op.threshold).to(torch::kFloat64).mean().item<double>());
  }
}

// The pipelines' --crop: center is the loader they always used; dlib aligns the largest face of a
// photo to the generator's size; anything else is refused.
TEST(AuditStages, PipelineLoaderCrops) {
  rw::test::TempDir tmp;
  auto img = torch::rand({3, 40, 60}) * 2 - 1;
  const std::string path = tmp / "a.png";
  io::save_image(path, img);
  const models::ImageShape shape{3, 32, 32};
  auto center = audit::pipeline_loader(shape, "center")(0, path);
  EXPECT_TRUE(torch::equal(center, data::image_loader({3, 32, io::ResizeMode::kCenterCrop})(0, path)));
  EXPECT_EQ(audit::pipeline_loader(shape, "none")(0, path).sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_THROW(audit::pipeline_loader(shape, "auto"), Error);
  EXPECT_THROW(audit::pipeline_loader(shape, "bogus"), Error);
  const auto dir = models::default_face_api_dir();
  const std::string photo = dir.empty() ? "" : (std::filesystem::path(dir) / ".." / "demo" / "sample6.jpg").lexically_normal().string();
  if (photo.empty() || !std::filesystem::exists(photo) || !io::dlib_available()) GTEST_SKIP() << "no face-api photo or no dlib";
  auto face = audit::pipeline_loader({3, 64, 64}, "dlib")(0, photo);
  auto whole = audit::pipeline_loader({3, 64, 64}, "center")(0, photo);
  EXPECT_EQ(face.sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_GT((face - whole).abs().mean().item<float>(), 0.05f);  // an aligned face, not the photo's centre
}

// K = 2 reference generators (templates of other images): the reference-calibrated attacks run and
// separate the planted members; their scores are mia::calibrated_scores of the recovery errors.
TEST(Membership, ReferenceGeneratorsCalibrate) {
  PlantedRefs p;
  auto &r1 = p.r1, &r2 = p.r2;
  auto o = short_recovery("recovery,calibrated,lira,rmia", 60);
  EXPECT_THROW(audit::run_membership(*p.g, {p.g.get()}, nullptr, p.members, p.nonmembers, o), Error);  // itself
  EXPECT_THROW(audit::run_membership(*p.g, {&r1, &r1}, nullptr, p.members, p.nonmembers, o), Error);   // twice
  for (int boot : {1, 49}) {  // too few resamples to place a 95% interval: refused, not a degenerate interval
    auto bad = o;
    bad.boot = boot;
    EXPECT_THROW(audit::run_membership(*p.g, {}, nullptr, p.members, p.nonmembers, bad), Error) << boot;
  }
  auto negative = o;
  negative.per_identity = -1;
  EXPECT_THROW(audit::run_membership(*p.g, {}, nullptr, p.members, p.nonmembers, negative), Error);
  auto r = audit::run_membership(*p.g, {&r1, &r2}, nullptr, p.members, p.nonmembers, o);
  EXPECT_EQ(r.attacks, (std::vector<std::string>{"calibrated", "lira", "recovery", "rmia"}));
  EXPECT_TRUE(r.skipped_attacks.empty());
  for (const auto& a : r.metrics)
    if (a.level == "image") {
      EXPECT_GT(a.m.auc.value, 0.8) << a.attack;
    }
  for (const char* a : {"calibrated", "lira", "rmia"})
    for (double s : r.score.at(a)) EXPECT_TRUE(std::isfinite(s)) << a;
  // one reference is enough to run them; none skips them with the reason
  auto one = audit::run_membership(*p.g, {&r1}, nullptr, p.members, p.nonmembers, o);
  EXPECT_EQ(one.attacks.size(), 4u);
  auto none = audit::run_membership(*p.g, {}, nullptr, p.members, p.nonmembers, o);
  EXPECT_EQ(none.attacks, (std::vector<std::string>{"recovery"}));
  EXPECT_EQ(none.skipped_attacks.count("lira"), 1u);
}

// identity-calibrated / identity-lira: each image's closest-sample distance (1 - similarity) under the
// target against those under the references' sample banks (the same count and seed), through
// mia::calibrated_scores; computed again here from the banks themselves.
TEST(Membership, IdentityReferenceAttacksCalibrateTheClosestSample) {
  PlantedRefs p;
  auto &r1 = p.r1, &r2 = p.r2;
  audit::MembershipOptions o;
  o.attacks = "identity-nn,identity-calibrated,identity-lira";
  o.samples = 300;
  o.boot = 50;
  auto r = audit::run_membership(*p.g, {&r1, &r2}, &p.e, p.members, p.nonmembers, o);
  EXPECT_EQ(r.attacks, (std::vector<std::string>{"identity-calibrated", "identity-lira", "identity-nn"}));
  std::vector<std::vector<double>> d_ref;
  for (models::Generator* g : {static_cast<models::Generator*>(&r1), static_cast<models::Generator*>(&r2)}) {
    audit::SampleBank bank(*g, p.e, o.samples, o.seed, {}, audit::kSampleBatch);
    std::vector<double> d;
    for (size_t i = 0; i < r.rows.size(); ++i) {
      const auto& m = r.rows[i].label ? p.members : p.nonmembers;
      data::ImageStream s(m, {r.rows[i].row}, audit::pipeline_loader(p.g->output_shape(), o.crop));
      auto x = data::load_all(s, "row").images;
      std::vector<double> sim;
      std::vector<int64_t> k;
      bank.nearest(p.e.embed(x), &sim, &k);
      d.push_back(1.0 - sim[0]);
    }
    d_ref.push_back(d);
  }
  std::vector<double> d;
  for (double s : r.score.at("identity-nn")) d.push_back(1.0 - s);
  const auto want = mia::calibrated_scores(d, d_ref);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    EXPECT_NEAR(r.score.at("identity-calibrated")[i], want.calibrated[i], 1e-5) << i;
    EXPECT_NEAR(r.score.at("identity-lira")[i], want.lira[i], 1e-4) << i;
  }
  // without references they are skipped, with the reason
  auto none = audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
  EXPECT_EQ(none.attacks, (std::vector<std::string>{"identity-nn"}));
  EXPECT_NE(none.skipped_attacks.at("identity-lira").find("--reference-generator"), std::string::npos);
}

// recon-identity-lira: each image's reconstruction distance (1 - recon-identity similarity) under the
// target against the same under each reference, through mia::calibrated_scores. A reference's
// distances are its recon-identity run as the target (the same rows, options and restart seeds).
TEST(Membership, ReconIdentityLiraCalibratesTheReconstruction) {
  PlantedRefs p;
  auto &r1 = p.r1, &r2 = p.r2;
  auto o = short_recovery("recon-identity,recon-identity-lira", 40);
  auto r = audit::run_membership(*p.g, {&r1, &r2}, &p.e, p.members, p.nonmembers, o);
  EXPECT_EQ(r.attacks, (std::vector<std::string>{"recon-identity", "recon-identity-lira"}));
  auto alone = o;
  alone.attacks = "recon-identity";
  std::vector<std::vector<double>> d_ref;
  for (models::Generator* g : {static_cast<models::Generator*>(&r1), static_cast<models::Generator*>(&r2)}) {
    auto rk = audit::run_membership(*g, {}, &p.e, p.members, p.nonmembers, alone);
    ASSERT_EQ(rk.rows.size(), r.rows.size());
    std::vector<double> d;
    for (size_t i = 0; i < rk.rows.size(); ++i) {
      ASSERT_EQ(rk.rows[i].row, r.rows[i].row);
      ASSERT_EQ(rk.rows[i].label, r.rows[i].label);
      d.push_back(1.0 - rk.score.at("recon-identity")[i]);
    }
    d_ref.push_back(d);
  }
  std::vector<double> d;
  for (double s : r.score.at("recon-identity")) d.push_back(1.0 - s);
  const auto want = mia::calibrated_scores(d, d_ref);
  for (size_t i = 0; i < r.rows.size(); ++i) EXPECT_NEAR(r.score.at("recon-identity-lira")[i], want.lira[i], 1e-4) << i;
  // the references' distances differ from the target's: the calibration is not the identity map
  EXPECT_GT(std::abs(d_ref[0][0] - d[0]), 1e-6);
  // without references, or without an embedder, it is skipped with the reason
  auto none = audit::run_membership(*p.g, {}, &p.e, p.members, p.nonmembers, o);
  EXPECT_EQ(none.attacks, (std::vector<std::string>{"recon-identity"}));
  EXPECT_NE(none.skipped_attacks.at("recon-identity-lira").find("--reference-generator"), std::string::npos);
  auto lira_only = o;
  lira_only.attacks = "recovery,recon-identity-lira";
  auto no_emb = audit::run_membership(*p.g, {&r1, &r2}, nullptr, p.members, p.nonmembers, lira_only);
  EXPECT_EQ(no_emb.attacks, (std::vector<std::string>{"recovery"}));
  EXPECT_NE(no_emb.skipped_attacks.at("recon-identity-lira").find("--embedder"), std::string::npos);
}

// With the GAN's discriminator and a reference, the audit runs the dataset-level test on its logits
// too (scored in the embedding pass) and gives each identity the discriminator's percentile among
// the reference images; the two tests combine by Bonferroni.
TEST(Audit, DiscriminatorDatasetTestAndPercentiles) {
  Planted p;
  auto o = no_recovery_audit();
  auto sets = own_and_reference(p.dir.path(), 31);
  auto& own = sets.own;
  auto& ref = sets.ref;
  pair_reference(ref);
  o.discriminator = std::make_shared<PlantedDiscriminator>(sets.own_images);  // it was trained on every owner image
  auto r = audit::run(*p.g, p.e, own, &ref, o);
  ASSERT_TRUE(r.disc_test.ran) << r.disc_test.reason;
  EXPECT_EQ(r.disc_test.owner, 20);
  EXPECT_EQ(r.disc_test.reference, 20);
  EXPECT_DOUBLE_EQ(r.disc_test.auc, 1.0);
  EXPECT_LT(r.disc_test.pvalue, 1e-6);
  if (r.set_test.ran) {
    EXPECT_DOUBLE_EQ(r.combined_pvalue, std::min(1.0, 2 * std::min(r.set_test.pvalue, r.disc_test.pvalue)));
  }
  for (const auto& ev : r.identities) {
    ASSERT_TRUE(ev.disc_percentile.has_value()) << ev.identity;
    EXPECT_DOUBLE_EQ(*ev.disc_percentile, 1.0) << ev.identity;  // above every reference image
  }
  EXPECT_NE(audit::set_test_line(r).find("Discriminator test"), std::string::npos) << audit::set_test_line(r);
  // without a discriminator: not run, and the line does not mention it
  o.discriminator.reset();
  auto none = audit::run(*p.g, p.e, own, &ref, o);
  EXPECT_FALSE(none.disc_test.ran);
  EXPECT_FALSE(none.identities[0].disc_percentile.has_value());
  EXPECT_EQ(audit::set_test_line(none).find("Discriminator"), std::string::npos);
}
