// The native model loader (rewind's own .pt files: an architecture record and named tensors).
#include <torch/torch.h>

#include "fuzz_util.h"
#include "rewind/models/native.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  rw::fuzz::maybe_write_seeds(argc, argv, [](const std::string& d) {
    torch::nn::Linear lin(4, 3);
    rw::models::save_native(d + "/linear.pt", *lin, {{"kind", "fuzz"}, {"name", "linear"}});
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = rw::fuzz::write_input(data, size, "m.pt");
  try {
    (void)rw::models::read_native_arch(path);
  } catch (const rw::Error&) {
  }
  try {
    torch::nn::Linear lin(4, 3);  // the seed corpus holds weights for this layer
    rw::models::load_native_weights(path, *lin);
  } catch (const rw::Error&) {
  }
  return 0;
}
