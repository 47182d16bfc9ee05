#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>

#include "rewind/core/error.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/image.h"
#include "test_util.h"

using namespace rw;
using rw::test::TempDir;
using rw::test::read_text;
using rw::test::write_text;

namespace {
torch::Tensor random_image(int c, int h, int w, int seed) {
  torch::manual_seed(seed);
  // multiples of 1/127.5 so the 8-bit round trip is exact
  return torch::randint(0, 256, {c, h, w}).to(torch::kFloat32).div(127.5).sub(1);
}
}  // namespace

TEST(Image, PngRoundTripIsExact) {
  TempDir d;
  auto img = random_image(3, 20, 30, 1);
  io::save_image(d / "a.png", img);
  auto back = io::load_image(d / "a.png", {3, 0, io::ResizeMode::kCenterCrop});
  ASSERT_EQ(back.sizes(), img.sizes());
  EXPECT_LT((back - img).abs().max().item<float>(), 1e-5);
  EXPECT_GE(back.min().item<float>(), -1.0f);
  EXPECT_LE(back.max().item<float>(), 1.0f);
}

TEST(Image, ChannelOrderIsRgb) {
  TempDir d;
  cv::Mat bgr(4, 4, CV_8UC3, cv::Scalar(255, 0, 0));  // pure blue in OpenCV's BGR
  cv::imwrite(d / "blue.png", bgr);
  auto t = io::load_image(d / "blue.png", {});
  EXPECT_FLOAT_EQ(t[0][0][0].item<float>(), -1.0f);  // R
  EXPECT_FLOAT_EQ(t[2][0][0].item<float>(), 1.0f);   // B
  auto g = io::load_image(d / "blue.png", {1, 0, io::ResizeMode::kCenterCrop});
  EXPECT_EQ(g.size(0), 1);
}

