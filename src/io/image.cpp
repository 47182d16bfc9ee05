#include "rewind/io/image.h"

#include <torch/torch.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "rewind/core/error.h"
#include "rewind/io/atomic_file.h"

namespace fs = std::filesystem;

namespace rw::io {

namespace {

// Detects files that decoders would silently half-read.
std::string truncation_problem(const std::string& bytes) {
  auto ends_with_marker = [&](const char* m, size_t mlen, size_t window) {
    size_t from = bytes.size() > window ? bytes.size() - window : 0;
    return bytes.find(std::string(m, mlen), from) != std::string::npos;
  };
  if (bytes.size() >= 8 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n", 8) == 0) {
    if (!ends_with_marker("IEND", 4, 32)) return "truncated PNG (no IEND chunk at the end)";
  } else if (bytes.size() >= 3 && static_cast<uint8_t>(bytes[0]) == 0xFF &&
             static_cast<uint8_t>(bytes[1]) == 0xD8) {
    if (!ends_with_marker("\xFF\xD9", 2, 1024)) return "truncated JPEG (no end-of-image marker)";
  }
  return {};
}

/// Width and height a PNG or JPEG header declares (false for other formats or a short header).
bool declared_size(const std::string& b, uint64_t* w, uint64_t* h) {
  auto u8 = [&](size_t i) { return uint64_t(static_cast<uint8_t>(b[i])); };
  if (b.size() >= 24 && b.compare(0, 8, "\x89PNG\r\n\x1a\n", 8) == 0 && b.compare(12, 4, "IHDR") == 0) {
    *w = (u8(16) << 24) | (u8(17) << 16) | (u8(18) << 8) | u8(19);
    *h = (u8(20) << 24) | (u8(21) << 16) | (u8(22) << 8) | u8(23);
    return true;
  }
  if (b.size() >= 4 && u8(0) == 0xFF && u8(1) == 0xD8) {  // JPEG: walk the segments to the first SOFn
    size_t i = 2;
    while (i + 9 < b.size()) {
      if (u8(i) != 0xFF) return false;
      const uint64_t m = u8(i + 1);
      if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01 || m == 0xFF) { i += m == 0xFF ? 1 : 2; continue; }
      const size_t len = size_t((u8(i + 2) << 8) | u8(i + 3));
      if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
        *h = (u8(i + 5) << 8) | u8(i + 6);
        *w = (u8(i + 7) << 8) | u8(i + 8);
        return true;
      }
      i += 2 + len;
    }
  }
  return false;
}

/// The decompression-bomb limit: set_max_pixels (--max-pixels), else $REWIND_MAX_PIXELS, else 50
/// megapixels. Also handed to OpenCV (OPENCV_IO_MAX_IMAGE_PIXELS) for the formats whose header is
/// not read here.
std::atomic<uint64_t> g_max_pixels{0};
}  // namespace

void set_max_pixels(uint64_t pixels) {
  if (pixels == 0) return;
  g_max_pixels.store(pixels);
  setenv("OPENCV_IO_MAX_IMAGE_PIXELS", std::to_string(pixels).c_str(), 1);  // before OpenCV's first decode
}

