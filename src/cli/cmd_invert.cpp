// rewind invert | rewind generate
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "rewind/models/sampling.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"
#include "rewind/data/datasets.h"
#include "rewind/ganinv/invert.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/npy.h"

namespace fs = std::filesystem;

namespace rw::cli {

namespace {

/// "mse=1,ssim=0.5,identity=0.1" -> weights on o. Unknown names are usage errors.
void parse_loss(const std::string& spec, ganinv::InvertOptions& o) {
  o.w_mse = o.w_l1 = o.w_ssim = o.w_identity = o.w_prior = 0;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    std::string name = item.substr(0, eq);
    double w = 1.0;
    if (eq != std::string::npos) {
      try {
        w = std::stod(item.substr(eq + 1));
      } catch (...) {
        RW_FAIL(Usage, "--loss: bad weight in '", item, "' (write name=weight, e.g. mse=1,ssim=0.5)");
      }
    }
    if (name == "mse") o.w_mse = w;
    else if (name == "l1") o.w_l1 = w;
    else if (name == "ssim") o.w_ssim = w;
    else if (name == "identity") o.w_identity = w;
    else if (name == "prior") o.w_prior = w;
    else RW_FAIL(Usage, "--loss: unknown term '", name, "' (terms: mse, l1, ssim, identity, prior)");
  }
  RW_CHECK(o.w_mse + o.w_l1 + o.w_ssim + o.w_identity > 0, Usage, "--loss needs at least one image term (mse, l1, ssim or identity)");
}

std::string fmt6(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

int invert_cmd(const Args& args) {
  ganinv::InvertOptions o;
  CommonOptions common;
  std::string generator, targets, out, embedder, loss = "mse=1";
  bool resume = false;
  po::options_description desc("invert options");
  desc.add_options()
      ("generator", po::value(&generator)->required(), "generator file (native or TorchScript)")
      ("targets", po::value(&targets)->required(), "target images: manifest, folder with manifest.csv, or folder of images")
      ("out", po::value(&out)->required(), "output folder: latents.npy, targets.csv, recon/, pairs.png, run.json")
      ("restarts", opt(&o.restarts), "random starts per target (best kept)")
      ("steps", opt(&o.loop.steps), "optimiser steps")
      ("optimizer", opt(&o.loop.optimizer), "adam | lbfgs")
      ("lr", opt(&o.loop.lr), "learning rate (L-BFGS: initial step, try 1)")
      ("schedule", opt(&o.loop.schedule), "cosine | constant (Adam)")
      ("patience", opt(&o.loop.patience),
       "stop a chunk early after N steps without relative improvement > 1e-4; 0 = never")
      ("loss", opt(&loss),
       "weighted terms: mse, l1, ssim (1-SSIM), identity (1-cos, needs --embedder), prior ((|z|^2-D)/D)^2")
      ("embedder", po::value(&embedder), "embedder for the identity term")
      ("latent", opt(&o.latent), "z | w (generators with mapping/synthesis)")
      ("batch", opt(&o.batch), "max targets x restarts optimised at once; 0 = auto (64 on CPU, 1024 on CUDA)")
      ("seed", opt(&o.seed), "seed (restart r of target i is seeded by (seed, i, r))")
      ("refine", opt(&o.refine),
       "none | pixel: after the latent stage, fit a bounded pixel residual to show what G cannot explain")
      ("refine-steps", opt(&o.refine_steps), "steps of the pixel stage")
      ("resume", po::bool_switch(&resume), "skip targets finished by an interrupted run in --out");
  if (!parse_command("rewind invert --generator G --targets MANIFEST|DIR --out DIR [options]", args, desc, common)) return 0;
  parse_loss(loss, o);

  io::RunRecord record("invert");
  record.options() = {{"generator", generator}, {"targets", targets}, {"out", out}, {"restarts", o.restarts},
                      {"steps", o.loop.steps}, {"optimizer", o.loop.optimizer}, {"lr", o.loop.lr},
                      {"schedule", o.loop.schedule}, {"patience", o.loop.patience}, {"loss", loss},
                      {"embedder", embedder}, {"latent", o.latent}, {"batch", o.batch}, {"seed", o.seed},
                      {"refine", o.refine}, {"refine_steps", o.refine_steps}};
  record.set_seed(o.seed);
  io::ensure_dir(out);
  const std::string partial = out + "/.partial";
  int64_t n_done_before = 0, n_targets = 0;
  double median_mse = 0;
  run_and_record(record, out + "/run.json", [&] {
    auto g = models::load_generator(generator);
    std::unique_ptr<models::Embedder> emb;
    if (!embedder.empty()) emb = models::load_embedder(embedder);
    record.results()["generator"] = g->describe();
    auto shape = g->output_shape();
    auto m = data::open_data(targets);
    std::vector<std::string> paths;
    for (size_t i = 0; i < m.entries.size(); ++i) paths.push_back(m.resolve(i));
    for (const auto& path : paths) {  // warn once when targets need resampling (bad files are skipped below)
      try {
        auto first = io::load_image(path, {shape.channels, 0, io::ResizeMode::kCenterCrop});
        if (first.size(1) != shape.height || first.size(2) != shape.width)
          log_warn("targets are ", first.size(2), "x", first.size(1), "; centre-cropped and resized to the generator's ",
                   shape.width, "x", shape.height);
        break;
      } catch (const Error&) {
      }
    }
    auto batch = io::load_images(paths, {shape.channels, shape.height, io::ResizeMode::kCenterCrop}, progress_fn());
    for (const auto& [i, why] : batch.skipped) record.add_skip(paths[i], why);
    if (!batch.skipped.empty()) log_warn(batch.skipped.size(), " targets skipped; first: ", batch.skipped.front().second);
    n_targets = batch.images.size(0);
    record.mark("load");

    // resume: earlier segments in .partial/ (same options only)
    const std::string opts_dump = record.options().dump();
    std::vector<std::string> seg_csv;
    std::vector<at::Tensor> seg_lat;
    if (resume && fs::exists(partial + "/options.json")) {
      RW_CHECK(io::read_file(partial + "/options.json") == opts_dump, Usage, "--resume: ", out,
               " was started with other options; rerun with the same options or without --resume");
      for (int64_t k = 0;; ++k) {
        std::string base = partial + "/seg-" + std::to_string(k);
        if (!fs::exists(base + ".csv") || !fs::exists(base + ".npy")) break;
        seg_csv.push_back(io::read_file(base + ".csv"));
        seg_lat.push_back(io::read_npy(base + ".npy"));
        n_done_before += seg_lat.back().size(0);
      }
      log_info("resuming: ", n_done_before, " of ", n_targets, " targets already done");
    } else {
      fs::remove_all(partial);
      io::ensure_dir(partial);
      io::write_file_atomic(partial + "/options.json", opts_dump);
    }
    io::ensure_dir(out + "/recon");
    if (o.refine == "pixel") io::ensure_dir(out + "/refined");
    auto names = ganinv::term_names();
    auto on_chunk = [&](int64_t first, const ganinv::InvertResult& r) {
      std::string rows;
      for (int64_t j = 0; j < r.latents.size(0); ++j) {
        const int64_t row = n_done_before + first + j;
        const auto& e = m.entries[batch.indices[size_t(row)]];
        io::save_image(out + "/recon/" + std::to_string(row) + ".png", r.recon[j]);
        io::CsvRow cells{std::to_string(row), e.path, e.identity, fmt6(r.loss[j].item<double>())};
        for (size_t t = 0; t < names.size(); ++t) cells.push_back(fmt6(r.terms[j][int64_t(t)].item<double>()));
        cells.push_back(std::to_string(r.restart[j].item<int64_t>()));
        cells.push_back(std::to_string(r.steps));
        if (r.refined.defined()) {
          io::save_image(out + "/refined/" + std::to_string(row) + ".png", r.refined[j]);
          cells.push_back(fmt6(r.refined_mse[j].item<double>()));
        }
        rows += io::csv_line(cells);
      }
      const std::string base = partial + "/seg-" + std::to_string(seg_lat.size());
      io::write_npy(base + ".npy", r.latents);
      io::write_file_atomic(base + ".csv", rows);  // written last: its presence marks the segment done
      seg_csv.push_back(rows);
      seg_lat.push_back(r.latents.detach().cpu());
    };
    ganinv::InvertResult res;
    if (n_done_before < n_targets) {
      res = ganinv::invert(*g, batch.images.slice(0, n_done_before), o, emb.get(), progress_fn(), on_chunk, n_done_before);
      progress_done();
      record.results()["nan_resets"] = res.nan_resets;
    }
    record.mark("invert");
    // assemble
    io::CsvRow header{"row", "path", "identity", "loss"};
    for (const auto& t : names) header.push_back(t == "identity" ? "id_loss" : t);
    header.push_back("restart");
    header.push_back("steps");
    if (o.refine == "pixel") header.push_back("refined_mse");
    std::string csv = io::csv_line(header);
    for (const auto& s : seg_csv) csv += s;
    io::write_file_atomic(out + "/targets.csv", csv);
    auto latents = torch::cat(seg_lat);
    io::write_npy(out + "/latents.npy", latents);
    // pairs.png: target | reconstruction (| refined) for the first 32 targets
    const int64_t k = std::min<int64_t>(32, n_targets);
    std::vector<at::Tensor> tiles;
    for (int64_t j = 0; j < k; ++j) {
      tiles.push_back(batch.images[j]);
      tiles.push_back(io::load_image(out + "/recon/" + std::to_string(j) + ".png", {shape.channels, 0, io::ResizeMode::kRefuse}));
      if (o.refine == "pixel")
        tiles.push_back(io::load_image(out + "/refined/" + std::to_string(j) + ".png", {shape.channels, 0, io::ResizeMode::kRefuse}));
    }
    const int per = o.refine == "pixel" ? 3 : 2;
    io::save_image(out + "/pairs.png", io::make_grid(torch::stack(tiles), per * 4, 2));
    // summary: median MSE (recovery error)
    std::vector<double> mses;
    for (const auto& s : seg_csv) {
      for (const auto& row : io::parse_csv(s)) mses.push_back(std::stod(row[4]));
    }
    std::sort(mses.begin(), mses.end());
    median_mse = mses.empty() ? 0 : mses[mses.size() / 2];
    record.results()["targets"] = n_targets;
    record.results()["resumed_from"] = n_done_before;
    record.results()["median_mse"] = median_mse;
    record.results()["latent_shape"] = std::vector<int64_t>(latents.sizes().begin(), latents.sizes().end());
    fs::remove_all(partial);
  });
  std::printf("inverted %lld targets into %s; median MSE %.5f\n  latents.npy, targets.csv, recon/, pairs.png\n",
              (long long)n_targets, out.c_str(), median_mse);
  return 0;
}

int generate_cmd(const Args& args) {
  CommonOptions common;
  std::string generator, out, embedder, format = "png";
  int64_t count = 64, batch = 256;
  uint64_t seed = 1;
  po::options_description desc("generate options");
  desc.add_options()
      ("generator", po::value(&generator)->required(), "generator file (native or TorchScript)")
      ("count", opt(&count), "number of samples")
      ("out", po::value(&out)->required(), "output folder: latents.npy, images/ + manifest.csv (or images.npy), run.json")
      ("seed", opt(&seed), "sample i uses latent seed (seed, i): same seed, same samples")
      ("batch", opt(&batch), "samples per forward pass")
      ("format", opt(&format), "png (one file each + manifest.csv) | npy (images.npy uint8 [N,C,H,W])")
      ("embedder", po::value(&embedder), "also write embeddings.npy + items.csv for the identity index");
  if (!parse_command("rewind generate --generator G --count N --out DIR [options]", args, desc, common)) return 0;
  RW_CHECK(format == "png" || format == "npy", Usage, "--format must be png or npy");
  RW_CHECK(count > 0 && batch > 0, Usage, "--count and --batch must be positive");
  io::RunRecord record("generate");
  record.options() = {{"generator", generator}, {"count", count}, {"out", out}, {"seed", seed}, {"batch", batch},
                      {"format", format}, {"embedder", embedder}};
  record.set_seed(seed);
  io::ensure_dir(out);
  run_and_record(record, out + "/run.json", [&] {
    auto g = models::load_generator(generator);
    std::unique_ptr<models::Embedder> emb;
    if (!embedder.empty()) emb = models::load_embedder(embedder);
    const int64_t d = g->latent_dim();
    auto z = models::sample_latents(count, d, seed);
    io::write_npy(out + "/latents.npy", z);
    io::Manifest m;
    std::vector<at::Tensor> packed, embs;
    std::string items = io::csv_line({"row", "path", "identity"});
    torch::NoGradGuard ng;
    auto progress = progress_fn();
    for (int64_t s = 0; s < count; s += batch) {
      auto x = g->generate(z.slice(0, s, std::min(count, s + batch)));
      if (emb) embs.push_back(emb->embed(x));
      for (int64_t j = 0; j < x.size(0); ++j) {
        char name[32];
        std::snprintf(name, sizeof name, "sample-%06lld", (long long)(s + j));
        std::string rel = std::string("images/") + name + ".png";
        if (format == "png") io::save_image(out + "/" + rel, x[j]);
        m.entries.push_back({format == "png" ? rel : std::string("images.npy#") + std::to_string(s + j), name, -1, {}});
        items += io::csv_line({std::to_string(s + j), m.entries.back().path, name});
      }
      if (format == "npy") packed.push_back(x.clamp(-1, 1).add(1).mul(127.5).round().to(torch::kUInt8));
      report_progress(progress, {"generate", std::min(count, s + batch), count, ""});
    }
    progress_done();
    if (format == "png") io::write_manifest(out + "/manifest.csv", m);
    else io::write_npy(out + "/images.npy", torch::cat(packed));
    if (emb) {
      io::write_npy(out + "/embeddings.npy", torch::cat(embs));
      io::write_file_atomic(out + "/items.csv", items);
      record.results()["embedder"] = emb->describe();
      record.results()["embedder_id"] = emb->id();
    }
    record.mark("generate");
    record.results()["generator"] = g->describe();
    record.results()["samples"] = count;
  });
  std::cout << "wrote " << count << " samples to " << out << "\n";
  return 0;
}

}  // namespace

int cmd_invert(const Args& args) { return invert_cmd(args); }
int cmd_generate(const Args& args) { return generate_cmd(args); }

}  // namespace rw::cli
