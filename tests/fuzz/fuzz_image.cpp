// The image loader (PNG / JPEG / anything OpenCV decodes), with the decompression-bomb guard.
#include <torch/torch.h>

#include "fuzz_util.h"
#include "rewind/io/image.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  rw::fuzz::maybe_write_seeds(argc, argv, [](const std::string& d) {
    torch::manual_seed(1);
    auto img = torch::rand({3, 12, 10}) * 2 - 1;
    // the first byte of each file picks the extension it is written under (see below): PNG
    // starts 0x89 (137 % 4 = 1 -> .jpg, still decoded by content), JPEG 0xFF (-> .img)
    rw::io::save_image(d + "/rgb.png", img);
    rw::io::save_image(d + "/rgb.jpg", img);
    rw::io::save_image(d + "/grey.png", img.slice(0, 0, 1));
  });
  return 0;
}

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