TEST(Image, ResizeModes) {
  TempDir d;
  io::save_image(d / "wide.png", random_image(3, 40, 80, 2));
  auto crop = io::load_image(d / "wide.png", {3, 32, io::ResizeMode::kCenterCrop});
  auto stretch = io::load_image(d / "wide.png", {3, 32, io::ResizeMode::kStretch});
  EXPECT_EQ(crop.sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(stretch.sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_FALSE(torch::allclose(crop, stretch));
  try {
    io::load_image(d / "wide.png", {3, 32, io::ResizeMode::kRefuse});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("80x40"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("wide.png"), std::string::npos);
  }
}

TEST(Image, BadFilesAreSkippedWithReasonsAndGoodOnesKept) {
  TempDir d;
  io::save_image(d / "good1.png", random_image(3, 16, 16, 3));
  io::save_image(d / "good2.png", random_image(3, 16, 16, 4));
  std::string png = read_text(d / "good1.png");
  write_text(d / "trunc.png", png.substr(0, png.size() / 2));
  cv::Mat m(16, 16, CV_8UC3, cv::Scalar(10, 20, 30));
  cv::imwrite(d / "ok.jpg", m);
  std::string jpg = read_text(d / "ok.jpg");
  write_text(d / "trunc.jpg", jpg.substr(0, jpg.size() - 40));
  write_text(d / "garbage.png", "definitely not an image");
  write_text(d / "empty.png", "");
  io::save_image(d / "other_size.png", random_image(3, 8, 8, 5));

  std::vector<std::string> paths = {d / "good1.png", d / "trunc.png", d / "trunc.jpg", d / "garbage.png",
                                    d / "empty.png", d / "missing.png", d / "other_size.png", d / "good2.png"};
  auto b = io::load_images(paths, {3, 0, io::ResizeMode::kCenterCrop});
  EXPECT_EQ(b.images.sizes(), (std::vector<int64_t>{2, 3, 16, 16}));
  EXPECT_EQ(b.indices, (std::vector<size_t>{0, 7}));
  ASSERT_EQ(b.skipped.size(), 6u);
  std::vector<std::string> expect = {"truncated PNG", "truncated JPEG", "not an image", "empty", "does not exist", "pass --size"};
  for (size_t i = 0; i < expect.size(); ++i) {
    EXPECT_NE(b.skipped[i].second.find(expect[i]), std::string::npos) << b.skipped[i].second;
    EXPECT_NE(b.skipped[i].second.find(paths[b.skipped[i].first]), std::string::npos);
  }
  // with a size given, the odd-sized image is resized instead of skipped
  auto b2 = io::load_images(paths, {3, 16, io::ResizeMode::kStretch});
  EXPECT_EQ(b2.images.size(0), 3);
}

TEST(Image, AllBadIsAnError) {
  TempDir d;
  write_text(d / "x.png", "nope");
  EXPECT_THROW(io::load_images({d / "x.png", d / "y.png"}, {}), Error);
}

// A small file declaring a huge image is refused before it is decoded (a 150 KB PNG declaring
// 30000 x 30000 once made invert allocate 2.7 GB and abort with no file name).
TEST(Image, DecompressionBombIsRefusedBeforeDecoding) {
  TempDir d;
  auto patch = [](const std::string& path, size_t at, const std::vector<uint8_t>& bytes) {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(std::streamoff(at));
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  };
  const std::string png = d / "bomb.png", jpg = d / "bomb.jpg";
  io::save_image(png, torch::zeros({3, 4, 4}));
  patch(png, 16, {0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30});  // IHDR: 30000 x 30000
  io::save_image(jpg, torch::zeros({3, 16, 16}));
  std::string bytes = io::read_file(jpg);
  const size_t sof = bytes.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  patch(jpg, sof + 5, {0x75, 0x30, 0x75, 0x30});  // SOF0: 30000 x 30000
  for (const auto& path : {png, jpg}) {
    try {
      io::load_image(path, {3, 32, io::ResizeMode::kStretch});
      FAIL() << path << " was decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
      EXPECT_NE(e.message().find("declares 30000x30000"), std::string::npos) << e.message();
      EXPECT_NE(e.message().find(path), std::string::npos) << e.message();
    }
  }
  const std::string ok = d / "ok.png";  // a normal image is untouched by the guard
  io::save_image(ok, torch::zeros({3, 4, 4}));
  EXPECT_EQ(io::load_image(ok, {3, 4, io::ResizeMode::kRefuse}).size(2), 4);
}

TEST(Image, GridLayout) {
  auto imgs = torch::zeros({5, 3, 4, 6});
  auto g = io::make_grid(imgs, 3, 2, 1.0f);
  EXPECT_EQ(g.sizes(), (std::vector<int64_t>{3, 2 * 4 + 3 * 2, 3 * 6 + 4 * 2}));
  EXPECT_FLOAT_EQ(g[0][0][0].item<float>(), 1.0f);   // padding
  EXPECT_FLOAT_EQ(g[0][2][2].item<float>(), 0.0f);   // first image
}

// A grid people read: tiles upscaled to min_side, a header row and row labels drawn as dark text
// on white, wide grids wrapped into bands no wider than max_width (each starting with column 0 when
// asked), other bytes than ASCII drawn, not fatal.
TEST(Image, LabelledGridHeadersLabelsAndWrapping) {
  // tile i is a flat grey level, so where each lands can be read back
  auto imgs = torch::empty({6, 1, 8, 8});
  for (int64_t i = 0; i < 6; ++i) imgs[i].fill_(-0.9 + 0.3 * double(i));
  io::GridLabels gl;
  gl.columns = {"a", "b", "c"};
  gl.rows = {{"row one", "LEAKS"}, {"r\xe9sum\xe9 \xff"}};  // 2 lines fit a 32 px row
  gl.min_side = 32;
  auto g = io::labelled_grid(imgs, 3, gl);
  ASSERT_EQ(g.size(0), 3);
  auto plain = io::labelled_grid(imgs, 3, io::GridLabels{"", {}, {}, 32, 1280, false});
  // no words: 3 x (32 + 4) wide plus the margin, 2 rows of 36 plus the margin
  EXPECT_EQ(plain.size(2), 4 + 3 * 36);
  EXPECT_EQ(plain.size(1), 2 * 36 + 4);
  EXPECT_GT(g.size(2), plain.size(2) + 40);  // the row labels' panel
  EXPECT_GT(g.size(1), plain.size(1));       // the header row
  const int64_t label_w = g.size(2) - plain.size(2), head_h = g.size(1) - plain.size(1);
  // tile i at (row, column) fills the 32 x 32 block below the header, right of the labels, at its level
  auto block_is = [](const at::Tensor& img, int64_t y, int64_t x, int64_t tile) {
    auto b = img[0].slice(0, y, y + 32).slice(1, x, x + 32);
    return (b - float(-0.9 + 0.3 * double(tile))).abs().max().item<float>() < 1.0 / 127.5;
  };
  EXPECT_TRUE(block_is(g, head_h + 36, label_w + 4 + 36, 4));     // row 1, column 1
  EXPECT_TRUE(block_is(g, head_h + 0, label_w + 4 + 2 * 36, 2));  // row 0, column 2
  // text: dark pixels left of the tiles (row labels) and above them (header); the verdict in red
  auto lum = g.mean(0);
  EXPECT_GT(lum.slice(1, 0, label_w).lt(-0.5).sum().item<int64_t>(), 20);
  EXPECT_GT(lum.slice(0, 0, head_h).slice(1, label_w, g.size(2)).lt(-0.5).sum().item<int64_t>(), 5);
  auto red = g[0].gt(0.2) & g[1].lt(-0.5) & g[2].lt(-0.5);
  EXPECT_GT(red.sum().item<int64_t>(), 5);
  // wrapping: at most 2 columns a band, each band starting with column 0 again
  gl.max_width = g.size(2) - 36;
  gl.repeat_first = true;
  auto w = io::labelled_grid(imgs, 3, gl);
  EXPECT_LE(w.size(2), gl.max_width);
  ASSERT_EQ(w.size(1), 2 * g.size(1));  // two bands: columns 0, 1 then 0, 2
  EXPECT_TRUE(block_is(w, head_h, label_w + 4, 0));
  EXPECT_TRUE(block_is(w, head_h + 36, label_w + 4 + 36, 4));
  EXPECT_TRUE(block_is(w, g.size(1) + head_h, label_w + 4, 0));
  EXPECT_TRUE(block_is(w, g.size(1) + head_h + 36, label_w + 4 + 36, 5));
}

// A write that fails (here: the file-size limit set to 0, as a full disk would) is an error and
// leaves no file under the final name. cv::imwrite ignored the failed close and left zero-byte
// PNGs in place.
TEST(Image, FailedWriteLeavesNoFile) {
  TempDir d;
  const std::string path = d / "x.png";
  auto img = torch::rand({3, 16, 16});
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* prev = std::signal(SIGXFSZ, SIG_IGN);  // the write then fails with EFBIG instead of killing us
  struct rlimit none = old;
  none.rlim_cur = 0;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &none), 0);
  bool threw = false;
  try {
    io::save_image(path, img);
  } catch (const Error& e) {
    threw = true;
    EXPECT_NE(e.message().find("x.png"), std::string::npos) << e.message();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, prev);
  EXPECT_TRUE(threw);
  EXPECT_FALSE(std::filesystem::exists(path));
  for (const auto& e : std::filesystem::directory_iterator(d.path())) ADD_FAILURE() << "left behind: " << e.path();
  io::save_image(path, img);  // and with room, it writes
  EXPECT_GT(std::filesystem::file_size(path), 0u);
}
