// rewind invert | rewind generate
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "rewind/io/run_record.h"
#include "rewind/models/sampling.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"
#include "rewind/data/datasets.h"
#include "rewind/ganinv/invert.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/npy.h"
#include "rewind/data/image_stream.h"
#include "rewind/mia/metrics.h"
#include "rewind/report/html.h"

namespace fs = std::filesystem;

namespace rw::cli {

namespace {

std::string fmt6(double v) { return report::fmt_g(v, 6); }

struct InvertPaths {
  std::string generator, targets, out, embedder, loss = "mse=1", feature_net, feature_layer;
  bool resume = false;
  ShardFlags shard;
};

void bind(po::options_description& desc, InvertPaths& p, ganinv::InvertOptions& o) {
  desc.add_options()
      ("generator", po::value(&p.generator)->required(), "generator file (native or TorchScript)")
      ("targets", po::value(&p.targets)->required(), "target images: manifest, folder with manifest.csv, or folder of images")
      ("out", po::value(&p.out)->required(), "output folder: latents.npy, targets.csv, recon/, pairs.png, run.json")
      ("restarts", opt(&o.restarts), "random starts per target (best kept)")
      ("steps", opt(&o.loop.steps), "optimiser steps")
      ("optimizer", opt(&o.loop.optimizer), "adam | lbfgs")
      ("lr", opt(&o.loop.lr), "learning rate (L-BFGS: initial step, try 1)")
      ("schedule", opt(&o.loop.schedule), "cosine | constant (Adam)")
      ("patience", opt(&o.loop.patience),
       "stop a chunk early after N steps without relative improvement > 1e-4; 0 = never")
      ("loss", opt(&p.loss),
       "weighted terms: mse, l1, ssim (1-SSIM), identity (1-cos, needs --embedder), prior ((|z|^2-D)/D)^2, "
       "feature (perceptual distance at --feature-layer of --feature-net)")
      ("embedder", po::value(&p.embedder), "embedder for the identity term")
      ("feature-net", po::value(&p.feature_net), "network for the feature term: the face descriptor (convert face-api), "
       "a classifier, or a discriminator (train gan writes G.disc)")
      ("feature-layer", po::value(&p.feature_layer), "its layer: conv32 | conv64 | conv128 | conv256 | conv256_out for "
       "the face descriptor, block1 | block2 | ... for a discriminator, a split point for a classifier")
      ("scales", opt(&o.scales), "pixel loss averaged over this many resolutions; 0 = auto (3 above 128 px, else 1)")
      ("latent", opt(&o.latent), "z | w | w+ (w: generators with mapping/synthesis; w+: one w per layer, needs num_ws)")
      ("w-start", opt(&o.w_start), "w, w+: mapped (each restart at mapping(z)) | mean (restart 0 at the mean W)")
      ("batch", opt(&o.batch), "max targets x restarts optimised at once; 0 = auto (64 on CPU; on CUDA the most that "
       "fit the free memory, measured by a trial step)")
      ("precision", opt(&o.precision), "the generator's arithmetic during the search: fp32 | bf16 | fp16 (CUDA only); "
       "on the CPU bf16 pays off for compiled generators (native ones, plain TorchScript DCGANs); reconstructions and "
       "errors reported in fp32")
      ("seed", opt(&o.seed), "seed (restart r of target i is seeded by (seed, i, r))")
      ("refine", opt(&o.refine),
       "none | pixel | feature:LAYER: after the latent stage, fit a bounded residual on the pixels, or on the "
       "generator's activations at LAYER (native generators: fc, block1, ...), to show what G cannot explain")
      ("refine-steps", opt(&o.refine_steps), "steps of the refinement stage")
      ("resume", po::bool_switch(&p.resume), "skip targets finished by an interrupted run in --out");
  add_shard_flags(desc, p.shard);
}

/// Finished segments of an interrupted run (OUT/.partial), or a fresh .partial folder.
struct Segments {
  std::string dir;
  std::vector<std::string> csv;
  std::vector<at::Tensor> latents;
  int64_t done = 0;  ///< targets finished
};

/// Columns of a segment row (targets.csv without its header).
size_t segment_columns(const ganinv::InvertOptions& o) { return 4 + ganinv::term_names().size() + 2 + (o.refine != "none") + 1; }

/// A finished segment is kept only when its rows are the next target positions in order, each
/// complete and numeric, and its latents hold as many rows; "" when it is, else why not.
std::string check_segment(const std::string& csv, const at::Tensor& latents, int64_t first, size_t columns) {
  std::vector<io::CsvRow> rows;
  try {
    rows = io::parse_csv(csv);
  } catch (const Error& e) {
    return e.message();
  }
  if (rows.empty() || int64_t(rows.size()) != latents.size(0))
    return std::to_string(rows.size()) + " rows but " + std::to_string(latents.size(0)) + " latents";
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].size() != columns) return "row " + std::to_string(r + 1) + " has " + std::to_string(rows[r].size()) + " fields";
    if (rows[r][0] != std::to_string(first + int64_t(r))) return "row " + std::to_string(r + 1) + " is not target " + std::to_string(first + int64_t(r));
    for (size_t c = 3; c < columns; ++c) {
      char* end = nullptr;
      const double v = std::strtod(rows[r][c].c_str(), &end);
      if (rows[r][c].empty() || *end != 0 || !std::isfinite(v)) return "row " + std::to_string(r + 1) + " has a non-number '" + rows[r][c] + "'";
    }
  }
  return "";
}

