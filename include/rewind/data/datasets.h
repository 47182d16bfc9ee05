// Dataset makers and importers behind `rewind data ...`. Each writes image files (where needed)
// and a manifest (see rewind/io/manifest.h) that every other command reads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rewind/core/progress.h"
#include "rewind/io/manifest.h"

namespace rw::data {

// ---------------------------------------------------------------------------------------------
// Synthetic identities: a deterministic renderer of cartoon faces with per-identity traits (face
// shape, skin tone, eyes, brows, nose, mouth, hair, accessories) and per-image nuisance (pose,
// scale, lighting, expression, background, noise). Ground truth for membership without any
// download. Output: DIR/faces/<identity>/<k>.png, DIR/manifest.csv, DIR/contact-sheet.png.
// Same options (seed included) => same bytes.
struct SynthFacesOptions {
  std::string out;        ///< output folder (required)
  int identities = 64;    ///< number of people
  int per_identity = 8;   ///< images per person
  int size = 64;          ///< square image side in pixels (16..1024)
  uint64_t seed = 1;      ///< identity k under seed s always looks the same
  int first_identity = 0; ///< render identities [first, first+identities): disjoint sets from one seed
  bool contact_sheet = true;  ///< write contact-sheet.png (one row per identity)
};

struct SynthFacesResult {
  int64_t images = 0;
  std::string manifest;       ///< path of manifest.csv
  std::string contact_sheet;  ///< path of contact-sheet.png ("" when not written)
};

SynthFacesResult synth_faces(const SynthFacesOptions& opt, const ProgressFn& progress = {});

/// One rendered image as RGB bytes (size*size*3, row-major), deterministic in its arguments.
std::vector<uint8_t> render_synth_face_rgb(uint64_t seed, int identity, int index, int size);

/// Identity name used in manifests: "id00042".
std::string synth_identity_name(int identity);

// ---------------------------------------------------------------------------------------------
// Fashion-MNIST from Debian's `dataset-fashion-mnist` (IDX files, gzip or raw). Identity = image
// index (each image its own "person": the unit of membership), the class label kept as a column.
// Output: DIR/images/<split>/<index>.png and DIR/manifest.csv (path,identity,label).
struct FashionMnistOptions {
  std::string out;                                          ///< output folder (required)
  std::string split = "train";                              ///< train (60,000) | test (10,000)
  std::string source = "/usr/share/datasets/fashion-mnist"; ///< folder with the IDX files
  int64_t limit = 0;                                        ///< first N images only; 0 = all
};

struct FashionMnistResult {
  int64_t images = 0;
  std::string manifest;
};

FashionMnistResult import_fashion_mnist(const FashionMnistOptions& opt, const ProgressFn& progress = {});

/// Reads an IDX file (optionally .gz) into dims + bytes. Error{kInput} names the file on a bad magic
/// or a truncated body.
struct IdxArray {
  std::vector<int> dims;
  std::vector<uint8_t> data;
};
IdxArray read_idx(const std::string& path);

// ---------------------------------------------------------------------------------------------
// Existing image collections on disk -> manifest (no images are copied).
//   folder: ROOT/<identity>/<image>   (LFW, VGGFace2, ImageFolder)
//   celeba: ROOT/identity_CelebA.txt ("<file> <identity>" per line), images in ROOT/img_align_celeba/
//           or ROOT/ (whichever holds them)
//   flat:   ROOT/<image>, identity = file name without extension (one image per identity)
struct ImportOptions {
  std::string root;              ///< dataset folder (required)
  std::string layout = "folder"; ///< folder | celeba | flat
  std::string out;               ///< manifest path to write (required)
  int64_t limit = 0;             ///< first N images (sorted order); 0 = all
};

struct ImportResult {
  int64_t images = 0;
  int64_t identities = 0;
  int64_t skipped = 0;  ///< listed but missing files (celeba) or non-image files
};

ImportResult import_dataset(const ImportOptions& opt);

// ---------------------------------------------------------------------------------------------
// Real photos -> one crop per face (dlib: HOG detector + dlib's alignment; detect: OpenCV's Haar
// detector, a widened square), with a manifest: OUT/faces/<photo>-<k>.png, identity
// "<photo's identity>-<k>" (faces in a group photo are different people; k = 0 is the largest),
// and columns photo, face, box_x, box_y, box_w, box_h, score (the detector's box in the photo).
// Unreadable photos are skipped and reported.
struct CropFacesOptions {
  std::string data;       ///< photos: manifest, folder with manifest.csv, or image folder (required)
  std::string out;        ///< output folder (required)
  int size = 150;         ///< crop side in pixels (150: the face-api descriptor's input)
  int64_t max_faces = 16; ///< at most this many faces per photo (largest first)
  std::string cascade;    ///< Haar cascade XML; "" = Debian's haarcascade_frontalface_default.xml
  std::string crop;       ///< dlib | detect; "" = dlib when this build has it, else detect
};

struct CropFacesResult {
  std::string manifest;
  std::string crop;       ///< the detector used: dlib | detect
  std::string contact_sheet;  ///< OUT/contact-sheet.png: every face, 8 a row, in manifest order
  int64_t photos = 0, faces = 0;
  std::vector<std::string> no_face;  ///< photos read in which no face was found
  std::vector<std::string> unreadable;  ///< photos that could not be read: the error, naming the file
};

CropFacesResult crop_faces(const CropFacesOptions& o, const ProgressFn& progress = {});

/// What every `--data MANIFEST|DIR` / `--targets MANIFEST|DIR` option reads: a manifest file; a
/// folder holding manifest.csv; or a folder of images (one subfolder per identity when there are
/// subfolders, else one identity per file). Entry paths resolve through Manifest::resolve.
io::Manifest open_data(const std::string& manifest_or_dir);

/// True for file names with an image extension OpenCV reads.
bool has_image_extension(const std::string& name);

}  // namespace rw::data
