// NumPy .npy files (format 1.0/2.0, little-endian, C order) for latents and embeddings, so users
// can open rewind's outputs with numpy.load. Supported dtypes: float32, float64, int64, int32, uint8.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace rw::io {

/// Writes a CPU-convertible tensor atomically.
void write_npy(const std::string& path, const at::Tensor& t);

/// Reads an .npy file. Throws Error{kInput} naming the file for a bad magic, a Fortran-order or
/// big-endian array, an unsupported dtype, or a size that does not match the header (truncated).
at::Tensor read_npy(const std::string& path);

}  // namespace rw::io
