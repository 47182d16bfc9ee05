// The LibTorch port of face-api's recognition net (dlib ResNet) against descriptors computed by
// face-api itself (tfjs CPU backend) on the same synthetic inputs; see
// data-tools/face-api/make-reference.js, which writes tests/fixtures/face_descriptor/reference.json.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "rewind/core/error.h"
#include "rewind/models/face_resnet.h"
#include "rewind/models/models.h"
#include "rewind/models/native.h"
#include "test_util.h"

using namespace rw;
using rw::test::TempDir;
namespace fs = std::filesystem;

namespace {

constexpr int kSize = 150;
constexpr double kTolerance = 1e-5;
constexpr const char* kManifest = "face_recognition_model-weights_manifest.json";
constexpr const char* kBin = "face_recognition_model.bin";

std::string reference_path() { return std::string(REWIND_TEST_FIXTURES) + "/face_descriptor/reference.json"; }

/// face-api's model/ folder, or "" when the npm setup step has not been run.
std::string face_api_dir() {
  if (const char* env = std::getenv("REWIND_FACE_API_DIR"); env && *env && fs::exists(fs::path(env) / kManifest))
    return env;
  const fs::path dir = fs::path(REWIND_TEST_FIXTURES) / ".." / ".." / "data-tools" / "face-api" / "node_modules" /
                       "@vladmandic" / "face-api" / "model";
  if (fs::exists(dir / kManifest)) return dir.lexically_normal().string();
  return models::default_face_api_dir();
}

#define SKIP_WITHOUT_FACE_API(dir)                                                                        \
  if ((dir).empty())                                                                                     \
  GTEST_SKIP() << "face-api model folder not found: run `npm ci --prefix data-tools/face-api` in the " \
                  "source tree (or set REWIND_FACE_API_DIR)"

/// The closed-form input of make-reference.js's pixel(k, y, x, c), integer arithmetic only.
int pixel(int k, int y, int x, int c) {
  static const int skin[3] = {205, 160, 130}, mouth[3] = {120, 40, 50};
  int v = (x * (k + 1) + y * (2 * k + 3) + 40 * c + 17 * k) % 256;
  const int dx = x - 75, dy = y - (70 + 2 * k);
  if (dx * dx * 3364 + dy * dy * 2025 <= 2025 * 3364) {
    v = skin[c] - ((dx * dx + dy * dy) >> 6) + 5 * k;
    for (int ex : {-20, 20}) {
      const int ey = dy + 12;
      if ((dx - ex) * (dx - ex) + ey * ey <= 49) v = 30 + 10 * c;
    }
    if (std::abs(dx) <= 14 && dy >= 22 && dy <= 27) v = mouth[c];
  }
  v += ((x * 7 + y * 13 + c * 5 + k * 11) % 9) - 4;
  return std::min(255, std::max(0, v));
}

/// Synthetic input k as [1, 3, 150, 150] float32 0..255.
torch::Tensor synthetic_input(int k) {
  auto t = torch::empty({1, 3, kSize, kSize}, torch::kFloat32);
  auto a = t.accessor<float, 4>();
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < kSize; ++y)
      for (int x = 0; x < kSize; ++x) a[0][c][y][x] = static_cast<float>(pixel(k, y, x, c));
  return t;
}

nlohmann::json load_reference() {
  std::ifstream in(reference_path());
  EXPECT_TRUE(in.good()) << "missing " << reference_path()
                         << " (regenerate with `node data-tools/face-api/make-reference.js`)";
  return nlohmann::json::parse(in);
}

/// The net loaded from face-api's folder, once per test binary.
models::FaceResNet& shared_net(const std::string& dir) {
  static models::FaceResNet net = models::load_face_api(dir);
  return net;
}

torch::Tensor run(models::FaceResNet& net, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  return net->forward(x);
}

/// Copies face-api's manifest and weights into `dst` so a test can damage them.
void copy_model(const std::string& src, const std::string& dst) {
  fs::copy_file(fs::path(src) / kManifest, fs::path(dst) / kManifest);
  fs::copy_file(fs::path(src) / kBin, fs::path(dst) / kBin);
}

template <typename F>
rw::Error expect_error(F&& f) {
  try {
    f();
  } catch (const rw::Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected an rw::Error";
  return rw::Error(ErrorKind::kInternal, "no error");
}

}  // namespace

