// `rewind data crop-faces`: every face OpenCV's Haar detector finds in a set of photos, cropped to
// a square image of its own, with a manifest (one identity per face: group photos hold several people).
#include <torch/torch.h>

#include <filesystem>

#include "rewind/core/error.h"
#include "rewind/data/datasets.h"
#include "rewind/io/face_crop.h"
#include "rewind/io/image.h"
#include "rewind/io/manifest.h"

namespace fs = std::filesystem;

namespace rw::data {

CropFacesResult crop_faces(const CropFacesOptions& o, const ProgressFn& progress) {
  RW_CHECK(!o.data.empty() && !o.out.empty(), Usage, "CropFacesOptions: data and out are required");
  RW_CHECK(o.size >= 16 && o.size <= 1024, Usage, "CropFacesOptions::size must be in [16, 1024], got ", o.size);
  RW_CHECK(o.max_faces >= 1, Usage, "CropFacesOptions::max_faces must be >= 1, got ", o.max_faces);
  auto src = open_data(o.data);
  io::FaceCropper cropper(io::CropMode::kDetect, o.size, 3, o.cascade);
  fs::create_directories(fs::path(o.out) / "faces");
  io::Manifest out;
  out.base_dir = o.out;
  CropFacesResult r;
  r.manifest = (fs::path(o.out) / "manifest.csv").string();
  for (size_t i = 0; i < src.entries.size(); ++i) {
    const auto& en = src.entries[i];
    const std::string path = src.resolve(i);
    report_progress(progress, {"crop faces", int64_t(i), int64_t(src.entries.size()), ""});
    std::vector<at::Tensor> faces;
    try {
      faces = cropper.load_faces(path);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kInput) throw;
      r.unreadable.push_back(e.message());  // one bad photo is reported, the rest go on
      continue;
    }
    ++r.photos;
    if (faces.empty()) {
      r.no_face.push_back(path);
      continue;
    }
    const std::string stem = fs::path(en.path).stem().string();
    for (size_t k = 0; k < faces.size() && int64_t(k) < o.max_faces; ++k) {
      const std::string rel = "faces/" + stem + "-" + std::to_string(k) + ".png";
      io::save_image(o.out + "/" + rel, faces[k]);
      out.entries.push_back({rel, en.identity + "-" + std::to_string(k), en.member, {}});
      ++r.faces;
    }
  }
  RW_CHECK(r.faces > 0, Input, "no face was found in ", o.data, " (", r.photos, " photos read",
           r.unreadable.empty() ? std::string() : ", " + std::to_string(r.unreadable.size()) + " unreadable",
           "); the detector wants frontal faces of at least a tenth of the image side");
  io::write_manifest(r.manifest, out);
  return r;
}

}  // namespace rw::data
