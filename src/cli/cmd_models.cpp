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
  common.runs_models = false;
  const auto search = models::find_face_api_dir();
  std::string from = search.found, out;
  po::options_description desc("convert face-api options");
  desc.add_options()
      ("from", opt(&from),
       "face-api's model/ folder (set up with: npm ci --prefix data-tools/face-api)")
      ("out", po::value(&out)->required(), "native embedder file to write");
  if (!parse_command("rewind convert face-api --out FILE [--from DIR]", args, desc, common)) return 0;
  std::string where;
  for (size_t i = 0; i < search.searched.size() && i < 4; ++i) where += (i ? ", " : "") + search.searched[i];
  if (search.searched.size() > 4) where += " and " + std::to_string(search.searched.size() - 4) + " parents";
  RW_CHECK(!from.empty(), Input, "face-api's model folder (face_recognition_model-weights_manifest.json) was not found; "
           "searched ", where, ". Run `npm ci --prefix data-tools/face-api` in rewind's source tree, or pass --from DIR");
  models::convert_face_api(from, out);
  std::cout << "wrote " << out << " (dlib face ResNet, 128-d, from " << from << ")\n";
  return 0;
}

struct EmbedFlags {
  std::string embedder, data, out, crop = "auto";
  int64_t batch = 128;
};

/// items.csv of embed: position, path, identity, and the manifest row (what a merge orders by).
const io::CsvRow kEmbedItemsHeader{"row", "path", "identity", "source_row"};

/// Embeds the rows of `shard` into `dir` (embeddings.npy, items.csv, run.json).
void embed_part(const EmbedFlags& f, io::RunRecord& record, const std::string& dir, const dist::Shard& shard) {
  io::ensure_dir(dir);
  run_and_record(record, dir + "/run.json", [&] {
    auto e = models::load_embedder(f.embedder);
    record.results()["embedder"] = e->describe();
    record.results()["embedder_id"] = e->id();
    auto m = data::open_data(f.data);
    auto emb = embed_manifest(*e, m, f.crop, f.batch, &record, "embed", shard.blocks_of(f.batch));
    RW_CHECK(!emb.rows.empty() || !shard.whole(), Input, "no image of ", f.data, " could be embedded; see ", dir,
             "/run.json for the reasons");
    std::string items = io::csv_line(kEmbedItemsHeader);
    for (size_t r = 0; r < emb.rows.size(); ++r)
      items += io::csv_line({std::to_string(r), m.entries[emb.rows[r]].path, m.entries[emb.rows[r]].identity,
                             std::to_string(emb.rows[r])});
    io::write_npy(dir + "/embeddings.npy", emb.rows.empty() ? torch::zeros({0, e->dim()}) : emb.embeddings);
    io::write_file_atomic(dir + "/items.csv", items);
    if (!shard.whole()) record_part_files(record, dir, {"embeddings.npy", "items.csv"});
    record.mark("embed");
    record.results()["embedded"] = emb.rows.size();
    record.results()["dim"] = e->dim();
    record.results()["no_face_found"] = emb.no_face;
    if (record.skipped()) log_warn(record.skipped(), " images skipped (listed in ", dir, "/run.json)");
    if (emb.no_face) log_warn(emb.no_face, " images had no detectable face and were skipped (listed in run.json)");
  });
}

/// The parts' items in manifest order, renumbered, and their embeddings in the same order.
void embed_merge(const EmbedFlags& f, io::RunRecord& record, const std::vector<dist::Part>& parts) {
  run_and_record(record, f.out + "/run.json", [&] {
    io::CsvRow header;
    auto merged = merge_csv_by(parts, "items.csv", "source_row", &header);
    RW_CHECK(header == kEmbedItemsHeader, Input, "--merge: ", parts[0].dir, "/items.csv is not an embed part");
    std::vector<at::Tensor> embs;
    for (const auto& p : parts) embs.push_back(io::read_npy(p.dir + "/embeddings.npy"));
    std::vector<at::Tensor> rows;
    std::string items = io::csv_line(header);
    for (size_t i = 0; i < merged.rows.size(); ++i) {
      const auto [p, r] = merged.from[i];
      RW_CHECK(int64_t(r) < embs[p].size(0), Input, "--merge: ", parts[p].dir, "/embeddings.npy has fewer rows than its items.csv");
      rows.push_back(embs[p][int64_t(r)]);
      auto cells = merged.rows[i];
      cells[0] = std::to_string(i);
      items += io::csv_line(cells);
    }
    RW_CHECK(!rows.empty(), Input, "no image of ", f.data, " could be embedded; see the parts' run.json for the reasons");
    io::write_npy(f.out + "/embeddings.npy", torch::stack(rows));
    io::write_file_atomic(f.out + "/items.csv", items);
    record.results()["embedded"] = rows.size();
    record.results()["dim"] = rows[0].size(0);
    copy_part_results(record, parts, {"embedder", "embedder_id"});
  });
}

int embed_cmd(const Args& args) {
  CommonOptions common;
  EmbedFlags f;
  ShardFlags sf;
  po::options_description desc("embed options");
  desc.add_options()
      ("embedder", po::value(&f.embedder)->required(), "embedder file (native or TorchScript)")
      ("data", po::value(&f.data)->required(), "manifest, folder with manifest.csv, or folder of images")
      ("out", po::value(&f.out)->required(),
       "output folder: embeddings.npy [N,d] (L2-normalised), items.csv (row, path, identity, source_row), run.json")
      ("crop", opt(&f.crop), kCropHelp)
      ("embed-batch", opt(&f.batch), "images per embedder pass");
  add_shard_flags(desc, sf);
  if (!parse_command("rewind embed --embedder E --data MANIFEST|DIR --out DIR [options]", args, desc, common)) return 0;
  io::RunRecord record("embed");
  record.options() = {{"embedder", f.embedder}, {"data", f.data}, {"out", f.out}, {"crop", f.crop}, {"embed_batch", f.batch}};
  if (sharded(sf)) record.options()["data_rows_hash"] = data_rows_hash(f.data);
  auto ran = run_sharded(sf, {"embed", f.out, &record,
                              [&](const std::string& dir, const dist::Shard& s) { embed_part(f, record, dir, s); },
                              [&](const std::vector<dist::Part>& parts, io::RunRecord& merged) {
                                embed_merge(f, merged, parts);
                              }});
  const std::string where = ran.merged || ran.shard.whole() ? f.out : dist::part_dir(f.out, ran.shard);
  std::cout << (ran.merged ? "merged " + std::to_string(ran.parts) + " parts: " : std::string()) << "wrote "
            << record.results().value("embedded", 0) << " embeddings (" << record.results().value("dim", 0) << "-d) to "
            << where << "/embeddings.npy";
  if (record.skipped()) std::cout << "; " << record.skipped() << " images skipped";
  std::cout << "\n";
  return 0;
}

}  // namespace

int cmd_convert(const Args& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? std::cerr : std::cout)
        << "usage: rewind convert face-api --out FILE [--from DIR]\n\n"
           "  face-api   the dlib face ResNet (128-d) from the npm package @vladmandic/face-api\n\n"
           "'rewind convert face-api --help' shows its options.\n";
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "face-api") return convert_face_api_cmd(Args(args.begin() + 1, args.end()));
  RW_FAIL(Usage, "unknown format '", args[0], "' for convert (try: face-api)");
}

int cmd_embed(const Args& args) { return embed_cmd(args); }

}  // namespace rw::cli