/// What differs between two options.json texts: line 1 the options, line 2 the input files' hashes,
/// line 3 the feature network.
std::string resume_difference(const std::string& have, const std::string& want) {
  std::istringstream a(have), b(want);
  std::string la, lb;
  for (int line = 0; std::getline(b, lb); ++line) {
    if (!std::getline(a, la)) la.clear();
    if (la == lb) continue;
    if (line == 2) return "the feature network changed";
    try {
      auto d = io::describe_difference(nlohmann::json::parse(la), nlohmann::json::parse(lb), line == 0);
      if (!d.empty()) return line == 0 ? d : d + " (an input file's content)";
    } catch (const nlohmann::json::exception&) {
    }
    break;
  }
  return "its record of them differs";
}

Segments open_segments(const std::string& out, const std::string& opts_dump, bool resume, size_t columns) {
  Segments s;
  s.dir = out + "/.partial";
  if (resume && fs::exists(s.dir + "/options.json")) {
    const std::string have = io::read_file(s.dir + "/options.json");
    RW_CHECK(have == opts_dump, Usage, "--resume: ", out, " was started with other options or other inputs (",
             resume_difference(have, opts_dump), "); rerun with the same ones or without --resume");
    for (int64_t k = 0;; ++k) {
      std::string base = s.dir + "/seg-" + std::to_string(k);
      if (!fs::exists(base + ".csv") || !fs::exists(base + ".npy")) break;
      std::string csv = io::read_file(base + ".csv"), why;
      at::Tensor lat;
      try {
        lat = io::read_npy(base + ".npy");
        why = lat.dim() >= 2 ? check_segment(csv, lat, s.done, columns) : "latents are not [n, ...]";
      } catch (const Error& e) {
        why = e.message();
      }
      if (!why.empty()) {  // damaged: redo it and everything after it
        log_warn(base, " is damaged (", why, "); redoing the targets from ", s.done);
        for (int64_t j = k;; ++j) {
          const std::string b = s.dir + "/seg-" + std::to_string(j);
          if (!fs::exists(b + ".csv") && !fs::exists(b + ".npy")) break;
          fs::remove(b + ".csv");
          fs::remove(b + ".npy");
        }
        break;
      }
      s.csv.push_back(csv);
      s.latents.push_back(lat);
      s.done += lat.size(0);
    }
    log_info("resuming: ", s.done, " targets already done");
  } else {
    fs::remove_all(s.dir);
    io::ensure_dir(s.dir);
    io::write_file_atomic(s.dir + "/options.json", opts_dump);
  }
  return s;
}

