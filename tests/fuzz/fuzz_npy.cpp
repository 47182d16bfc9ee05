// The .npy reader (latents, embeddings, resume segments).
#include <ATen/core/Tensor.h>

#include "fuzz_util.h"
#include "rewind/io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto t = rw::io::read_npy(rw::fuzz::write_input(data, size, "x.npy"));
    // what it accepted fits in the bytes it was given
    if (size_t(t.numel()) * t.element_size() > size) __builtin_trap();
  } catch (const rw::Error&) {
  }
  return 0;
}
