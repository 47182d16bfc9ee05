// rewind convert face-api | rewind embed
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "cli.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/face_crop.h"
#include "rewind/io/npy.h"
#include "rewind/models/face_resnet.h"
#include "rewind/models/models.h"

namespace fs = std::filesystem;

namespace rw::cli {

namespace {

int convert_face_api_cmd(const Args& args) {
  CommonOptions common;
  std::string from = models::default_face_api_dir(), out;
  po::options_description desc("convert face-api options");
  desc.add_options()
      ("from", opt(&from),
       "face-api's model/ folder (set up with: npm ci --prefix data-tools/face-api)")
      ("out", po::value(&out)->required(), "native embedder file to write");
  if (!parse_command("rewind convert face-api --out FILE [--from DIR]", args, desc, common)) return 0;
  RW_CHECK(!from.empty(), Usage, "face-api's model folder was not found: run `npm ci --prefix data-tools/face-api` "
           "in the repository, or pass --from DIR");
  models::convert_face_api(from, out);
  std::cout << "wrote " << out << " (dlib face ResNet, 128-d, from " << from << ")\n";
  return 0;
}

int embed_cmd(const Args& args) {
  CommonOptions common;
  std::string embedder, data, out, crop = "none";
  int64_t batch = 64;
  po::options_description desc("embed options");
  desc.add_options()
      ("embedder", po::value(&embedder)->required(), "embedder file (native or TorchScript)")
      ("data", po::value(&data)->required(), "manifest, folder with manifest.csv, or folder of images")
      ("out", po::value(&out)->required(), "output folder: embeddings.npy [N,d] (L2-normalised), items.csv, run.json")
      ("crop", opt(&crop),
       "none (whole image) | center (centred square) | detect (OpenCV Haar face detection)")
      ("batch", opt(&batch), "images per forward pass");
  if (!parse_command("rewind embed --embedder E --data MANIFEST|DIR --out DIR [options]", args, desc, common)) return 0;
  io::RunRecord record("embed");
  record.options() = {{"embedder", embedder}, {"data", data}, {"out", out}, {"crop", crop}, {"batch", batch}};
  io::ensure_dir(out);
  int64_t done = 0, no_face = 0;
  int64_t dim = 0;
  run_and_record(record, out + "/run.json", [&] {
    auto e = models::load_embedder(embedder);
    dim = e->dim();
    record.results()["embedder"] = e->describe();
    record.results()["embedder_id"] = e->id();
    auto m = data::open_data(data);
    auto emb = embed_manifest(*e, m, crop, batch, &record);
    RW_CHECK(emb.rows.size() > 0, Input, "no image of ", data, " could be embedded; see ", out, "/run.json for the reasons");
    std::string items = io::csv_line({"row", "path", "identity"});
    for (size_t r = 0; r < emb.rows.size(); ++r)
      items += io::csv_line({std::to_string(r), m.entries[emb.rows[r]].path, m.entries[emb.rows[r]].identity});
    done = int64_t(emb.rows.size());
    no_face = emb.no_face;
    io::write_npy(out + "/embeddings.npy", emb.embeddings);
    io::write_file_atomic(out + "/items.csv", items);
    record.mark("embed");
    record.results()["embedded"] = done;
    record.results()["dim"] = dim;
    record.results()["no_face_found"] = no_face;
    if (record.skipped()) log_warn(record.skipped(), " images skipped (listed in ", out, "/run.json)");
    if (no_face) log_warn(no_face, " images had no detectable face and were centre-cropped");
  });
  std::cout << "wrote " << done << " embeddings (" << dim << "-d) to " << out << "/embeddings.npy";
  if (record.skipped()) std::cout << "; " << record.skipped() << " images skipped";
  std::cout << "\n";
  return 0;
}

}  // namespace

int cmd_convert(const Args& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? std::cerr : std::cout)
        << "usage: rewind convert face-api --out FILE [--from DIR]\n\n"
           "  face-api   the dlib face ResNet (128-d) from the npm package @vladmandic/face-api\n";
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "face-api") return convert_face_api_cmd(Args(args.begin() + 1, args.end()));
  RW_FAIL(Usage, "unknown format '", args[0], "' for convert (try: face-api)");
}

int cmd_embed(const Args& args) { return embed_cmd(args); }

}  // namespace rw::cli
