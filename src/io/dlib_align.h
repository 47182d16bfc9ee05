// dlib's face pipeline, private to src/io (compiled only with REWIND_WITH_DLIB): HOG frontal-face
// detection, the 68-point landmark model (Debian's libdlib-data) and dlib's own alignment,
// get_face_chip_details(shape, size, padding) + extract_image_chip: the chips dlib's face
// recognition network (face-api's descriptor) was trained on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rw::io::dlib_align {

/// Where the landmark model is looked for: $REWIND_DLIB_LANDMARKS, else Debian's libdlib-data path.
std::string landmarks_path();

struct Face {
  int left = 0, top = 0, width = 0, height = 0;  ///< the detector's box, in image pixels
  double confidence = 0;                          ///< the HOG detector's score
  std::vector<uint8_t> chip;                      ///< size x size x 3 RGB, aligned
};

class Aligner {
 public:
  /// Loads the detector and the landmark model; Error{kInput} naming the file and the package
  /// (libdlib-data) when the model is missing or unreadable.
  explicit Aligner(const std::string& landmarks = landmarks_path());
  ~Aligner();
  /// The faces of an RGB image [h, w, 3] u8, largest box first, each aligned to a size x size chip
  /// with `padding` (dlib's face network: 150, 0.25). An image with no face found at its own
  /// size is searched once more at twice its size (dlib's "upsample 1") when it is small.
  std::vector<Face> faces(const uint8_t* rgb, int h, int w, int size, double padding = 0.25) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rw::io::dlib_align
