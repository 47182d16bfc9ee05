#include "dlib_align.h"

#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>
#include <dlib/opencv.h>
#include <opencv2/core.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "rewind/core/error.h"

namespace rw::io::dlib_align {

std::string landmarks_path() {
  if (const char* p = std::getenv("REWIND_DLIB_LANDMARKS"); p && *p) return p;
  return "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";
}

struct Aligner::Impl {
  dlib::frontal_face_detector detector;  // operator() is not const: one caller at a time
  dlib::shape_predictor sp;              // safe to share
  std::mutex mu;
};

Aligner::Aligner(const std::string& landmarks) : impl_(std::make_unique<Impl>()) {
  RW_CHECK(std::filesystem::is_regular_file(landmarks), Input, "dlib's landmark model '", landmarks,
           "' not found: install Debian's libdlib-data (apt-get install libdlib-data), set REWIND_DLIB_LANDMARKS, or "
           "use --crop detect");
  try {
    impl_->detector = dlib::get_frontal_face_detector();
    dlib::deserialize(landmarks) >> impl_->sp;
  } catch (const std::exception& e) {
    RW_FAIL(Input, "dlib's landmark model '", landmarks, "' could not be read (", e.what(),
            "); reinstall libdlib-data");
  }
  RW_CHECK(impl_->sp.num_parts() == 68, Input, "'", landmarks, "' has ", impl_->sp.num_parts(),
           " landmarks, not the 68 that dlib's face alignment needs");
}

Aligner::~Aligner() = default;

std::vector<Face> Aligner::faces(const uint8_t* rgb, int h, int w, int size, double padding) const {
  RW_CHECK(size > 0 && h > 0 && w > 0, Internal, "dlib_align: bad sizes");
  // a view of the caller's pixels (dlib's cv_image wraps a cv::Mat without copying)
  const cv::Mat mat(h, w, CV_8UC3, const_cast<uint8_t*>(rgb));
  const dlib::cv_image<dlib::rgb_pixel> img(mat);
  std::vector<dlib::rect_detection> dets;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->detector(img, dets);
    // small photos: faces under ~80 px are below the HOG window; dlib's "upsample 1"
    if (dets.empty() && int64_t(h) * w <= 1200 * 1200) {
      dlib::array2d<dlib::rgb_pixel> up;
      dlib::assign_image(up, img);
      dlib::pyramid_up(up);
      impl_->detector(up, dets);
      dlib::pyramid_down<2> pyr;
      for (auto& d : dets) d.rect = pyr.rect_down(d.rect);
    }
  }
  std::stable_sort(dets.begin(), dets.end(),
                   [](const dlib::rect_detection& a, const dlib::rect_detection& b) { return a.rect.area() > b.rect.area(); });
  std::vector<Face> out;
  for (const auto& d : dets) {
    const auto shape = impl_->sp(img, d.rect);
    const auto cd = dlib::get_face_chip_details(shape, static_cast<unsigned long>(size), padding);
    dlib::matrix<dlib::rgb_pixel> chip;
    dlib::extract_image_chip(img, cd, chip);
    Face f;
    f.left = int(d.rect.left());
    f.top = int(d.rect.top());
    f.width = int(d.rect.width());
    f.height = int(d.rect.height());
    f.confidence = d.detection_confidence;
    f.chip.resize(size_t(size) * size_t(size) * 3);
    for (long r = 0; r < chip.nr(); ++r)
      for (long c = 0; c < chip.nc(); ++c) {
        const auto& p = chip(r, c);
        uint8_t* q = f.chip.data() + (size_t(r) * size_t(size) + size_t(c)) * 3;
        q[0] = p.red, q[1] = p.green, q[2] = p.blue;
      }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace rw::io::dlib_align