/// What the finished segments depend on besides the options: the files' contents and the targets' order.
std::string inputs_fingerprint(const InvertPaths& p, const io::Manifest& m, const models::Embedder* emb) {
  std::string rows;
  for (const auto& e : m.entries) rows += e.path + '\t' + e.identity + '\n';
  nlohmann::json j = {{"generator", io::file_content_hash(p.generator)}, {"targets", io::content_hash(rows)},
                      {"target_count", m.entries.size()}};
  if (emb) j["embedder"] = emb->id();  // its file hash, computed when it was loaded
  return io::dump_json(j);
}

/// Saves one finished chunk: its PNGs, then the segment (CSV last: its presence marks it done).
void save_chunk(const std::string& out, Segments& seg, const io::Manifest& m, const std::vector<size_t>& pos_rows,
                int64_t first, const ganinv::InvertResult& r) {
  // targets.csv: row (position in latents.npy), path, identity, loss, terms, restart, steps,
  // [refined_mse], source_row (the manifest row: the target's seed id, and what a merge orders by)
  const auto& names = ganinv::term_names();
  std::string rows;
  for (int64_t j = 0; j < r.latents.size(0); ++j) {
    const int64_t pos = first + j;
    const auto& e = m.entries[pos_rows[size_t(pos)]];
    io::save_image(out + "/recon/" + std::to_string(pos) + ".png", r.recon[j]);
    io::CsvRow cells{std::to_string(pos), e.path, e.identity, fmt6(r.loss[j].item<double>())};
    for (size_t t = 0; t < names.size(); ++t) cells.push_back(fmt6(r.terms[j][int64_t(t)].item<double>()));
    cells.push_back(std::to_string(r.restart[j].item<int64_t>()));
    cells.push_back(std::to_string(r.steps));
    if (r.refined.defined()) {
      io::save_image(out + "/refined/" + std::to_string(pos) + ".png", r.refined[j]);
      cells.push_back(fmt6(r.refined_mse[j].item<double>()));
    }
    cells.push_back(std::to_string(pos_rows[size_t(pos)]));
    rows += io::csv_line(cells);
  }
  const std::string base = seg.dir + "/seg-" + std::to_string(seg.latents.size());
  io::write_npy(base + ".npy", r.latents);
  io::write_file_atomic(base + ".csv", rows);
  seg.csv.push_back(rows);
  seg.latents.push_back(r.latents.detach().cpu());
}

/// targets.csv, latents.npy, pairs.png (the first 32 targets); returns the median MSE and records
/// the median refined MSE (with --refine) in `results`.
double assemble(const std::string& out, const Segments& seg, const at::Tensor& first_targets,
                const ganinv::InvertOptions& o, const models::ImageShape& shape, nlohmann::json& results) {
  io::CsvRow header{"row", "path", "identity", "loss"};
  for (const auto& t : ganinv::term_names()) header.push_back(t == "identity" ? "id_loss" : t);
  header.push_back("restart");
  header.push_back("steps");
  if (o.refine != "none") header.push_back("refined_mse");
  header.push_back("source_row");
  std::string csv = io::csv_line(header);
  std::vector<double> mses, refined;
  for (const auto& s : seg.csv) {
    csv += s;
    for (const auto& row : io::parse_csv(s)) {  // complete and numeric: checked on resume
      mses.push_back(std::strtod(row[4].c_str(), nullptr));
      if (o.refine != "none") refined.push_back(std::strtod(row[row.size() - 2].c_str(), nullptr));
    }
  }
  if (o.refine != "none") results["median_refined_mse"] = mia::median(refined);
  io::write_file_atomic(out + "/targets.csv", csv);
  io::write_npy(out + "/latents.npy", seg.latents.empty() ? torch::zeros({0, 0}) : torch::cat(seg.latents));
  std::vector<at::Tensor> tiles;
  const io::ImageSpec same{shape.channels, 0, io::ResizeMode::kRefuse};
  for (int64_t j = 0; first_targets.defined() && j < first_targets.size(0); ++j) {
    tiles.push_back(first_targets[j]);
    tiles.push_back(io::load_image(out + "/recon/" + std::to_string(j) + ".png", same));
    if (o.refine != "none") tiles.push_back(io::load_image(out + "/refined/" + std::to_string(j) + ".png", same));
  }
  const int per = o.refine != "none" ? 3 : 2;
  if (!tiles.empty()) {  // four targets a row, each as target | reconstruction (| refined)
    io::GridLabels gl;
    gl.title = "targets and their reconstructions (first " + std::to_string(tiles.size() / per) + ")";
    for (int t = 0; t < 4; ++t) {
      gl.columns.insert(gl.columns.end(), {"target", "recon"});
      if (per == 3) gl.columns.push_back("refined");
    }
    for (size_t j = 0; j < tiles.size() / per; j += 4)
      gl.rows.push_back({"targets " + std::to_string(j) + "-" + std::to_string(std::min(tiles.size() / per, j + 4) - 1)});
    gl.min_side = 64;
    io::save_image(out + "/pairs.png", io::labelled_grid(torch::stack(tiles), per * 4, gl));
  }
  return mses.empty() ? NAN : mia::median(mses);
}