namespace {

uint64_t max_pixels() {
  if (const uint64_t v = g_max_pixels.load()) return v;
  uint64_t v = 50'000'000;
  if (const char* env = std::getenv("REWIND_MAX_PIXELS")) {
    char* end = nullptr;
    const double d = std::strtod(env, &end);
    if (end != env && d >= 1) v = uint64_t(d);
  }
  set_max_pixels(v);
  return v;
}

cv::Mat decode(const std::string& path) {
  RW_CHECK(fs::exists(path), Input, "image '", path, "' does not exist (check the manifest's paths; they are relative to the manifest's folder)");
  std::string bytes = read_file(path);
  RW_CHECK(!bytes.empty(), Input, "image '", path, "' is empty (0 bytes); re-export or remove it");
  uint64_t w = 0, h = 0;
  const uint64_t limit = max_pixels();
  if (declared_size(bytes, &w, &h))  // before decoding: a 150 KB PNG can declare 30000 x 30000
    RW_CHECK(w * h <= limit, Input, "image '", path, "' declares ", w, "x", h, " = ", w * h / 1'000'000,
             " megapixels, above the limit of ", limit / 1'000'000, " (a decompression bomb, or a huge photo: "
             "downscale it, or raise --max-pixels or $REWIND_MAX_PIXELS)");
  auto why = truncation_problem(bytes);
  RW_CHECK(why.empty(), Input, "image '", path, "' is a ", why, "; re-download or remove it");
  cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8U, bytes.data());
  cv::Mat img;
  try {
    img = cv::imdecode(raw, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    RW_FAIL(Input, "image '", path, "' cannot be decoded: ", e.what());
  }
  RW_CHECK(!img.empty(), Input, "image '", path,
           "' is not an image OpenCV can read (corrupt, or an unsupported format); convert it to PNG or JPEG");
  return img;  // BGR, 8-bit
}

cv::Mat fit(const cv::Mat& img, const ImageSpec& spec, const std::string& path) {
  if (spec.size <= 0 || (img.rows == spec.size && img.cols == spec.size)) return img;
  RW_CHECK(spec.resize != ResizeMode::kRefuse, Input, "image '", path, "' is ", img.cols, "x",
           img.rows, ", expected ", spec.size, "x", spec.size,
           " (resize it, or allow resizing with --resize crop|stretch)");
  cv::Mat out;
  if (spec.resize == ResizeMode::kStretch) {
    int interp = (img.cols > spec.size) ? cv::INTER_AREA : cv::INTER_LINEAR;
    cv::resize(img, out, cv::Size(spec.size, spec.size), 0, 0, interp);
    return out;
  }
  double scale = double(spec.size) / std::min(img.rows, img.cols);
  int w = std::max(spec.size, int(std::lround(img.cols * scale)));
  int h = std::max(spec.size, int(std::lround(img.rows * scale)));
  cv::Mat scaled;
  cv::resize(img, scaled, cv::Size(w, h), 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  cv::Rect roi((w - spec.size) / 2, (h - spec.size) / 2, spec.size, spec.size);
  return scaled(roi).clone();
}

at::Tensor mat_to_tensor(const cv::Mat& bgr, int channels) {
  cv::Mat conv;
  if (channels == 1) cv::cvtColor(bgr, conv, cv::COLOR_BGR2GRAY);
  else cv::cvtColor(bgr, conv, cv::COLOR_BGR2RGB);
  if (!conv.isContinuous()) conv = conv.clone();
  return from_hwc_u8(conv.data, conv.rows, conv.cols, channels);
}

}  // namespace

at::Tensor from_hwc_u8(const uint8_t* data, int h, int w, int c) {
  auto t = torch::from_blob(const_cast<uint8_t*>(data), {h, w, c}, torch::kUInt8)
               .permute({2, 0, 1})
               .to(torch::kFloat32);
  return t.div_(127.5).sub_(1.0).contiguous();
}

std::vector<uint8_t> to_hwc_u8(const at::Tensor& chw_in) {
  auto chw = chw_in.dim() == 4 ? chw_in.squeeze(0) : chw_in;
  RW_CHECK(chw.dim() == 3, Internal, "expected an image [C,H,W], got ", chw.sizes());
  auto u8 = chw.detach().to(torch::kCPU, torch::kFloat32)
                .clamp(-1, 1).add(1).mul(127.5).round()
                .to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  return std::vector<uint8_t>(u8.data_ptr<uint8_t>(), u8.data_ptr<uint8_t>() + u8.numel());
}

at::Tensor load_image(const std::string& path, const ImageSpec& spec) {
  RW_CHECK(spec.channels == 1 || spec.channels == 3, Usage, "channels must be 1 or 3, got ", spec.channels);
  return mat_to_tensor(fit(decode(path), spec, path), spec.channels);
}

ImageBatch load_images(const std::vector<std::string>& paths, const ImageSpec& spec,
                       const ProgressFn& progress) {
  ImageBatch out;
  std::vector<at::Tensor> ok;
  for (size_t i = 0; i < paths.size(); ++i) {
    try {
      auto t = load_image(paths[i], spec);
      if (!ok.empty() && t.sizes() != ok.front().sizes()) {
        out.skipped.emplace_back(i, "image '" + paths[i] + "' is " + std::to_string(t.size(2)) +
                                        "x" + std::to_string(t.size(1)) + ", unlike the first (" +
                                        std::to_string(ok.front().size(2)) + "x" +
                                        std::to_string(ok.front().size(1)) + "); pass --size to resize all");
      } else {
        ok.push_back(std::move(t));
        out.indices.push_back(i);
      }
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kInput) throw;
      out.skipped.emplace_back(i, e.message());
    }
    report_progress(progress, {"load", int64_t(i + 1), int64_t(paths.size()), ""});
  }
  RW_CHECK(!ok.empty(), Input, "none of the ", paths.size(), " images could be loaded",
           out.skipped.empty() ? std::string() : "; first problem: " + out.skipped.front().second);
  out.images = torch::stack(ok);
  return out;
}

