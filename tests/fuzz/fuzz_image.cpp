// The image loader (PNG / JPEG / anything OpenCV decodes), with the decompression-bomb guard.
#include <ATen/core/Tensor.h>

#include "fuzz_util.h"
#include "rewind/io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // the first byte picks the extension, so PNG, JPEG and unknown types all reach the loader
  static const char* kExt[] = {"png", "jpg", "bmp", "img"};
  const std::string name = std::string("x.") + kExt[size ? data[0] % 4 : 0];
  const auto path = rw::fuzz::write_input(data, size, name);
  try {
    auto t = rw::io::load_image(path, {3, 0, rw::io::ResizeMode::kCenterCrop});
    if (t.dim() != 3 || t.size(0) != 3) __builtin_trap();
    auto s = rw::io::load_image(path, {1, 16, rw::io::ResizeMode::kCenterCrop});
    if (s.size(1) != 16 || s.size(2) != 16) __builtin_trap();
  } catch (const rw::Error&) {
  }
  return 0;
}
