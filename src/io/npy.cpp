#include "rewind/io/npy.h"

#include <unistd.h>

#include <cstdio>

#include <torch/torch.h>

#include <cstring>
#include <regex>

#include "rewind/core/error.h"
#include "rewind/io/atomic_file.h"

namespace rw::io {

namespace {
struct Dtype {
  const char* descr;
  torch::ScalarType type;
  size_t bytes;
};
const Dtype kDtypes[] = {{"<f4", torch::kFloat32, 4}, {"<f8", torch::kFloat64, 8},
                         {"<i8", torch::kInt64, 8},   {"<i4", torch::kInt32, 4},
                         {"|u1", torch::kUInt8, 1}};
}  // namespace

void write_npy(const std::string& path, const at::Tensor& t_in) {
  auto t = t_in.detach().to(torch::kCPU).contiguous();
  const Dtype* dt = nullptr;
  for (const auto& d : kDtypes)
    if (d.type == t.scalar_type()) dt = &d;
  RW_CHECK(dt, Internal, "write_npy: unsupported dtype ", t.scalar_type());
  std::string shape = "(";
  for (int64_t i = 0; i < t.dim(); ++i) shape += std::to_string(t.size(i)) + (t.dim() == 1 ? ",)" : (i + 1 < t.dim() ? ", " : ")"));
  if (t.dim() == 0) shape = "()";
  std::string header = std::string("{'descr': '") + dt->descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  uint16_t hl = static_cast<uint16_t>(header.size());
  out += static_cast<char>(hl & 0xFF);
  out += static_cast<char>(hl >> 8);
  out += header;
  // the data goes straight from the tensor to the file (no second copy of a large array in memory)
  write_via_temp(path, [&](const std::string& tmp) {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) return false;
    const size_t bytes = size_t(t.numel()) * dt->bytes;
    bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
    ok = (bytes == 0 || std::fwrite(t.data_ptr(), 1, bytes, f) == bytes) && ok;
    ok = (std::fflush(f) == 0) && ok;
    ok = (::fsync(::fileno(f)) == 0) && ok;
    ok = (std::fclose(f) == 0) && ok;
    return ok;
  });
}

at::Tensor read_npy(const std::string& path) {
  std::string b = read_file(path);
  RW_CHECK(b.size() >= 10 && b.compare(0, 6, "\x93NUMPY") == 0, Input, "'", path,
           "' is not a .npy file (bad magic); write it with numpy.save");
  int major = static_cast<uint8_t>(b[6]);
  size_t hl, off;
  if (major == 1) {
    hl = static_cast<uint8_t>(b[8]) | (static_cast<uint8_t>(b[9]) << 8);
    off = 10;
  } else {
    RW_CHECK(b.size() >= 12, Input, "'", path, "' is truncated (npy header)");
    hl = 0;
    for (int i = 0; i < 4; ++i) hl |= size_t(static_cast<uint8_t>(b[8 + i])) << (8 * i);
    off = 12;
  }
  RW_CHECK(b.size() >= off + hl, Input, "'", path, "' is truncated (npy header)");
  // numpy writes headers of a few hundred bytes; a huge one is damage (and std::regex recurses per character)
  RW_CHECK(hl <= 65536, Input, "'", path, "': npy header of ", hl, " bytes (corrupt; write it again)");
  std::string header = b.substr(off, hl);
  std::smatch m;
  RW_CHECK(std::regex_search(header, m, std::regex("'descr':\\s*'([^']+)'")), Input, "'", path, "': npy header has no descr");
  std::string descr = m[1];
  RW_CHECK(header.find("'fortran_order': False") != std::string::npos, Input, "'", path,
           "' is stored in Fortran order; save it with numpy.ascontiguousarray first");
  const Dtype* dt = nullptr;
  for (const auto& d : kDtypes)
    if (descr == d.descr || (descr == "<u1" && d.type == torch::kUInt8)) dt = &d;
  RW_CHECK(dt, Input, "'", path, "' has dtype ", descr, "; rewind reads float32/float64/int64/int32/uint8 little-endian (convert with .astype('<f4'))");
  RW_CHECK(std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)")), Input, "'", path, "': npy header has no shape");
  std::vector<int64_t> shape;
  std::string s = m[1];
  std::regex num("\\d+");
  const size_t data_off = off + hl, data_bytes = b.size() - data_off;
  // each dimension and their product must fit what the file holds (a damaged header could
  // otherwise overflow the product onto the data size and allocate or copy past it)
  int64_t n = 1;
  for (auto it = std::sregex_iterator(s.begin(), s.end(), num); it != std::sregex_iterator(); ++it) {
    const std::string digits = it->str();
    RW_CHECK(digits.size() <= 12, Input, "'", path, "': npy shape entry ", digits.substr(0, 20), " is too large (corrupt header)");
    const int64_t d = std::stoll(digits);
    RW_CHECK(d == 0 || n <= int64_t(data_bytes / dt->bytes) / d || n == 0, Input, "'", path,
             "': npy shape promises more data than the file holds (corrupt header)");
    shape.push_back(d);
    n *= d;
  }
  RW_CHECK(data_bytes == size_t(n) * dt->bytes, Input, "'", path, "' holds ",
           data_bytes, " data bytes, its header promises ", size_t(n) * dt->bytes,
           " (truncated or corrupt; write it again)");
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dt->type));
  if (n) std::memcpy(t.data_ptr(), b.data() + data_off, size_t(n) * dt->bytes);
  return t;
}

}  // namespace rw::io
