// Face crops for real photos before embedding: none (the whole image), center (a centred square),
// detect (OpenCV Haar cascade from Debian's opencv-data, largest face, widened by a margin), or
// dlib (alias align: dlib's HOG detector, 68 landmarks and dlib's own alignment,
// get_face_chip_details(shape, size, 0.25): the chips dlib's face network, face-api's descriptor,
// was trained on; Debian's libdlib-dev + libdlib-data, a build option).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace rw::io {

enum class CropMode { kNone, kCenter, kDetect, kDlib };

/// "none" | "center" | "detect" | "dlib" (or "align"); Error{kUsage} otherwise.
CropMode parse_crop_mode(const std::string& s);
/// Whether this build has dlib (--crop dlib).
bool dlib_available();

/// A face found in a photo: its box in image pixels and the detector's score (0 for Haar).
struct FaceBox {
  int x = 0, y = 0, width = 0, height = 0;
  double score = 0;
};

class FaceCropper {
 public:
  /// cascade: path of a Haar cascade XML; "" = Debian's haarcascade_frontalface_default.xml.
  /// Error{kInput} naming the file (and the package opencv-data) when it cannot be loaded.
  FaceCropper(CropMode mode, int size, int channels = 3, const std::string& cascade = "");
  ~FaceCropper();
  /// Loads `path` and crops it to [C, size, size] in [-1,1]. In detect and dlib modes the largest
  /// face is taken; an image with no face found falls back to the centre crop and `*found` is set
  /// to false.
  at::Tensor load(const std::string& path, bool* found = nullptr) const;
  /// Detect and dlib modes: every face found in `path`, largest first, each cropped (detect: a
  /// widened square; dlib: aligned) to [C, size, size] in [-1,1] (empty when none), and their
  /// boxes. Error{kUsage} in the other modes.
  std::vector<at::Tensor> load_faces(const std::string& path, std::vector<FaceBox>* boxes = nullptr) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rw::io
