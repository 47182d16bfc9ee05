#include "rewind/io/face_crop.h"

#include <torch/torch.h>

#include <filesystem>
#include <mutex>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

#include "rewind/core/error.h"
#include "rewind/io/image.h"
#ifdef REWIND_WITH_DLIB
#include "dlib_align.h"
#endif

namespace rw::io {

namespace {
constexpr const char* kDefaultCascade = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";
constexpr double kMargin = 0.25;  // widen detections by 25% each side: Haar boxes are tight
}  // namespace

CropMode parse_crop_mode(const std::string& s) {
  if (s == "none") return CropMode::kNone;
  if (s == "center") return CropMode::kCenter;
  if (s == "detect") return CropMode::kDetect;
  if (s == "dlib" || s == "align") return CropMode::kDlib;
  RW_FAIL(Usage, "--crop must be none, center, detect or dlib (align), got '", s, "'");
}

bool dlib_available() {
#ifdef REWIND_WITH_DLIB
  return true;
#else
  return false;
#endif
}

struct FaceCropper::Impl {
  CropMode mode;
  int size, channels;
  cv::CascadeClassifier cascade;
  std::mutex mu;  // CascadeClassifier is not thread-safe
#ifdef REWIND_WITH_DLIB
  std::unique_ptr<dlib_align::Aligner> aligner;
#endif
};

FaceCropper::FaceCropper(CropMode mode, int size, int channels, const std::string& cascade)
    : impl_(std::make_unique<Impl>()) {
  impl_->mode = mode;
  impl_->size = size;
  impl_->channels = channels;
  if (mode == CropMode::kDetect) {
    std::string path = cascade.empty() ? kDefaultCascade : cascade;
    RW_CHECK(std::filesystem::exists(path), Input, "face detector '", path,
             "' not found: install Debian's opencv-data (apt-get install opencv-data) or use --crop center");
    RW_CHECK(impl_->cascade.load(path), Input, "face detector '", path, "' could not be loaded (corrupt cascade XML)");
  }
  if (mode == CropMode::kDlib) {
#ifdef REWIND_WITH_DLIB
    impl_->aligner = std::make_unique<dlib_align::Aligner>();
#else
    RW_FAIL(Usage, "--crop dlib: this rewind was built without dlib; install Debian's libdlib-dev and libdlib-data "
            "(scripts/install-deps.sh does) and rebuild, or use --crop detect");
#endif
  }
}

FaceCropper::~FaceCropper() = default;

namespace {

/// A widened square around `face`, padded with black where it leaves the image, resized to `size`.
at::Tensor crop_face(const cv::Mat& rgb, const cv::Rect& face, int size, int channels) {
  const int h = rgb.rows, w = rgb.cols;
  const int side = int(std::lround(std::max(face.width, face.height) * (1 + 2 * kMargin)));
  const int cx = face.x + face.width / 2, cy = face.y + face.height / 2;
  cv::Rect box(cx - side / 2, cy - side / 2, side, side);
  cv::Mat padded;
  int top = std::max(0, -box.y), left = std::max(0, -box.x);
  int bottom = std::max(0, box.y + side - h), right = std::max(0, box.x + side - w);
  cv::copyMakeBorder(rgb, padded, top, bottom, left, right, cv::BORDER_CONSTANT, cv::Scalar(0, 0, 0));
  cv::Mat crop = padded(cv::Rect(box.x + left, box.y + top, side, side)), resized;
  cv::resize(crop, resized, cv::Size(size, size), 0, 0, side > size ? cv::INTER_AREA : cv::INTER_LINEAR);
  if (channels == 1) {
    cv::Mat g;
    cv::cvtColor(resized, g, cv::COLOR_RGB2GRAY);
    return from_hwc_u8(g.data, g.rows, g.cols, 1);
  }
  if (!resized.isContinuous()) resized = resized.clone();
  return from_hwc_u8(resized.data, resized.rows, resized.cols, 3);
}

/// Faces found on the native-size image, largest first; `rgb` receives the image.
std::vector<cv::Rect> detect(cv::CascadeClassifier& cascade, std::mutex& mu, const std::string& path,
                                    std::vector<uint8_t>* store, cv::Mat* rgb) {
  auto full = load_image(path, {3, 0, ResizeMode::kCenterCrop});  // [3,H,W]
  *store = to_hwc_u8(full);
  const int h = int(full.size(1)), w = int(full.size(2));
  *rgb = cv::Mat(h, w, CV_8UC3, store->data());
  cv::Mat grey;
  cv::cvtColor(*rgb, grey, cv::COLOR_RGB2GRAY);
  cv::equalizeHist(grey, grey);
  std::vector<cv::Rect> faces;
  {
    std::lock_guard<std::mutex> lock(mu);
    const int min_side = std::max(12, std::min(h, w) / 10);
    cascade.detectMultiScale(grey, faces, 1.1, 4, 0, cv::Size(min_side, min_side));
  }
  std::stable_sort(faces.begin(), faces.end(), [](const cv::Rect& a, const cv::Rect& b) { return a.area() > b.area(); });
  return faces;
}

#ifdef REWIND_WITH_DLIB
/// dlib's aligned chips of the faces in `path` (largest first), as [C, size, size] in [-1,1].
std::vector<at::Tensor> dlib_faces(const dlib_align::Aligner& a, const std::string& path, int size, int channels,
                                   std::vector<FaceBox>* boxes) {
  auto full = load_image(path, {3, 0, ResizeMode::kCenterCrop});  // [3,H,W], the size guard applies
  auto hwc = to_hwc_u8(full);
  std::vector<at::Tensor> out;
  for (auto& f : a.faces(hwc.data(), int(full.size(1)), int(full.size(2)), size)) {
    auto t = from_hwc_u8(f.chip.data(), size, size, 3);
    if (channels == 1) t = (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]).unsqueeze(0);
    out.push_back(t);
    if (boxes) boxes->push_back({f.left, f.top, f.width, f.height, f.confidence});
  }
  return out;
}
#endif

}  // namespace

