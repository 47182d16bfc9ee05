#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>

#include "rewind/core/error.h"
#include "rewind/data/datasets.h"
#include "rewind/io/image.h"
#include "rewind/io/manifest.h"
#include "test_util.h"

using namespace rw;
using rw::test::TempDir;
using rw::test::read_text;
using rw::test::write_text;
namespace fs = std::filesystem;

TEST(SynthFaces, RenderIsDeterministicAndSeedMatters) {
  auto a = data::render_synth_face_rgb(7, 3, 1, 64);
  auto b = data::render_synth_face_rgb(7, 3, 1, 64);
  EXPECT_EQ(a.size(), 64u * 64u * 3u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, data::render_synth_face_rgb(8, 3, 1, 64));  // other seed
  EXPECT_NE(a, data::render_synth_face_rgb(7, 4, 1, 64));  // other identity
  EXPECT_NE(a, data::render_synth_face_rgb(7, 3, 2, 64));  // other image of the same identity
}

TEST(SynthFaces, AllSizesRender) {
  for (int s : {16, 28, 32, 100, 128, 256})
    EXPECT_EQ(data::render_synth_face_rgb(1, 0, 0, s).size(), size_t(s) * s * 3) << s;
}

// Images of one person must be closer to each other than to other people's, by a clear margin.
TEST(SynthFaces, IdentitiesAreSeparableInPixels) {
  const int ids = 32, per = 4, size = 64;
  std::vector<std::vector<float>> imgs;
  for (int i = 0; i < ids; ++i)
    for (int k = 0; k < per; ++k) {
      auto px = data::render_synth_face_rgb(1, i, k, size);
      imgs.emplace_back(px.begin(), px.end());
    }
  auto dist = [&](size_t a, size_t b) {
    double s = 0;
    for (size_t j = 0; j < imgs[a].size(); ++j) s += (imgs[a][j] - imgs[b][j]) * (imgs[a][j] - imgs[b][j]);
    return std::sqrt(s / imgs[a].size());
  };
  double within = 0, between = 0;
  int nw = 0, nb = 0;
  for (size_t a = 0; a < imgs.size(); ++a)
    for (size_t b = a + 1; b < imgs.size(); ++b) {
      if (a / per == b / per) within += dist(a, b), ++nw;
      else between += dist(a, b), ++nb;
    }
  within /= nw;
  between /= nb;
  EXPECT_LT(within, 0.75 * between) << "within " << within << " between " << between;
  // and a nearest-neighbour check: most images' nearest other image is of the same identity
  int correct = 0;
  for (size_t a = 0; a < imgs.size(); ++a) {
    double best = 1e30;
    size_t arg = a;
    for (size_t b = 0; b < imgs.size(); ++b)
      if (b != a && dist(a, b) < best) best = dist(a, b), arg = b;
    correct += (arg / per == a / per);
  }
  EXPECT_GE(correct, int(0.8 * imgs.size())) << correct << " of " << imgs.size();
}

TEST(SynthFaces, WritesManifestImagesAndSheetDeterministically) {
  TempDir d1, d2;
  data::SynthFacesOptions o;
  o.identities = 5;
  o.per_identity = 3;
  o.size = 32;
  o.out = d1.path();
  auto r = data::synth_faces(o);
  o.out = d2.path();
  data::synth_faces(o);
  EXPECT_EQ(r.images, 15);
  auto m = io::read_manifest(r.manifest);
  ASSERT_EQ(m.entries.size(), 15u);
  EXPECT_EQ(m.identity_count(), 5u);
  EXPECT_EQ(m.entries[4].identity, data::synth_identity_name(1));
  for (size_t i = 0; i < m.entries.size(); ++i) {
    ASSERT_TRUE(fs::exists(m.resolve(i)));
    EXPECT_EQ(read_text(m.resolve(i)), read_text(d2 / m.entries[i].path)) << m.entries[i].path;
  }
  EXPECT_EQ(read_text(d1 / "contact-sheet.png"), read_text(d2 / "contact-sheet.png"));
  auto img = io::load_image(m.resolve(0), {});
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{3, 32, 32}));
  // the written PNG holds exactly the rendered pixels
  auto px = data::render_synth_face_rgb(1, 0, 0, 32);
  auto back = io::to_hwc_u8(img);
  EXPECT_EQ(back, px);
}