TEST(FaceDescriptor, SyntheticInputsMatchTheJsFormula) {
  // Guards the C++ copy of the formula: the pixel sums make-reference.js recorded.
  auto ref = load_reference();
  const auto sums = ref.at("input_sums").get<std::vector<int64_t>>();
  ASSERT_EQ(sums.size(), ref.at("descriptors").size());
  for (size_t k = 0; k < sums.size(); ++k) {
    auto x = synthetic_input(static_cast<int>(k));
    EXPECT_EQ(x.sum(torch::kFloat64).item<double>(), static_cast<double>(sums[k])) << "input " << k;
    EXPECT_GE(x.min().item<float>(), 0.f);
    EXPECT_LE(x.max().item<float>(), 255.f);
  }
}

TEST(FaceDescriptor, MatchesFaceApiReference) {
  const auto dir = face_api_dir();
  SKIP_WITHOUT_FACE_API(dir);
  auto ref = load_reference();
  const auto& descs = ref.at("descriptors");
  const int K = static_cast<int>(descs.size());
  ASSERT_GE(K, 1);

  std::vector<torch::Tensor> inputs;
  for (int k = 0; k < K; ++k) inputs.push_back(synthetic_input(k));
  auto out = run(shared_net(dir), torch::cat(inputs));
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({K, 128}));

  auto expected = torch::empty({K, 128}, torch::kFloat32);
  for (int k = 0; k < K; ++k) {
    const auto v = descs[k].get<std::vector<float>>();
    ASSERT_EQ(v.size(), 128u);
    for (int i = 0; i < 128; ++i) expected[k][i] = v[i];
  }
  const double max_abs = (out - expected).abs().max().item<double>();
  RecordProperty("max_abs_diff", std::to_string(max_abs));
  EXPECT_LE(max_abs, kTolerance) << "max-abs difference vs face-api " << ref.value("face_api_version", "?")
                                 << " is " << max_abs;
  std::printf("[ face-api reference ] max-abs difference %.3g over %d descriptors\n", max_abs, K);

  // Batch independence: one input alone gives the same descriptor as inside the batch.
  auto single = run(shared_net(dir), inputs[K - 1]);
  EXPECT_LE((single[0] - out[K - 1]).abs().max().item<double>(), kTolerance);
}

TEST(FaceDescriptor, DifferentInputsGiveDifferentDescriptors) {
  const auto dir = face_api_dir();
  SKIP_WITHOUT_FACE_API(dir);
  auto out = run(shared_net(dir), torch::cat({synthetic_input(0), synthetic_input(1)}));
  const double dist = (out[0] - out[1]).norm().item<double>();
  EXPECT_GT(dist, 0.01) << "descriptors of two different inputs coincide";
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  const double n0 = out[0].norm().item<double>();
  EXPECT_GT(n0, 0.5);  // un-normalised: dlib descriptors have norms around 1.3-1.5
  EXPECT_LT(n0, 3.0);
}

TEST(FaceDescriptor, NativeRoundTrip) {
  const auto dir = face_api_dir();
  SKIP_WITHOUT_FACE_API(dir);
  TempDir tmp;
  const auto path = tmp / "face_resnet.rwm";
  models::convert_face_api(dir, path);

  const auto arch = models::read_native_arch(path);
  EXPECT_EQ(arch.at("kind").get<std::string>(), "embedder");
  EXPECT_EQ(arch.at("name").get<std::string>(), "face_resnet");
  EXPECT_EQ(arch.at("dim").get<int>(), 128);
  EXPECT_EQ(arch.at("input_size").get<int>(), 150);
  EXPECT_EQ(arch.at("channels").get<int>(), 3);
  EXPECT_NE(arch.at("source").get<std::string>().find("@vladmandic/face-api"), std::string::npos);

  auto loaded = models::load_face_resnet_native(path);
  auto x = synthetic_input(2);
  EXPECT_TRUE(torch::equal(run(loaded, x), run(shared_net(dir), x)));
  for (const auto& p : loaded->parameters()) EXPECT_FALSE(p.requires_grad());

  // the feature net for perceptual losses: its residual groups, and the last one pooled is forward()
  auto f = models::load_feature_net(path, "conv64");
  auto img = x / 127.5 - 1.0;  // [-1, 1]
  EXPECT_EQ(f->features(img).sizes(), (std::vector<int64_t>{1, 64, 17, 17}));
  const std::vector<std::vector<int64_t>> shapes = {{1, 32, 35, 35}, {1, 64, 17, 17}, {1, 128, 8, 8}, {1, 256, 4, 4},
                                                    {1, 256, 2, 2}};
  for (size_t i = 0; i < shapes.size(); ++i)
    EXPECT_EQ(loaded->features(x, models::FaceResNetImpl::stage_names()[i]).sizes(), shapes[i]);
  EXPECT_TRUE(torch::allclose(loaded->features(x, "conv256_out").mean({2, 3}).matmul(loaded->fc), run(loaded, x), 1e-5, 1e-5));
  EXPECT_THROW(models::load_feature_net(path, "conv7"), Error);
}