namespace {
/// [C,H,W] (or [1,C,H,W]) in [-1,1] -> an 8-bit BGR (or grey) Mat that owns its pixels.
cv::Mat to_bgr_mat(const at::Tensor& image, const char* who) {
  auto chw = image.dim() == 4 ? image.squeeze(0) : image;
  RW_CHECK(chw.dim() == 3 && (chw.size(0) == 1 || chw.size(0) == 3), Internal,
           who, " expects [C,H,W] with C = 1 or 3, got ", image.sizes());
  int c = int(chw.size(0)), h = int(chw.size(1)), w = int(chw.size(2));
  auto bytes = to_hwc_u8(chw);
  cv::Mat m(h, w, c == 1 ? CV_8UC1 : CV_8UC3, bytes.data());
  cv::Mat bgr;
  if (c == 3) cv::cvtColor(m, bgr, cv::COLOR_RGB2BGR);
  else bgr = m.clone();  // m borrows `bytes`, which dies here
  return bgr;
}
}  // namespace

void save_image(const std::string& path, const at::Tensor& image) {
  cv::Mat bgr = to_bgr_mat(image, "save_image");
  // encoded in memory and written by write_file_atomic, which checks every write, the flush, the
  // fsync and the close: cv::imwrite does not report a failed close (a full disk once left
  // zero-byte PNGs under their final names)
  std::string ext = fs::path(path).extension().string();
  for (auto& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (ext.empty()) ext = ".png";
  std::vector<uchar> buf;
  bool ok = false;
  try {
    ok = cv::imencode(ext, bgr, buf);
  } catch (const cv::Exception&) {
    RW_FAIL(Usage, "cannot write '", path, "': OpenCV cannot encode ", ext, " images (use .png or .jpg)");
  }
  RW_CHECK(ok && !buf.empty(), Input, "cannot encode '", path, "' as ", ext);
  write_file_atomic(path, std::string(buf.begin(), buf.end()));
}

std::string encode_png(const at::Tensor& image) {
  cv::Mat bgr = to_bgr_mat(image, "encode_png");
  std::vector<uchar> buf;
  RW_CHECK(cv::imencode(".png", bgr, buf), Internal, "PNG encoding failed");
  return std::string(buf.begin(), buf.end());
}

at::Tensor make_grid(const at::Tensor& images, int cols, int pad, float pad_value) {
  RW_CHECK(images.dim() == 4 && images.size(0) > 0, Internal, "make_grid expects [N,C,H,W], got ", images.sizes());
  int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  cols = std::max<int>(1, std::min<int64_t>(cols, n));
  int64_t rows = (n + cols - 1) / cols;
  auto grid = torch::full({c, rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad}, pad_value);
  auto src = images.detach().to(torch::kCPU, torch::kFloat32);
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = i / cols, k = i % cols;
    int64_t y = pad + r * (h + pad), x = pad + k * (w + pad);
    grid.slice(1, y, y + h).slice(2, x, x + w).copy_(src[i]);
  }
  return grid;
}

namespace {

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr double kScale = 0.42;
constexpr int kLine = 16;  // pixels per text line

std::string ascii(const std::string& s, size_t max_chars) {
  std::string o;
  for (unsigned char ch : s) o += (ch >= 32 && ch < 127) ? char(ch) : '?';
  if (o.size() > max_chars) o = o.substr(0, max_chars - 3) + "...";
  return o;
}

int text_width(const std::string& s) {
  int base = 0;
  return cv::getTextSize(s, kFont, kScale, 1, &base).width;
}

void draw_text(cv::Mat& m, const std::string& s, int x, int baseline_y, cv::Scalar rgb) {
  cv::putText(m, s, {x, baseline_y}, kFont, kScale, rgb, 1, cv::LINE_AA);
}

/// A column header's lines: split at '\n', at most 3, each ASCII and at most 64 characters.
std::vector<std::string> header_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t from = 0;
  while (out.size() < 3) {
    const size_t nl = s.find('\n', from);
    out.push_back(ascii(s.substr(from, nl == std::string::npos ? std::string::npos : nl - from), 64));
    if (nl == std::string::npos) break;
    from = nl + 1;
  }
  return out;
}

cv::Scalar line_colour(const std::string& s) {
  if (s.rfind("LEAKS", 0) == 0) return {200, 0, 0};
  if (s.rfind("inconclusive", 0) == 0) return {190, 110, 0};
  return {40, 40, 40};
}

}  // namespace

