// rewind data synth-faces | fashion-mnist | import
#include <filesystem>
#include <iostream>

#include "cli.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"

namespace fs = std::filesystem;

namespace rw::cli {

namespace {

int synth_faces_cmd(const Args& args) {
  data::SynthFacesOptions o;
  CommonOptions common;
  common.runs_models = false;
  bool no_sheet = false;
  po::options_description desc("synth-faces options");
  desc.add_options()
      ("out", po::value(&o.out)->required(), "output folder (faces/, manifest.csv, contact-sheet.png, run.json)")
      ("identities", opt(&o.identities), "number of people")
      ("per-identity", opt(&o.per_identity), "images per person")
      ("size", opt(&o.size), "square image side in pixels (16..1024)")
      ("seed", opt(&o.seed), "identity k under seed s always looks the same")
      ("first-identity", opt(&o.first_identity),
       "render identities [first, first+identities): disjoint people from one seed")
      ("no-contact-sheet", po::bool_switch(&no_sheet), "skip contact-sheet.png");
  if (!parse_command("rewind data synth-faces --out DIR [options]", args, desc, common)) return 0;
  o.contact_sheet = !no_sheet;

  io::RunRecord record("data synth-faces");
  record.options() = {{"out", o.out}, {"identities", o.identities}, {"per_identity", o.per_identity},
                      {"size", o.size}, {"seed", o.seed}, {"first_identity", o.first_identity},
                      {"contact_sheet", o.contact_sheet}, {"threads", common.threads}};
  record.set_seed(o.seed);
  io::ensure_dir(o.out);
  data::SynthFacesResult r;
  run_and_record(record, o.out + "/run.json", [&] {
    r = data::synth_faces(o, progress_fn());
    record.mark("render");
    record.results() = {{"images", r.images}, {"identities", o.identities},
                        {"manifest", "manifest.csv"}, {"contact_sheet", o.contact_sheet ? "contact-sheet.png" : ""}};
  });
  std::cout << "wrote " << r.images << " images of " << o.identities << " identities to " << o.out
            << "\n  manifest:      " << r.manifest << "\n";
  if (!r.contact_sheet.empty()) std::cout << "  contact sheet: " << r.contact_sheet << "\n";
  return 0;
}

int fashion_mnist_cmd(const Args& args) {
  data::FashionMnistOptions o;
  CommonOptions common;
  common.runs_models = false;
  po::options_description desc("fashion-mnist options");
  desc.add_options()
      ("out", po::value(&o.out)->required(), "output folder (images/<split>/, manifest.csv, run.json)")
      ("split", opt(&o.split), "train (60,000 images) or test (10,000)")
      ("source", opt(&o.source), "folder with the IDX files (Debian: dataset-fashion-mnist)")
      ("limit", opt(&o.limit), "import only the first N images; 0 = all");
  if (!parse_command("rewind data fashion-mnist --out DIR [options]", args, desc, common)) return 0;
  io::RunRecord record("data fashion-mnist");
  record.options() = {{"out", o.out}, {"split", o.split}, {"source", o.source}, {"limit", o.limit}};
  io::ensure_dir(o.out);
  data::FashionMnistResult r;
  run_and_record(record, o.out + "/run.json", [&] {
    r = data::import_fashion_mnist(o, progress_fn());
    record.mark("import");
    record.results() = {{"images", r.images}, {"manifest", "manifest.csv"}};
  });
  std::cout << "wrote " << r.images << " Fashion-MNIST " << o.split << " images to " << o.out
            << "\n  manifest: " << r.manifest << "\n";
  return 0;
}

int import_cmd(const Args& args) {
  data::ImportOptions o;
  CommonOptions common;
  common.runs_models = false;
  po::options_description desc("import options");
  desc.add_options()
      ("root", po::value(&o.root)->required(), "dataset folder")
      ("layout", opt(&o.layout),
       "folder: ROOT/<identity>/<image> (LFW, VGGFace2, ImageFolder); celeba: identity_CelebA.txt + "
       "img_align_celeba/; flat: ROOT/<image>, one identity per file")
      ("out", po::value(&o.out)->required(), "manifest CSV to write (paths are stored relative to it)")
      ("limit", opt(&o.limit), "first N images in sorted order; 0 = all");
  if (!parse_command("rewind data import --root DIR --out manifest.csv [options]", args, desc, common)) return 0;
  auto r = data::import_dataset(o);
  std::cout << "wrote " << o.out << ": " << r.images << " images of " << r.identities << " identities";
  if (r.skipped) std::cout << " (" << r.skipped << " files skipped: not images or missing)";
  std::cout << "\n";
  return 0;
}

int crop_faces_cmd(const Args& args) {
  data::CropFacesOptions o;
  CommonOptions common;
  common.runs_models = false;
  po::options_description desc("crop-faces options");
  desc.add_options()
      ("data", po::value(&o.data)->required(), "photos: manifest, folder with manifest.csv, or image folder")
      ("out", po::value(&o.out)->required(), "output folder: faces/<photo>-<k>.png and manifest.csv (one identity per face)")
      ("size", opt(&o.size), "crop side in pixels (150 = the face-api descriptor's input)")
      ("max-faces", opt(&o.max_faces), "at most this many faces per photo, largest first")
      ("crop", po::value(&o.crop), "dlib (alias align: dlib's HOG detector and alignment, the default when built with "
       "dlib) | detect (OpenCV Haar, a widened square)")
      ("cascade", po::value(&o.cascade), "Haar cascade XML for --crop detect (default: Debian opencv-data's frontal face)");
  if (!parse_command("rewind data crop-faces --data PHOTOS --out DIR [options]", args, desc, common)) return 0;
  auto r = data::crop_faces(o, progress_fn());
  progress_done();
  std::cout << "wrote " << r.manifest << ": " << r.faces << " faces from " << r.photos << " photos (" << r.crop << ")";
  if (!r.no_face.empty()) std::cout << "; no face found in " << r.no_face.size() << " (first: " << r.no_face.front() << ")";
  std::cout << "\n";
  for (const auto& u : r.unreadable) std::cerr << "skipped: " << u << "\n";
  return 0;
}

const std::vector<Command>& data_commands() {
  static const std::vector<Command> cmds = {
      {"synth-faces", "render synthetic identities (the embedded default data set)", synth_faces_cmd},
      {"fashion-mnist", "import Fashion-MNIST from Debian's dataset-fashion-mnist", fashion_mnist_cmd},
      {"import", "make a manifest for images on disk (folder / celeba / flat layouts)", import_cmd},
      {"crop-faces", "one crop per face in a set of photos (dlib's detector and alignment, or OpenCV Haar)", crop_faces_cmd},
  };
  return cmds;
}

}  // namespace

int cmd_data(const Args& args) {
  const auto& cmds = data_commands();
  auto usage = [&](std::ostream& os) {
    os << "usage: rewind data <command> [options]\n\ncommands:\n";
    for (const auto& c : cmds) os << "  " << c.name << std::string(16 - c.name.size(), ' ') << c.summary << "\n";
    os << "\n'rewind data <command> --help' shows each command's options.\n";
  };
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    usage(args.empty() ? std::cerr : std::cout);
    return args.empty() ? 2 : 0;
  }
  for (const auto& c : cmds)
    if (c.name == args[0]) return c.run(Args(args.begin() + 1, args.end()));
  RW_FAIL(Usage, "unknown data command '", args[0], "' (try: synth-faces, fashion-mnist, import, crop-faces)");
}

}  // namespace rw::cli
