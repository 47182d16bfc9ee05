// Face crops for real photos before embedding: none (the whole image), center (a centred square),
// or detect (OpenCV Haar cascade from Debian's opencv-data, largest face, widened by a margin).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace rw::io {

enum class CropMode { kNone, kCenter, kDetect };

/// "none" | "center" | "detect"; Error{kUsage} otherwise.
CropMode parse_crop_mode(const std::string& s);

class FaceCropper {
 public:
  /// cascade: path of a Haar cascade XML; "" = Debian's haarcascade_frontalface_default.xml.
  /// Error{kInput} naming the file (and the package opencv-data) when it cannot be loaded.
  FaceCropper(CropMode mode, int size, int channels = 3, const std::string& cascade = "");
  ~FaceCropper();
  /// Loads `path` and crops it to [C, size, size] in [-1,1]. In detect mode, an image with no face
  /// found falls back to the centre crop and `*found` is set to false.
  at::Tensor load(const std::string& path, bool* found = nullptr) const;
  /// Detect mode only: every face found in `path`, largest first, each a widened square crop
  /// [C, size, size] in [-1,1] (empty when none). Error{kUsage} in the other modes.
  std::vector<at::Tensor> load_faces(const std::string& path) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rw::io