void warn_if_resampled(const io::Manifest& m, const models::ImageShape& shape) {
  for (size_t i = 0; i < m.entries.size(); ++i) {  // the first readable target decides
    try {
      auto first = io::load_image(m.resolve(i), {shape.channels, 0, io::ResizeMode::kCenterCrop});
      if (first.size(1) != shape.height || first.size(2) != shape.width)
        log_warn("targets are ", first.size(2), "x", first.size(1), "; centre-cropped and resized to the generator's ",
                 shape.width, "x", shape.height);
      return;
    } catch (const Error&) {
    }
  }
}

/// Streams the targets through ganinv::invert chunk by chunk; finished chunks are saved as they
/// complete and skipped on resume. Returns the first 32 targets (for pairs.png).
at::Tensor stream_invert(models::Generator& g, models::Embedder* emb, const io::Manifest& m, const ganinv::InvertOptions& o,
                         const std::string& out, Segments& seg, io::RunRecord& record, int64_t* n_targets,
                         const dist::Shard& shard) {
  const auto shape = g.output_shape();
  const int64_t per_chunk = std::max<int64_t>(1, (o.batch > 0 ? o.batch : 64) / o.restarts);
  data::StreamOptions so;
  so.batch = per_chunk * std::max<int64_t>(1, 256 / per_chunk);
  so.stage = "load targets";
  so.shard = shard.blocks_of(per_chunk);  // each invert chunk of a shard = the chunk one process makes
  data::ImageStream stream(m, io::ImageSpec{shape.channels, shape.height, io::ResizeMode::kCenterCrop}, so);
  std::vector<size_t> pos_rows;
  std::vector<at::Tensor> first;
  int64_t nan_resets = 0;
  data::Batch b;
  auto progress = progress_fn();
  while (stream.next(&b)) {
    pos_rows.insert(pos_rows.end(), b.rows.begin(), b.rows.end());
    if (b.first < 32) first.push_back(b.images.slice(0, 0, 32 - b.first));
    const int64_t skip = std::min<int64_t>(b.size(), std::max<int64_t>(0, seg.done - b.first));
    if (skip == b.size()) continue;  // finished by the interrupted run
    auto on_chunk = [&](int64_t f, const ganinv::InvertResult& r) { save_chunk(out, seg, m, pos_rows, b.first + skip + f, r); };
    // seeded by manifest row: a shard's targets get the latents the whole run gives them
    std::vector<int64_t> ids(b.rows.begin() + skip, b.rows.end());
    auto r = ganinv::invert(g, b.images.slice(0, skip), o, emb, progress, on_chunk, b.first + skip, ids);
    nan_resets += r.nan_resets;
  }
  progress_done();
  for (const auto& k : stream.skipped()) record.add_skip(k.path, k.reason);
  if (!stream.skipped().empty())
    log_warn(stream.skipped().size(), " targets skipped; first: ", stream.skipped().front().reason);
  RW_CHECK(!pos_rows.empty() || (!shard.whole() && stream.skipped().empty()), Input, "none of the ", stream.total(),
           " targets could be loaded",
           stream.skipped().empty() ? std::string() : "; first problem: " + stream.skipped().front().reason);
  *n_targets = int64_t(pos_rows.size());
  record.results()["nan_resets"] = nan_resets;
  return first.empty() ? at::Tensor() : torch::cat(first);
}