TEST(SynthFaces, FirstIdentityGivesDisjointPeople) {
  TempDir d;
  data::SynthFacesOptions o;
  o.identities = 2;
  o.per_identity = 1;
  o.size = 32;
  o.first_identity = 10;
  o.contact_sheet = false;
  o.out = d.path();
  auto r = data::synth_faces(o);
  auto m = io::read_manifest(r.manifest);
  EXPECT_EQ(m.entries[0].identity, "id00010");
  EXPECT_FALSE(fs::exists(d / "contact-sheet.png"));
}

TEST(SynthFaces, CancelKeepsFinishedWorkInManifest) {
  TempDir d;
  data::SynthFacesOptions o;
  o.identities = 40;
  o.per_identity = 4;  // 160 images = 3 chunks of 64
  o.size = 16;
  o.out = d.path();
  int calls = 0;
  try {
    data::synth_faces(o, [&](const Progress&) { return ++calls < 2; });
    FAIL() << "expected cancel";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  auto m = io::read_manifest(d / "manifest.csv");
  EXPECT_EQ(m.entries.size(), 128u);  // two chunks finished before the cancel took effect
  for (size_t i = 0; i < m.entries.size(); ++i) EXPECT_TRUE(fs::exists(m.resolve(i)));
}

TEST(SynthFaces, BadOptionsAreUsageErrors) {
  TempDir d;
  data::SynthFacesOptions o;
  o.out = d.path();
  o.size = 8;
  try {
    data::synth_faces(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(e.message().find("--size"), std::string::npos);
  }
}

namespace {
std::string idx_bytes(std::vector<int> dims, const std::vector<uint8_t>& data) {
  std::string s = {0, 0, 8, char(dims.size())};
  for (int v : dims) {
    s += char((v >> 24) & 255);
    s += char((v >> 16) & 255);
    s += char((v >> 8) & 255);
    s += char(v & 255);
  }
  s.append(data.begin(), data.end());
  return s;
}
void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), unsigned(bytes.size()));
  gzclose(f);
}
}  // namespace

TEST(FashionMnist, ImportsIdxFilesGzOrRaw) {
  TempDir src, out;
  const int n = 6;
  std::vector<uint8_t> pixels(n * 28 * 28), labels(n);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t(i * 7);
  for (int i = 0; i < n; ++i) labels[i] = uint8_t(i % 10);
  write_gz(src / "t10k-images-idx3-ubyte.gz", idx_bytes({n, 28, 28}, pixels));
  write_text(src / "t10k-labels-idx1-ubyte", idx_bytes({n}, labels));  // raw, not gzipped
  data::FashionMnistOptions o;
  o.out = out.path();
  o.split = "test";
  o.source = src.path();
  auto r = data::import_fashion_mnist(o);
  EXPECT_EQ(r.images, n);
  auto m = io::read_manifest(r.manifest);
  ASSERT_EQ(m.entries.size(), size_t(n));
  ASSERT_EQ(m.extra_columns, (std::vector<std::string>{"label"}));
  EXPECT_EQ(m.entries[3].extra[0], "3");
  EXPECT_EQ(m.entries[3].identity, "test-3");
  auto img = io::load_image(m.resolve(2), {1, 0, io::ResizeMode::kRefuse});
  auto bytes = io::to_hwc_u8(img);
  EXPECT_EQ(bytes, std::vector<uint8_t>(pixels.begin() + 2 * 784, pixels.begin() + 3 * 784));
}