at::Tensor labelled_grid(const at::Tensor& images, int cols, const GridLabels& labels) {
  RW_CHECK(images.dim() == 4 && images.size(0) > 0, Internal, "labelled_grid expects [N,C,H,W], got ", images.sizes());
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  cols = int(std::max<int64_t>(1, std::min<int64_t>(cols, n)));
  const int64_t rows = (n + cols - 1) / cols;
  const int up = int(std::max<int64_t>(1, (labels.min_side + std::max(h, w) - 1) / std::max(h, w)));
  const int th = int(h) * up, tw = int(w) * up, pad = 4;
  // row labels: up to 3 lines, their panel as wide as the widest (capped)
  std::vector<std::vector<std::string>> rl(static_cast<size_t>(rows));
  int label_w = 0;
  for (int64_t r = 0; r < rows && size_t(r) < labels.rows.size(); ++r)
    for (size_t k = 0; k < labels.rows[size_t(r)].size() && k < 3; ++k) {
      rl[size_t(r)].push_back(ascii(labels.rows[size_t(r)][k], 28));
      label_w = std::max(label_w, text_width(rl[size_t(r)].back()) + 2 * pad);
    }
  int lines_max = 0;
  for (const auto& l : rl) lines_max = std::max(lines_max, int(l.size()));
  const int row_h = std::max(th, lines_max * kLine) + pad;
  // columns per band: as many as fit the width (at least 1); band b shows columns [first, first + per)
  const int col_w = tw + pad;
  int per = std::max(labels.repeat_first ? 2 : 1, (labels.max_width - label_w - pad) / col_w);
  if (per >= cols) per = cols;
  std::vector<std::vector<int>> bands;
  for (int c = 0; c < cols;) {
    std::vector<int> b;
    if (labels.repeat_first && c > 0) b.push_back(0);
    while (int(b.size()) < per && c < cols) b.push_back(c++);
    bands.push_back(b);
  }
  const int title_h = labels.title.empty() ? 0 : kLine + pad;
  // each column's header lines, shortened to the tile's width once (bands draw them again)
  std::vector<std::vector<std::string>> heads;
  size_t head_lines = 0;
  for (const auto& c : labels.columns) {
    heads.push_back(header_lines(c));
    for (auto& t : heads.back())
      while (t.size() > 4 && text_width(t) > tw + pad - 2) t = t.substr(0, t.size() - 4) + "...";
    head_lines = std::max(head_lines, heads.back().size());
  }
  const int head_h = heads.empty() ? 0 : int(head_lines) * kLine + pad;
  const int band_h = head_h + int(rows) * row_h + pad;
  int width = 0;
  for (const auto& b : bands) width = std::max(width, label_w + pad + int(b.size()) * col_w);
  width = std::max(width, labels.title.empty() ? 0 : text_width(ascii(labels.title, 160)) + 2 * pad);
  const int height = title_h + int(bands.size()) * band_h;
  cv::Mat canvas(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  if (!labels.title.empty()) draw_text(canvas, ascii(labels.title, 160), pad, kLine - 3, {0, 0, 0});
  auto src = images.detach().to(torch::kCPU, torch::kFloat32);
  if (src.size(1) == 1) src = src.expand({n, 3, h, w});
  for (size_t bi = 0; bi < bands.size(); ++bi) {
    const int y0 = title_h + int(bi) * band_h;
    for (size_t k = 0; k < bands[bi].size(); ++k) {
      const int c = bands[bi][k], x = label_w + pad + int(k) * col_w;
      if (size_t(c) < heads.size())
        for (size_t li = 0; li < heads[size_t(c)].size(); ++li) {
          const std::string& t = heads[size_t(c)][li];
          draw_text(canvas, t, x + std::max(0, (tw - text_width(t)) / 2), y0 + int(li + 1) * kLine - 3, {0, 0, 0});
        }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = r * cols + c;
        if (i >= n) continue;
        auto px = to_hwc_u8(src[i].slice(0, 0, 3));
        cv::Mat tile(int(h), int(w), CV_8UC3, px.data()), big;
        cv::resize(tile, big, {tw, th}, 0, 0, cv::INTER_NEAREST);
        big.copyTo(canvas(cv::Rect(x, y0 + head_h + int(r) * row_h, tw, th)));
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const auto& lines = rl[size_t(r)];
      const int ty = y0 + head_h + int(r) * row_h + std::max(0, (th - int(lines.size()) * kLine) / 2);
      for (size_t k = 0; k < lines.size(); ++k)
        draw_text(canvas, lines[k], pad, ty + int(k + 1) * kLine - 4, line_colour(lines[k]));
    }
  }
  return from_hwc_u8(canvas.data, canvas.rows, canvas.cols, 3);
}

}  // namespace rw::io