/// Inverts the targets of `shard` into `dir` (latents.npy, targets.csv, recon/, pairs.png, run.json).
void invert_part(const InvertPaths& p, const ganinv::InvertOptions& o, io::RunRecord& record, const std::string& dir,
                 const dist::Shard& shard) {
  io::ensure_dir(dir);
  if (p.resume) {  // refused before the record: a refusal leaves no run.failed.json beside the finished run
    auto opts = record.options();
    opts.erase("out");
    refuse_finished_with_other_options(dir, "invert", opts, ".partial/options.json");
    // a shard resumed into a folder whose (merged) run finished: its merge would replace that run
    if (dir != p.out) refuse_finished_with_other_options(p.out, "invert", opts, ".partial/options.json");
  }
  run_and_record(record, dir + "/run.json", [&] {
    auto g = models::load_generator(p.generator);
    std::unique_ptr<models::Embedder> emb;
    if (!p.embedder.empty()) emb = models::load_embedder(p.embedder);
    record.results()["generator"] = g->describe();
    auto m = data::open_data(p.targets);
    warn_if_resampled(m, g->output_shape());
    auto opts = record.options();
    opts.erase("out");  // a moved output folder resumes as well
    const std::string feature = o.feature_net ? o.feature_net->id() + "\n" : "";
    auto seg = open_segments(dir, io::dump_json(opts) + "\n" + inputs_fingerprint(p, m, emb.get()) + "\n" + feature, p.resume,
                             segment_columns(o));
    const int64_t resumed = seg.done;
    io::ensure_dir(dir + "/recon");
    if (o.refine != "none") io::ensure_dir(dir + "/refined");
    int64_t n_targets = 0;
    auto first = stream_invert(*g, emb.get(), m, o, dir, seg, record, &n_targets, shard);
    record.mark("invert");
    const double median_mse = assemble(dir, seg, first, o, g->output_shape(), record.results());
    record.results()["targets"] = n_targets;
    record.results()["resumed_from"] = resumed;
    record.results()["median_mse"] = median_mse;
    auto shape = ganinv::latent_shape(*g, o.latent);
    shape.insert(shape.begin(), n_targets);
    record.results()["latent_shape"] = shape;
    fs::remove_all(seg.dir);
  });
}

/// The parts' targets in manifest order: targets.csv renumbered, latents.npy, recon/ (and
/// refined/) renamed to the merged positions, pairs.png of the first 32.
void invert_merge(const InvertPaths& p, const ganinv::InvertOptions& o, io::RunRecord& record,
                  const std::vector<dist::Part>& parts) {
  io::ensure_dir(p.out);
  run_and_record(record, p.out + "/run.json", [&] {
    io::CsvRow header;
    auto merged = merge_csv_by(parts, "targets.csv", "source_row", &header);
    RW_CHECK(header.size() == segment_columns(o) && header[0] == "row", Input, "--merge: ", parts[0].dir,
             "/targets.csv is not a part of this invert run");
    std::vector<at::Tensor> lat;
    for (const auto& pt : parts) lat.push_back(io::read_npy(pt.dir + "/latents.npy"));
    io::ensure_dir(p.out + "/recon");
    if (o.refine != "none") io::ensure_dir(p.out + "/refined");
    Segments seg;
    std::vector<at::Tensor> rows;
    for (size_t i = 0; i < merged.rows.size(); ++i) {
      const auto [k, r] = merged.from[i];
      RW_CHECK(lat[k].dim() >= 2 && int64_t(r) < lat[k].size(0), Input, "--merge: ", parts[k].dir,
               "/latents.npy has fewer rows than its targets.csv; rerun shard ", parts[k].shard.str());
      rows.push_back(lat[k][int64_t(r)]);
      for (const char* sub : {"recon", "refined"}) {
        if (std::string(sub) == "refined" && o.refine == "none") continue;
        const std::string from = parts[k].dir + "/" + sub + "/" + std::to_string(r) + ".png";
        RW_CHECK(fs::is_regular_file(from), Input, "--merge: ", from, " is missing; rerun shard ", parts[k].shard.str());
        io::write_file_atomic(p.out + "/" + sub + "/" + std::to_string(i) + ".png", io::read_file(from));
      }
      auto cells = merged.rows[i];
      cells[0] = std::to_string(i);
      seg.csv.push_back(io::csv_line(cells));
    }
    RW_CHECK(!rows.empty(), Input, "no target of ", p.targets, " could be inverted; see the parts' run.json");
    seg.latents.push_back(torch::stack(rows));
    auto g = models::load_generator(p.generator);
    auto m = data::open_data(p.targets);
    const auto shape = g->output_shape();
    std::vector<at::Tensor> first;
    for (size_t i = 0; i < std::min<size_t>(32, merged.rows.size()); ++i)
      first.push_back(io::load_image(m.resolve(size_t(std::stoll(merged.rows[i].back()))),
                                     {shape.channels, shape.height, io::ResizeMode::kCenterCrop}));
    const double median_mse = assemble(p.out, seg, torch::stack(first), o, shape, record.results());
    int64_t nan_resets = 0;
    for (const auto& pt : parts) nan_resets += pt.record["results"].value("nan_resets", int64_t(0));
    record.results()["generator"] = g->describe();
    record.results()["targets"] = rows.size();
    record.results()["median_mse"] = median_mse;
    record.results()["nan_resets"] = nan_resets;
    auto lshape = rows[0].sizes().vec();  // [latent_dim], [w_dim] or [num_ws, w_dim]
    lshape.insert(lshape.begin(), int64_t(rows.size()));
    record.results()["latent_shape"] = lshape;
  });
}

