// The .npy reader (latents, embeddings, resume segments).
#include <torch/torch.h>

#include "fuzz_util.h"
#include "rewind/io/npy.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  rw::fuzz::maybe_write_seeds(argc, argv, [](const std::string& d) {
    rw::io::write_npy(d + "/f32.npy", torch::randn({3, 4}));
    rw::io::write_npy(d + "/i64.npy", torch::arange(6, torch::kInt64).view({2, 3}));
    rw::io::write_npy(d + "/u8.npy", torch::zeros({2, 2, 2}, torch::kUInt8));
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto t = rw::io::read_npy(rw::fuzz::write_input(data, size, "x.npy"));
    // what it accepted fits in the bytes it was given
    if (size_t(t.numel()) * t.element_size() > size) __builtin_trap();
  } catch (const rw::Error&) {
  }
  return 0;
}
