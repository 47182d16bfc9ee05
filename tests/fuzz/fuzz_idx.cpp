// The IDX reader (Fashion-MNIST, gzip or raw).
#include "fuzz_util.h"
#include "rewind/data/datasets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto a = rw::data::read_idx(rw::fuzz::write_input(data, size, "x.idx"));
    size_t n = 1;
    for (int d : a.dims) {
      if (d < 0) __builtin_trap();
      n *= size_t(d);
    }
    if (n != a.data.size()) __builtin_trap();  // the dims describe exactly the data held
  } catch (const rw::Error&) {
  }
  return 0;
}