int invert_cmd(const Args& args) {
  ganinv::InvertOptions o;
  CommonOptions common;
  InvertPaths p;
  po::options_description desc("invert options");
  bind(desc, p, o);
  if (!parse_command("rewind invert --generator G --targets MANIFEST|DIR --out DIR [options]", args, desc, common)) return 0;
  check_precision_flag("--precision", o.precision);
  parse_loss(p.loss, o);
  RW_CHECK(o.w_feature <= 0 || !p.feature_net.empty(), Usage, "--loss feature=W needs --feature-net FILE --feature-layer NAME");
  if (o.w_feature > 0) o.feature_net = models::load_feature_net(p.feature_net, p.feature_layer);
  io::RunRecord record("invert");
  record.options() = {{"generator", p.generator}, {"targets", p.targets}, {"out", p.out}, {"restarts", o.restarts},
                      {"steps", o.loop.steps}, {"optimizer", o.loop.optimizer}, {"lr", o.loop.lr},
                      {"schedule", o.loop.schedule}, {"patience", o.loop.patience}, {"loss", p.loss},
                      {"feature_net", p.feature_net}, {"feature_layer", p.feature_layer}, {"scales", o.scales},
                      {"embedder", p.embedder}, {"latent", o.latent}, {"w_start", o.w_start}, {"batch", o.batch},
                      {"precision", o.precision}, {"seed", o.seed},
                      {"refine", o.refine}, {"refine_steps", o.refine_steps}};
  record.set_seed(o.seed);
  auto ran = run_sharded(p.shard, {"invert", p.out, &record,
                                   [&](const std::string& dir, const dist::Shard& s) { invert_part(p, o, record, dir, s); },
                                   [&](const std::vector<dist::Part>& parts, io::RunRecord& merged) {
                                     invert_merge(p, o, merged, parts);
                                   }});
  const std::string where = ran.merged || ran.shard.whole() ? p.out : dist::part_dir(p.out, ran.shard);
  const bool refined = record.results().contains("median_refined_mse");
  std::printf("%sinverted %lld targets into %s; median MSE %.5f%s\n  latents.npy, targets.csv, recon/, %spairs.png\n",
              ran.merged ? ("merged " + std::to_string(ran.parts) + " parts: ").c_str() : "",
              (long long)record.results().value("targets", int64_t(0)), where.c_str(),
              record.results().value("median_mse", 0.0),
              refined ? (", after --refine " + report::fmt_g(record.results().value("median_refined_mse", 0.0), 5)).c_str() : "",
              refined ? "refined/, " : "");
  return 0;
}

struct GenerateFlags {
  std::string generator, out, embedder, format = "png";
  int64_t count = 64, batch = 256;
  uint64_t seed = 1;
};