TEST(FaceDescriptor, GradientsReachTheInput) {
  const auto dir = face_api_dir();
  SKIP_WITHOUT_FACE_API(dir);
  auto x = synthetic_input(0).requires_grad_(true);
  shared_net(dir)->forward(x).pow(2).sum().backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
}

TEST(FaceDescriptor, MissingManifestNamesFileAndSetup) {
  TempDir tmp;
  auto e = expect_error([&] { models::load_face_api(tmp.path()); });
  EXPECT_EQ(e.kind(), ErrorKind::kModel);
  EXPECT_NE(e.message().find(tmp / kManifest), std::string::npos) << e.message();
  EXPECT_NE(e.message().find("npm ci --prefix data-tools/face-api"), std::string::npos) << e.message();
}

TEST(FaceDescriptor, ShortBinNamesFile) {
  const auto dir = face_api_dir();
  SKIP_WITHOUT_FACE_API(dir);
  TempDir tmp;
  copy_model(dir, tmp.path());
  const auto bin = tmp / kBin;
  fs::resize_file(bin, fs::file_size(bin) - 1000);
  auto e = expect_error([&] { models::load_face_api(tmp.path()); });
  EXPECT_EQ(e.kind(), ErrorKind::kModel);
  EXPECT_NE(e.message().find(bin), std::string::npos) << e.message();
  EXPECT_NE(e.message().find("too short"), std::string::npos) << e.message();

  // A longer file is as wrong as a shorter one.
  fs::resize_file(bin, fs::file_size(fs::path(dir) / kBin) + 4);
  e = expect_error([&] { models::load_face_api(tmp.path()); });
  EXPECT_EQ(e.kind(), ErrorKind::kModel);
  EXPECT_NE(e.message().find(bin), std::string::npos) << e.message();
}

TEST(FaceDescriptor, CorruptManifestNamesFile) {
  const auto dir = face_api_dir();
  SKIP_WITHOUT_FACE_API(dir);
  TempDir tmp;
  copy_model(dir, tmp.path());
  const auto manifest = tmp / kManifest;
  const std::string good = rw::test::read_text(manifest);

  // Truncated JSON.
  rw::test::write_text(manifest, good.substr(0, good.size() / 2));
  auto e = expect_error([&] { models::load_face_api(tmp.path()); });
  EXPECT_EQ(e.kind(), ErrorKind::kModel);
  EXPECT_NE(e.message().find(manifest), std::string::npos) << e.message();

  // A tensor the ResNet does not have.
  auto j = nlohmann::json::parse(good);
  j[0]["weights"][5]["name"] = "conv32_9/conv1/conv/bias";
  rw::test::write_text(manifest, j.dump());
  e = expect_error([&] { models::load_face_api(tmp.path()); });
  EXPECT_EQ(e.kind(), ErrorKind::kModel);
  EXPECT_NE(e.message().find(manifest), std::string::npos) << e.message();
  EXPECT_NE(e.message().find("conv32_9/conv1/conv/bias"), std::string::npos) << e.message();

  // A mis-shaped tensor (same byte count, wrong shape).
  j = nlohmann::json::parse(good);
  j[0]["weights"][0]["shape"] = {7, 7, 32, 3};
  rw::test::write_text(manifest, j.dump());
  e = expect_error([&] { models::load_face_api(tmp.path()); });
  EXPECT_EQ(e.kind(), ErrorKind::kModel);
  EXPECT_NE(e.message().find(manifest), std::string::npos) << e.message();
  EXPECT_NE(e.message().find("conv32_down/conv/filters"), std::string::npos) << e.message();
}

TEST(FaceDescriptor, NativeLoaderRejectsOtherArchitectures) {
  TempDir tmp;
  const auto path = tmp / "other.rwm";
  torch::nn::Linear lin(2, 2);
  models::save_native(path, *lin, {{"kind", "embedder"}, {"name", "something_else"}});
  auto e = expect_error([&] { models::load_face_resnet_native(path); });
  EXPECT_EQ(e.kind(), ErrorKind::kModel);
  EXPECT_NE(e.message().find(path), std::string::npos) << e.message();
}

