// `rewind data fashion-mnist`: Debian's dataset-fashion-mnist IDX files -> PNGs + manifest.
#include <zlib.h>

#include <climits>
#include <cstdint>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>

#include "rewind/core/error.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"

namespace fs = std::filesystem;

namespace rw::data {

IdxArray read_idx(const std::string& path) {
  RW_CHECK(fs::exists(path), Input, "IDX file '", path, "' does not exist");
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files too
  RW_CHECK(f, Input, "cannot open '", path, "'");
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  int err = 0;
  const char* msg = gzerror(f, &err);
  std::string why = (n < 0 || (err != Z_OK && err != Z_STREAM_END)) ? std::string(msg ? msg : "read error") : "";
  gzclose(f);
  RW_CHECK(why.empty(), Input, "'", path, "' is corrupt or truncated (", why, "); reinstall dataset-fashion-mnist");
  RW_CHECK(bytes.size() >= 4 && bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08, Input, "'", path,
           "' is not an IDX file of unsigned bytes (bad magic)");
  int ndim = bytes[3];
  RW_CHECK(ndim >= 1 && ndim <= 4 && bytes.size() >= size_t(4 + 4 * ndim), Input, "'", path, "': bad IDX header");
  IdxArray a;
  size_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    const uint8_t* p = &bytes[4 + 4 * d];
    const uint32_t v = (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
    // a dimension past INT_MAX, or dims whose product overflows and wraps onto the data size,
    // would let later code index past the data
    RW_CHECK(v <= uint32_t(INT32_MAX) && (v == 0 || count <= bytes.size() / v), Input, "'", path,
             "': IDX dimension ", d, " is ", v, ", more than the file holds (truncated, or a corrupt header; reinstall dataset-fashion-mnist)");
    a.dims.push_back(int(v));
    count *= size_t(v);
  }
  size_t off = 4 + 4 * size_t(ndim);
  RW_CHECK(bytes.size() - off == count, Input, "'", path, "' holds ", bytes.size() - off,
           " data bytes, its header promises ", count, " (truncated; reinstall dataset-fashion-mnist)");
  a.data.assign(bytes.begin() + off, bytes.end());
  return a;
}

namespace {
std::string find_idx(const std::string& dir, const std::string& stem) {
  for (const char* ext : {".gz", ""}) {
    auto p = fs::path(dir) / (stem + ext);
    if (fs::exists(p)) return p.string();
  }
  RW_FAIL(Input, "Fashion-MNIST file '", stem, "[.gz]' not found in '", dir,
          "': install Debian's package (apt-get install dataset-fashion-mnist) or pass --source DIR");
}
}  // namespace

FashionMnistResult import_fashion_mnist(const FashionMnistOptions& opt, const ProgressFn& progress) {
  RW_CHECK(!opt.out.empty(), Usage, "fashion-mnist needs --out DIR");
  RW_CHECK(opt.split == "train" || opt.split == "test", Usage, "--split must be train or test, got '", opt.split, "'");
  const std::string prefix = opt.split == "train" ? "train" : "t10k";
  auto images = read_idx(find_idx(opt.source, prefix + "-images-idx3-ubyte"));
  auto labels = read_idx(find_idx(opt.source, prefix + "-labels-idx1-ubyte"));
  RW_CHECK(images.dims.size() == 3 && labels.dims.size() == 1 && images.dims[0] == labels.dims[0], Input,
           "Fashion-MNIST files in '", opt.source, "' disagree: images and labels must have the same count");
  const int64_t total = opt.limit > 0 ? std::min<int64_t>(opt.limit, images.dims[0]) : images.dims[0];
  const int h = images.dims[1], w = images.dims[2];
  io::ensure_dir(opt.out);

  io::Manifest m;
  m.extra_columns = {"label"};
  m.entries.resize(total);
  const int64_t chunk = 1024;
  for (int64_t start = 0; start < total; start += chunk) {
    int64_t end = std::min(total, start + chunk);
    std::string first_error;
#pragma omp parallel for schedule(static)
    for (int64_t i = start; i < end; ++i) {
      std::string rel = "images/" + opt.split + "/" + std::to_string(i) + ".png";
      cv::Mat img(h, w, CV_8UC1, const_cast<uint8_t*>(&images.data[size_t(i) * h * w]));
      try {
        io::write_via_temp((fs::path(opt.out) / rel).string(),
                           [&](const std::string& tmp) { return cv::imwrite(tmp, img); });
      } catch (const std::exception& e) {
#pragma omp critical
        if (first_error.empty()) first_error = e.what();
      }
      m.entries[i] = {rel, opt.split + "-" + std::to_string(i), -1, {std::to_string(labels.data[i])}};
    }
    RW_CHECK(first_error.empty(), Input, "writing Fashion-MNIST images failed: ", first_error);
    report_progress(progress, {"import", end, total, ""});
  }
  FashionMnistResult r;
  r.images = total;
  r.manifest = (fs::path(opt.out) / "manifest.csv").string();
  io::write_manifest(r.manifest, m);
  return r;
}

}  // namespace rw::data