std::string sample_name(int64_t i) {
  char name[32];
  std::snprintf(name, sizeof name, "sample-%06lld", (long long)i);
  return name;
}

/// Samples of `shard` (blocks of the batch) into `dir`: latents.npy, images/ + manifest.csv or
/// images.npy, [embeddings.npy + items.csv], run.json. Sample i is G(z_i), z_i seeded by (seed, i).
void generate_part(const GenerateFlags& f, io::RunRecord& record, const std::string& dir, const dist::Shard& shard) {
  io::ensure_dir(dir);
  run_and_record(record, dir + "/run.json", [&] {
    auto g = models::load_generator(f.generator);
    std::unique_ptr<models::Embedder> emb;
    if (!f.embedder.empty()) emb = models::load_embedder(f.embedder);
    const int64_t d = g->latent_dim();
    const auto mine = shard.blocks_of(f.batch);
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < f.count; ++i)
      if (mine.contains(i)) ids.push_back(i);
    const int64_t n = int64_t(ids.size());
    auto z = n ? models::sample_latents_at(ids, d, f.seed) : torch::zeros({0, d});
    io::write_npy(dir + "/latents.npy", z);
    io::Manifest m;
    std::vector<at::Tensor> packed, embs;
    std::string items = io::csv_line({"row", "path", "identity"});
    torch::NoGradGuard ng;
    auto progress = progress_fn();
    for (int64_t s = 0; s < n; s += f.batch) {
      auto x = g->generate(z.slice(0, s, std::min(n, s + f.batch)));
      if (emb) embs.push_back(emb->embed(x));
      for (int64_t j = 0; j < x.size(0); ++j) {
        const int64_t i = ids[size_t(s + j)];
        const std::string name = sample_name(i), rel = "images/" + name + ".png";
        if (f.format == "png") io::save_image(dir + "/" + rel, x[j]);
        m.entries.push_back({f.format == "png" ? rel : std::string("images.npy#") + std::to_string(i), name, -1, {}});
        items += io::csv_line({std::to_string(i), m.entries.back().path, name});
      }
      if (f.format == "npy") packed.push_back(x.clamp(-1, 1).add(1).mul(127.5).round().to(torch::kUInt8));
      report_progress(progress, {"generate", std::min(n, s + f.batch), n, ""});
    }
    progress_done();
    const auto shape = g->output_shape();
    if (f.format == "png") io::write_manifest(dir + "/manifest.csv", m);
    else io::write_npy(dir + "/images.npy", packed.empty() ? torch::zeros({0, shape.channels, shape.height, shape.width}, torch::kUInt8) : torch::cat(packed));
    if (emb) {
      io::write_npy(dir + "/embeddings.npy", embs.empty() ? torch::zeros({0, emb->dim()}) : torch::cat(embs));
      io::write_file_atomic(dir + "/items.csv", items);
      record.results()["embedder"] = emb->describe();
      record.results()["embedder_id"] = emb->id();
    }
    record.mark("generate");
    record.results()["generator"] = g->describe();
    record.results()["samples"] = n;
  });
}

