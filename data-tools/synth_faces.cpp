// `rewind data synth-faces`: renders synthetic identities to PNGs + manifest + contact sheet.
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <cmath>
#include <cstdio>

#include "rewind/core/error.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"
#include "synth_render.h"

namespace fs = std::filesystem;

namespace rw::data {

namespace {
constexpr int kChunk = 64;           // images rendered between progress reports
constexpr int kSheetMaxPerRow = 8;   // images of one identity shown on the contact sheet

cv::Mat render_bgr(uint64_t seed, int identity, int index, int size) {
  return render_face(sample_traits(seed, identity), sample_nuisance(seed, identity, index), size);
}

void write_png(const std::string& path, const cv::Mat& img) {
  io::write_via_temp(path, [&](const std::string& tmp) { return cv::imwrite(tmp, img); });
}

// One row per identity (label + up to kSheetMaxPerRow thumbnails); rows stacked in blocks that
// sit side by side so that a thousand identities still make a roughly square sheet.
std::string write_contact_sheet(const SynthFacesOptions& opt) {
  const int n = opt.identities, per = std::min(opt.per_identity, kSheetMaxPerRow);
  const int thumb = n <= 64 ? std::min(opt.size, 96) : std::min(opt.size, 32);
  const int label_w = thumb <= 32 ? 34 : 56, gap = 2, block_gap = 10;
  const int row_w = label_w + per * (thumb + gap), row_h = thumb + gap;
  int rows_per_block = n;
  if (n > 32) {
    double side = std::sqrt(double(n) * row_w * row_h);
    rows_per_block = std::max(8, int(std::ceil(side / row_h)));
  }
  const int blocks = (n + rows_per_block - 1) / rows_per_block;
  const int rows_used = std::min(n, rows_per_block);
  cv::Mat sheet(rows_used * row_h + gap, blocks * (row_w + block_gap), CV_8UC3, cv::Scalar(255, 255, 255));
  const double font_scale = thumb <= 32 ? 0.7 : 1.0;
  for (int i = 0; i < n; ++i) {
    int id = opt.first_identity + i;
    int bx = (i / rows_per_block) * (row_w + block_gap), by = (i % rows_per_block) * row_h + gap;
    cv::putText(sheet, std::to_string(id), cv::Point(bx + 2, by + thumb / 2 + 5),
                cv::FONT_HERSHEY_PLAIN, font_scale, cv::Scalar(60, 60, 60), 1, cv::LINE_AA);
    for (int k = 0; k < per; ++k) {
      cv::Mat img = render_bgr(opt.seed, id, k, opt.size), small;
      if (thumb != opt.size) cv::resize(img, small, cv::Size(thumb, thumb), 0, 0, cv::INTER_AREA);
      else small = img;
      small.copyTo(sheet(cv::Rect(bx + label_w + k * (thumb + gap), by, thumb, thumb)));
    }
  }
  std::string path = (fs::path(opt.out) / "contact-sheet.png").string();
  write_png(path, sheet);
  return path;
}
}  // namespace

std::string synth_identity_name(int identity) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "id%05d", identity);
  return buf;
}

std::vector<uint8_t> render_synth_face_rgb(uint64_t seed, int identity, int index, int size) {
  cv::Mat bgr = render_bgr(seed, identity, index, size), rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return std::vector<uint8_t>(rgb.data, rgb.data + rgb.total() * 3);
}

SynthFacesResult synth_faces(const SynthFacesOptions& opt, const ProgressFn& progress) {
  RW_CHECK(!opt.out.empty(), Usage, "synth-faces needs --out DIR");
  RW_CHECK(opt.identities >= 1 && opt.identities <= 1000000, Usage, "--identities must be in 1..1000000, got ", opt.identities);
  RW_CHECK(opt.per_identity >= 1 && opt.per_identity <= 10000, Usage, "--per-identity must be in 1..10000, got ", opt.per_identity);
  RW_CHECK(opt.size >= 16 && opt.size <= 1024, Usage, "--size must be in 16..1024, got ", opt.size);
  RW_CHECK(opt.first_identity >= 0, Usage, "--first-identity must be >= 0");
  io::ensure_dir(opt.out);

  const int64_t total = int64_t(opt.identities) * opt.per_identity;
  io::Manifest manifest;
  manifest.base_dir = opt.out;
  manifest.entries.resize(total);
  std::vector<char> done(total, 0);

  auto write_manifest_of_done = [&]() {
    io::Manifest m;
    for (int64_t i = 0; i < total; ++i)
      if (done[i]) m.entries.push_back(manifest.entries[i]);
    std::string path = (fs::path(opt.out) / "manifest.csv").string();
    if (!m.entries.empty()) io::write_manifest(path, m);
    return path;
  };

  SynthFacesResult result;
  for (int64_t start = 0; start < total; start += kChunk) {
    const int64_t end = std::min(total, start + kChunk);
    std::string first_error;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = start; i < end; ++i) {
      int id = opt.first_identity + int(i / opt.per_identity), k = int(i % opt.per_identity);
      std::string name = synth_identity_name(id);
      std::string rel = "faces/" + name + "/" + std::to_string(k) + ".png";
      try {
        write_png((fs::path(opt.out) / rel).string(), render_bgr(opt.seed, id, k, opt.size));
        manifest.entries[i] = {rel, name, -1, {}};
        done[i] = 1;
      } catch (const std::exception& e) {
#pragma omp critical
        if (first_error.empty()) first_error = e.what();
      }
    }
    if (!first_error.empty()) {
      write_manifest_of_done();
      RW_FAIL(Input, "writing synthetic faces under '", opt.out, "' failed: ", first_error);
    }
    result.images = end;
    try {
      report_progress(progress, {"render", end, total, ""});
    } catch (const Error&) {
      write_manifest_of_done();
      throw;
    }
  }
  result.manifest = write_manifest_of_done();
  if (opt.contact_sheet) result.contact_sheet = write_contact_sheet(opt);
  return result;
}

}  // namespace rw::data