at::Tensor FaceCropper::load(const std::string& path, bool* found) const {
  if (found) *found = true;
  if (impl_->mode == CropMode::kNone) return load_image(path, {impl_->channels, impl_->size, ResizeMode::kStretch});
  if (impl_->mode == CropMode::kCenter) return load_image(path, {impl_->channels, impl_->size, ResizeMode::kCenterCrop});
#ifdef REWIND_WITH_DLIB
  if (impl_->mode == CropMode::kDlib) {
    auto faces = dlib_faces(*impl_->aligner, path, impl_->size, impl_->channels, nullptr);
    if (!faces.empty()) return faces.front();
    if (found) *found = false;
    return load_image(path, {impl_->channels, impl_->size, ResizeMode::kCenterCrop});
  }
#endif
  // detect: the largest face on the native-size image, a widened square around it
  std::vector<uint8_t> store;
  cv::Mat rgb;
  auto faces = detect(impl_->cascade, impl_->mu, path, &store, &rgb);
  if (faces.empty()) {
    if (found) *found = false;
    return load_image(path, {impl_->channels, impl_->size, ResizeMode::kCenterCrop});
  }
  return crop_face(rgb, faces.front(), impl_->size, impl_->channels);
}

std::vector<at::Tensor> FaceCropper::load_faces(const std::string& path, std::vector<FaceBox>* boxes) const {
  RW_CHECK(impl_->mode == CropMode::kDetect || impl_->mode == CropMode::kDlib, Usage,
           "FaceCropper::load_faces needs detect or dlib mode");
#ifdef REWIND_WITH_DLIB
  if (impl_->mode == CropMode::kDlib) return dlib_faces(*impl_->aligner, path, impl_->size, impl_->channels, boxes);
#endif
  std::vector<uint8_t> store;
  cv::Mat rgb;
  std::vector<at::Tensor> out;
  for (const auto& f : detect(impl_->cascade, impl_->mu, path, &store, &rgb)) {
    out.push_back(crop_face(rgb, f, impl_->size, impl_->channels));
    if (boxes) boxes->push_back({f.x, f.y, f.width, f.height, 0.0});
  }
  return out;
}

}  // namespace rw::io