// dims whose product overflows size_t onto the data size (65536^4 = 2^64 = 0 mod 2^64, with no
// data) once passed the size check with dims that promise 2^64 bytes; a dimension above INT_MAX
// became negative.
TEST(FashionMnist, OverflowingIdxDimensionsAreClearErrors) {
  TempDir d;
  auto be32 = [](uint32_t v) {
    return std::string{char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
  };
  const std::string magic4 = std::string("\0\0\x08\x04", 4), magic1 = std::string("\0\0\x08\x01", 4);
  rw::test::write_text(d / "wrap.idx", magic4 + be32(65536) + be32(65536) + be32(65536) + be32(65536));  // 2^64 = 0
  rw::test::write_text(d / "neg.idx", magic1 + be32(0x80000001u) + std::string(4, 'x'));
  for (const char* f : {"wrap.idx", "neg.idx"}) {
    try {
      data::read_idx(d / f);
      ADD_FAILURE() << f << " was read";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
      EXPECT_NE(e.message().find(f), std::string::npos) << e.message();
    }
  }
}

TEST(FashionMnist, TruncatedOrMissingFilesAreClearErrors) {
  TempDir src, out;
  std::vector<uint8_t> pixels(10 * 28 * 28);
  write_gz(src / "train-images-idx3-ubyte.gz", idx_bytes({10, 28, 28}, pixels).substr(0, 3000));
  try {
    data::read_idx(src / "train-images-idx3-ubyte.gz");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("truncated"), std::string::npos) << e.message();
  }
  data::FashionMnistOptions o;
  o.out = out.path();
  o.source = out.path();  // nothing there
  try {
    data::import_fashion_mnist(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("apt-get install dataset-fashion-mnist"), std::string::npos) << e.message();
  }
}

TEST(FashionMnist, RealDebianPackage) {
  const std::string src = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(src + "/t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto images = data::read_idx(src + "/t10k-images-idx3-ubyte.gz");
  auto labels = data::read_idx(src + "/t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(images.dims, (std::vector<int>{10000, 28, 28}));
  ASSERT_EQ(labels.dims, (std::vector<int>{10000}));
  std::vector<int> count(10, 0);
  for (auto l : labels.data) {
    ASSERT_LT(l, 10);
    ++count[l];
  }
  for (int c : count) EXPECT_EQ(c, 1000);  // the test split is balanced
}

TEST(Import, FolderLayout) {
  TempDir root, out;
  write_text(root / "alice/1.jpg", "x");
  write_text(root / "alice/2.png", "x");
  write_text(root / "alice/notes.txt", "x");
  write_text(root / "bob/1.PNG", "x");
  fs::create_directories(root / "empty_person");
  auto r = data::import_dataset({root.path(), "folder", out / "m.csv", 0});
  EXPECT_EQ(r.images, 3);
  EXPECT_EQ(r.identities, 2);
  EXPECT_EQ(r.skipped, 1);
  auto m = io::read_manifest(out / "m.csv");
  EXPECT_EQ(m.entries[2].identity, "bob");
  EXPECT_TRUE(fs::exists(m.resolve(0))) << m.resolve(0);
  EXPECT_EQ(fs::canonical(m.resolve(2)), fs::canonical(root / "bob/1.PNG"));
}

TEST(Import, FlatAndCelebaLayouts) {
  TempDir root, out;
  write_text(root / "img_align_celeba/000001.jpg", "x");
  write_text(root / "img_align_celeba/000002.jpg", "x");
  write_text(root / "img_align_celeba/000003.jpg", "x");
  write_text(root / "identity_CelebA.txt", "000001.jpg 2880\n000002.jpg 2937\r\n000003.jpg 2880\n000004.jpg 1\n");
  auto r = data::import_dataset({root.path(), "celeba", out / "c.csv", 0});
  EXPECT_EQ(r.images, 3);
  EXPECT_EQ(r.identities, 2);
  EXPECT_EQ(r.skipped, 1);  // listed but missing
  auto m = io::read_manifest(out / "c.csv");
  EXPECT_EQ(m.entries[2].identity, "2880");

  auto f = data::import_dataset({(root / "img_align_celeba"), "flat", out / "f.csv", 2});
  EXPECT_EQ(f.images, 2);
  auto mf = io::read_manifest(out / "f.csv");
  EXPECT_EQ(mf.entries[1].identity, "000002");
}

TEST(Import, ErrorsNameTheFolderAndFix) {
  TempDir root, out;
  try {
    data::import_dataset({root.path(), "folder", out / "m.csv", 0});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("--layout flat"), std::string::npos) << e.message();
  }
  EXPECT_THROW(data::import_dataset({root.path(), "celeba", out / "m.csv", 0}), Error);
  EXPECT_THROW(data::import_dataset({root.path(), "bogus", out / "m.csv", 0}), Error);
  EXPECT_THROW(data::import_dataset({root / "nope", "folder", out / "m.csv", 0}), Error);
}