/// The parts' samples in index order: one latents.npy, images/ (moved), manifest.csv or
/// images.npy, embeddings.npy + items.csv.
void generate_merge(const GenerateFlags& f, io::RunRecord& record, const std::vector<dist::Part>& parts) {
  run_and_record(record, f.out + "/run.json", [&] {
    std::vector<std::pair<int64_t, std::pair<size_t, int64_t>>> order;  // sample -> (part, row in part)
    std::vector<at::Tensor> lat, emb, img;
    for (size_t p = 0; p < parts.size(); ++p) {
      const auto mine = parts[p].shard.blocks_of(f.batch);
      int64_t k = 0;
      for (int64_t i = 0; i < f.count; ++i)
        if (mine.contains(i)) order.push_back({i, {p, k++}});
      lat.push_back(io::read_npy(parts[p].dir + "/latents.npy"));
      RW_CHECK(lat.back().dim() == 2 && lat.back().size(0) == k, Input, "--merge: ", parts[p].dir, "/latents.npy holds ",
               lat.back().size(0), " samples, shard ", parts[p].shard.str(), " makes ", k, "; rerun that shard");
      if (!f.embedder.empty()) emb.push_back(io::read_npy(parts[p].dir + "/embeddings.npy"));
      if (f.format == "npy") img.push_back(io::read_npy(parts[p].dir + "/images.npy"));
    }
    std::sort(order.begin(), order.end());
    std::vector<at::Tensor> z, e, x;
    io::Manifest m;
    std::string items = io::csv_line({"row", "path", "identity"});
    if (f.format == "png") io::ensure_dir(f.out + "/images");
    for (const auto& [i, at] : order) {
      const auto [p, r] = at;
      z.push_back(lat[p][r]);
      if (!emb.empty()) e.push_back(emb[p][r]);
      if (!img.empty()) x.push_back(img[p][r]);
      const std::string name = sample_name(i), rel = "images/" + name + ".png";
      if (f.format == "png") {
        const std::string from = parts[p].dir + "/" + rel;
        RW_CHECK(fs::is_regular_file(from), Input, "--merge: ", from, " is missing; rerun shard ", parts[p].shard.str());
        io::write_file_atomic(f.out + "/" + rel, io::read_file(from));
      }
      m.entries.push_back({f.format == "png" ? rel : std::string("images.npy#") + std::to_string(i), name, -1, {}});
      items += io::csv_line({std::to_string(i), m.entries.back().path, name});
    }
    io::write_npy(f.out + "/latents.npy", torch::stack(z));
    if (f.format == "png") io::write_manifest(f.out + "/manifest.csv", m);
    else io::write_npy(f.out + "/images.npy", torch::stack(x));
    if (!e.empty()) {
      io::write_npy(f.out + "/embeddings.npy", torch::stack(e));
      io::write_file_atomic(f.out + "/items.csv", items);
    }
    copy_part_results(record, parts, {"generator", "embedder", "embedder_id"});
    record.results()["samples"] = f.count;
  });
}

int generate_cmd(const Args& args) {
  CommonOptions common;
  GenerateFlags f;
  ShardFlags sf;
  po::options_description desc("generate options");
  desc.add_options()
      ("generator", po::value(&f.generator)->required(), "generator file (native or TorchScript)")
      ("count", opt(&f.count), "number of samples")
      ("out", po::value(&f.out)->required(), "output folder: latents.npy, images/ + manifest.csv (or images.npy), run.json")
      ("seed", opt(&f.seed), "sample i uses latent seed (seed, i): same seed, same samples")
      ("batch", opt(&f.batch), "samples per forward pass")
      ("format", opt(&f.format), "png (one file each + manifest.csv) | npy (images.npy uint8 [N,C,H,W])")
      ("embedder", po::value(&f.embedder), "also write embeddings.npy + items.csv for the identity index");
  add_shard_flags(desc, sf);
  if (!parse_command("rewind generate --generator G --count N --out DIR [options]", args, desc, common)) return 0;
  RW_CHECK(f.format == "png" || f.format == "npy", Usage, "--format must be png or npy");
  RW_CHECK(f.count > 0 && f.batch > 0, Usage, "--count and --batch must be positive");
  io::RunRecord record("generate");
  record.options() = {{"generator", f.generator}, {"count", f.count}, {"out", f.out}, {"seed", f.seed},
                      {"batch", f.batch}, {"format", f.format}, {"embedder", f.embedder}};
  record.set_seed(f.seed);
  auto ran = run_sharded(sf, {"generate", f.out, &record,
                              [&](const std::string& dir, const dist::Shard& s) { generate_part(f, record, dir, s); },
                              [&](const std::vector<dist::Part>& parts, io::RunRecord& merged) {
                                generate_merge(f, merged, parts);
                              }});
  const std::string where = ran.merged || ran.shard.whole() ? f.out : dist::part_dir(f.out, ran.shard);
  std::cout << (ran.merged ? "merged " + std::to_string(ran.parts) + " parts: " : std::string()) << "wrote "
            << record.results().value("samples", int64_t(0)) << " samples to " << where << "\n";
  return 0;
}

}  // namespace

int cmd_invert(const Args& args) { return invert_cmd(args); }
int cmd_generate(const Args& args) { return generate_cmd(args); }

}  // namespace rw::cli