// Timing, not a check: ./rewind_tests --gtest_also_run_disabled_tests --gtest_filter='FaceDescriptor.DISABLED_*'
TEST(FaceDescriptor, DISABLED_Timing) {
  const auto dir = face_api_dir();
  SKIP_WITHOUT_FACE_API(dir);
  torch::set_num_threads(2);
  auto& net = shared_net(dir);
  for (int batch : {1, 32}) {
    auto x = synthetic_input(0).repeat({batch, 1, 1, 1});
    run(net, x);  // warm-up
    const int reps = batch == 1 ? 20 : 5;
    double best = 1e30;
    for (int i = 0; i < reps; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      run(net, x);
      best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("[ timing ] batch %2d: best of %d %.2f ms per batch, %.2f ms per image (%d threads)\n", batch, reps,
                best, best / batch, torch::get_num_threads());
  }
}

#if defined(REWIND_WITH_DLIB) && defined(REWIND_WITH_OPENCV)
#include <dlib/image_io.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>

#include "rewind/io/face_crop.h"
#include "rewind/io/image.h"

// --crop dlib is dlib's own pipeline: the photo decoded by dlib, dlib's HOG detector, the 68-point
// model, get_face_chip_details(shape, 150, 0.25) and extract_image_chip, run here directly, give
// each face the descriptor the cropper's chip gives (cosine >= 0.99; the acceptance rule).
TEST(FaceDescriptor, DlibCropIsDlibsOwnPipeline) {
  const auto dir = face_api_dir();
  SKIP_WITHOUT_FACE_API(dir);
  const std::string photo = (fs::path(dir) / ".." / "demo" / "sample6.jpg").lexically_normal().string();
  const std::string model = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";
  if (!fs::exists(photo)) GTEST_SKIP() << photo << " not found (face-api's demo photos)";
  if (!fs::exists(model)) GTEST_SKIP() << model << " not found: apt-get install libdlib-data";
  dlib::matrix<dlib::rgb_pixel> img;
  dlib::load_image(img, photo);
  auto detector = dlib::get_frontal_face_detector();
  dlib::shape_predictor sp;
  dlib::deserialize(model) >> sp;
  auto rects = detector(img);
  std::stable_sort(rects.begin(), rects.end(), [](const auto& a, const auto& b) { return a.area() > b.area(); });
  std::vector<torch::Tensor> ref;
  for (const auto& r : rects) {
    dlib::matrix<dlib::rgb_pixel> chip;
    dlib::extract_image_chip(img, dlib::get_face_chip_details(sp(img, r), kSize, 0.25), chip);
    std::vector<uint8_t> hwc;
    for (long y = 0; y < chip.nr(); ++y)
      for (long x = 0; x < chip.nc(); ++x) hwc.insert(hwc.end(), {chip(y, x).red, chip(y, x).green, chip(y, x).blue});
    ref.push_back(io::from_hwc_u8(hwc.data(), kSize, kSize, 3));
  }
  io::FaceCropper cropper(io::CropMode::kDlib, kSize);
  std::vector<io::FaceBox> boxes;
  auto got = cropper.load_faces(photo, &boxes);
  ASSERT_GE(ref.size(), 2u) << "dlib finds the faces of " << photo;
  ASSERT_EQ(got.size(), ref.size());
  ASSERT_EQ(boxes.size(), ref.size());
  for (size_t k = 0; k < rects.size(); ++k) EXPECT_EQ(boxes[k].x, rects[k].left());
  // the raw network takes pixels in [0, 255] (the embedder wrapper maps rewind's [-1, 1] to them)
  auto a = torch::nn::functional::normalize(run(shared_net(dir), (torch::stack(got) + 1) * 127.5),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto b = torch::nn::functional::normalize(run(shared_net(dir), (torch::stack(ref) + 1) * 127.5),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto cos = (a * b).sum(1);
  const double worst = cos.min().item<double>();
  std::printf("[ dlib pipeline ] %zu faces, cosine to dlib's own chips: min %.6f\n", ref.size(), worst);
  EXPECT_GE(worst, 0.99);
  // and the chips are the faces' own: different people, different descriptors
  EXPECT_LT((a[0] * a[1]).sum().item<double>(), 0.95);
}
#endif
