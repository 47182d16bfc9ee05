// `rewind data crop-faces`: every face dlib's HOG detector (aligned as dlib's face network wants)
// or OpenCV's Haar detector finds in a set of photos, cropped to an image of its own, with a
// manifest (one identity per face: group photos hold several people) that records each face's box.
#include <torch/torch.h>

#include <filesystem>
#include <set>

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
  CropFacesResult r;
  const auto mode = io::parse_crop_mode(o.crop.empty() ? (io::dlib_available() ? "dlib" : "detect") : o.crop);
  RW_CHECK(mode == io::CropMode::kDetect || mode == io::CropMode::kDlib, Usage,
           "crop-faces --crop must be dlib (align) or detect, got '", o.crop, "'");
  io::FaceCropper cropper(mode, o.size, 3, o.cascade);
  r.crop = mode == io::CropMode::kDlib ? "dlib" : "detect";
  fs::create_directories(fs::path(o.out) / "faces");
  io::Manifest out;
  out.base_dir = o.out;
  out.extra_columns = {"photo", "face", "box_x", "box_y", "box_w", "box_h", "score"};
  r.manifest = (fs::path(o.out) / "manifest.csv").string();
  std::set<std::string> stems;
  for (size_t i = 0; i < src.entries.size(); ++i) {
    const auto& en = src.entries[i];
    const std::string path = src.resolve(i);
    report_progress(progress, {"crop faces", int64_t(i), int64_t(src.entries.size()), ""});
    std::vector<at::Tensor> faces;
    std::vector<io::FaceBox> boxes;
    try {
      faces = cropper.load_faces(path, &boxes);
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
    // photos of one name in two folders must not overwrite each other's faces
    std::string stem = fs::path(en.path).stem().string();
    if (!stems.insert(stem).second) stem += "~" + std::to_string(i);
    for (size_t k = 0; k < faces.size() && int64_t(k) < o.max_faces; ++k) {
      const std::string rel = "faces/" + stem + "-" + std::to_string(k) + ".png";
      io::save_image(o.out + "/" + rel, faces[k]);
      const auto& b = boxes[k];
      out.entries.push_back({rel, en.identity + "-" + std::to_string(k), en.member,
                             {en.path, std::to_string(k), std::to_string(b.x), std::to_string(b.y), std::to_string(b.width),
                              std::to_string(b.height), std::to_string(b.score)}});
      ++r.faces;
    }
  }
  RW_CHECK(r.photos > 0, Input, "none of the ", r.unreadable.size(), " photos of ", o.data, " could be read; first: ",
           r.unreadable.empty() ? std::string("(none listed)") : r.unreadable.front());
  RW_CHECK(r.faces > 0, Input, "no face was found in ", o.data, " (", r.photos, " photos read",
           r.unreadable.empty() ? std::string() : ", " + std::to_string(r.unreadable.size()) + " unreadable",
           "); the detectors want frontal faces (dlib: at least ~40 px; Haar: a tenth of the image side)");
  io::write_manifest(r.manifest, out);
  // every face at a glance, in manifest order (8 a row), to check the crops by eye
  std::vector<at::Tensor> thumbs;
  for (const auto& en : out.entries) thumbs.push_back(io::load_image(o.out + "/" + en.path, {3, 96, io::ResizeMode::kStretch}));
  r.contact_sheet = (fs::path(o.out) / "contact-sheet.png").string();
  io::save_image(r.contact_sheet, io::make_grid(torch::stack(thumbs), 8));
  return r;
}

}  // namespace rw::data
