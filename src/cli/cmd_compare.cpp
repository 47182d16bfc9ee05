// rewind compare: both directions (GAN outputs and split activations) on the same people.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>

#include "cli.h"
#include "rewind/models/sampling.h"
#include "rewind/audit/demo.h"
#include "rewind/core/build_info.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"
#include "rewind/data/datasets.h"
#include "rewind/featinv/featinv.h"
#include "rewind/models/native.h"
#include "rewind/ganinv/invert.h"
#include "rewind/identity/calibration.h"
#include "rewind/identity/index.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/npy.h"
#include "rewind/mia/metrics.h"
#include "rewind/report/html.h"

namespace fs = std::filesystem;

namespace rw::cli {
namespace {

using report::fmt;

// ------------------------------------------------------------------------------------------------
// shared pieces

/// Images of a manifest at the generator's size; bad files are skipped and recorded.
struct ImageSet {
  io::Manifest m;
  at::Tensor images;          ///< [N, C, H, W] in [-1, 1]
  std::vector<size_t> rows;   ///< manifest entry of each image
};

ImageSet load_set(const std::string& data, const models::ImageShape& shape, io::RunRecord& record, const char* what) {
  ImageSet s;
  s.m = data::open_data(data);
  std::vector<std::string> paths;
  for (size_t i = 0; i < s.m.entries.size(); ++i) paths.push_back(s.m.resolve(i));
  auto b = io::load_images(paths, {shape.channels, shape.height, io::ResizeMode::kCenterCrop}, progress_fn());
  progress_done();
  for (const auto& [i, why] : b.skipped) record.add_skip(paths[i], why);
  if (!b.skipped.empty())
    log_warn(b.skipped.size(), " ", what, " images skipped (listed in run.json); first: ", b.skipped.front().second);
  s.images = b.images;
  s.rows = b.indices;
  return s;
}

at::Tensor embed_tensor(models::Embedder& e, const at::Tensor& images, const std::string& stage) {
  torch::NoGradGuard ng;
  std::vector<at::Tensor> out;
  const int64_t n = images.size(0), batch = 128;
  auto progress = progress_fn();
  for (int64_t s = 0; s < n; s += batch) {
    out.push_back(e.embed(images.slice(0, s, std::min(n, s + batch))));
    report_progress(progress, {stage, std::min(n, s + batch), n, ""});
  }
  progress_done();
  return out.empty() ? torch::empty({0, e.dim()}) : torch::cat(out);
}

/// Generated samples with their latents (sample i uses latent seed (seed, i), as `rewind generate`).
struct Samples {
  at::Tensor images, emb;
  std::unique_ptr<identity::IdentityIndex> index;
};

Samples make_samples(models::Generator& g, models::Embedder& e, int64_t n, uint64_t seed) {
  torch::NoGradGuard ng;
  Samples s;
  const int64_t d = g.latent_dim();
  auto z = models::sample_latents(n, d, seed);
  std::vector<at::Tensor> imgs;
  auto progress = progress_fn();
  for (int64_t b = 0; b < n; b += 256) {
    imgs.push_back(g.generate(z.slice(0, b, std::min(n, b + 256))).clamp(-1, 1));
    report_progress(progress, {"generate", std::min(n, b + 256), n, ""});
  }
  progress_done();
  s.images = torch::cat(imgs);
  s.emb = embed_tensor(e, s.images, "embed samples");
  s.index = std::make_unique<identity::IdentityIndex>(e.dim(), identity::IndexOptions{});
  std::vector<identity::Item> items;
  for (int64_t i = 0; i < n; ++i) items.push_back({"sample" + std::to_string(i), "", "generated"});
  s.index->add(s.emb, items);
  return s;
}

struct Nearest {
  std::vector<float> sim;       ///< per image: best similarity to any generated sample
  std::vector<int64_t> sample;  ///< which sample
};

Nearest nearest_samples(const Samples& s, const at::Tensor& emb) {
  Nearest n;
  for (const auto& r : s.index->search(emb, 1)) {
    n.sim.push_back(r[0].similarity);
    n.sample.push_back(r[0].id);
  }
  return n;
}

/// Latent recovery of `images`; per image MSE of the latent-only reconstruction.
struct Recovery {
  at::Tensor mse, recon;
};

Recovery recover(models::Generator& g, const at::Tensor& images, const ganinv::InvertOptions& o,
                 models::Embedder* e, const std::string& stage) {
  Recovery r;
  if (images.size(0) == 0) {
    r.mse = torch::empty({0});
    r.recon = images;
    return r;
  }
  auto progress = progress_fn();
  ProgressFn staged = [&](const Progress& p) {
    Progress q = p;
    q.stage = stage;
    return progress ? progress(q) : true;
  };
  auto res = ganinv::invert(g, images, o, e, staged);
  progress_done();
  r.recon = res.recon;
  r.mse = (res.recon - images).pow(2).flatten(1).mean(1);
  return r;
}

at::Tensor cosine_rows(const at::Tensor& a, const at::Tensor& b) { return (a * b).sum(1); }

std::vector<double> to_vec(const at::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

/// Group image indices (into an ImageSet) by identity, first-appearance order.
std::vector<std::pair<std::string, std::vector<int64_t>>> group_by_identity(const ImageSet& s) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> g;
  std::map<std::string, size_t> where;
  for (size_t i = 0; i < s.rows.size(); ++i) {
    const auto& id = s.m.entries[s.rows[i]].identity;
    auto it = where.find(id);
    if (it == where.end()) {
      where[id] = g.size();
      g.push_back({id, {}});
      it = where.find(id);
    }
    g[it->second].second.push_back(int64_t(i));
  }
  return g;
}

/// Integer identity label per image (0, 1, ... in first-appearance order), for calibration.
at::Tensor identity_labels(const ImageSet& s) {
  std::vector<int64_t> lab(s.rows.size());
  int64_t next = 0;
  for (const auto& [id, ix] : group_by_identity(s)) {
    for (int64_t i : ix) lab[size_t(i)] = next;
    ++next;
  }
  return torch::tensor(lab, torch::kLong);
}

/// The first `k` images of each identity (k <= 0: all), as indices into the set.
std::vector<int64_t> first_per_identity(const ImageSet& s, int64_t k) {
  std::vector<int64_t> out;
  for (const auto& [id, ix] : group_by_identity(s))
    for (size_t j = 0; j < ix.size() && (k <= 0 || int64_t(j) < k); ++j) out.push_back(ix[j]);
  std::sort(out.begin(), out.end());
  return out;
}

at::Tensor select(const at::Tensor& t, const std::vector<int64_t>& ix) {
  return t.index_select(0, torch::tensor(ix, torch::kLong));
}

std::string png(const at::Tensor& img) { return io::encode_png(img); }

std::string roc_svg(const std::vector<std::pair<std::string, mia::Roc>>& rocs, bool log) {
  std::vector<report::Series> ss;
  for (const auto& [name, r] : rocs) ss.push_back({name, r.fpr, r.tpr, false});
  report::PlotOptions o;
  o.title = log ? "ROC (log-log)" : "ROC";
  o.x_label = "false-positive rate";
  o.y_label = "true-positive rate";
  o.log_x = o.log_y = log;
  o.diagonal = true;
  if (!log) { o.x_min = 0; o.x_max = 1; o.y_min = 0; o.y_max = 1; }
  else { o.x_min = 1e-3; o.x_max = 1; o.y_min = 1e-3; o.y_max = 1; }
  return report::svg_plot(ss, o);
}

void add_invert_options(po::options_description& desc, ganinv::InvertOptions& o) {
  desc.add_options()
      ("restarts", opt(&o.restarts), "latent recovery: random starts per target")
      ("steps", opt(&o.loop.steps), "latent recovery: optimiser steps")
      ("lr", opt(&o.loop.lr), "latent recovery: learning rate")
      ("optimizer", opt(&o.loop.optimizer), "latent recovery: adam | lbfgs")
      ("invert-batch", opt(&o.batch), "latent recovery: targets x restarts per chunk; 0 = auto");
}


/// The identity-nn verdict threshold at `far` per identity: from reference identities (people not
/// in the training set) when given, else from the dataset's own impostor pairs with Bonferroni.
struct VerdictThreshold {
  double thr = 0;
  std::string method;
  bool resolved = true;
  std::vector<double> ref_best;  ///< per reference identity: best similarity to a sample
};

VerdictThreshold verdict_threshold(models::Embedder& e, const Samples& samples, const ImageSet& set, const at::Tensor& emb,
                                   int64_t n_ids, const std::string& reference, double far, int64_t n_samples,
                                   const models::ImageShape& shape, io::RunRecord& record) {
  VerdictThreshold v;
  if (!reference.empty()) {
    auto ref = load_set(reference, shape, record, "reference");
    auto rnn = nearest_samples(samples, embed_tensor(e, ref.images, "embed reference"));
    for (const auto& [id, ix] : group_by_identity(ref)) {
      double b = -2;
      for (int64_t i : ix) b = std::max(b, double(rnn.sim[size_t(i)]));
      v.ref_best.push_back(b);
    }
    v.thr = identity::threshold_for_far(torch::tensor(v.ref_best, torch::kFloat64), far);
    v.resolved = double(v.ref_best.size()) * far >= 1.0;
    v.method = "at most FAR " + fmt(far, 4) + " of " + std::to_string(v.ref_best.size()) +
               " reference identities (people not in the training set) have a generated sample above it" +
               (v.resolved ? "" : " (fewer than 1/FAR reference identities: the threshold is their maximum, so the real FAR is up to 1/" +
                                      std::to_string(v.ref_best.size()) + ")");
  } else {
    double per_pair = far / double(n_samples * std::max<int64_t>(1, set.images.size(0) / std::max<int64_t>(1, n_ids)));
    auto c = identity::calibrate(emb, identity_labels(set), {std::max(per_pair, 1e-12)});
    v.thr = c.points[0].threshold;
    v.resolved = double(c.impostor_pairs) * per_pair >= 1.0;
    v.method = "pair threshold at FAR " + fmt(per_pair, 8) + " per comparison (= FAR " + fmt(far, 4) + " / (" +
               std::to_string(n_samples) + " samples x images per identity)) from " + std::to_string(c.impostor_pairs) +
               " impostor pairs of the dataset's own identities" +
               (v.resolved ? "" : "; too few pairs to resolve it, so the threshold is their maximum (conservative)");
  }
  return v;
}

// ------------------------------------------------------------------------------------------------
struct CompareOptions {
  std::string generator, classifier, dataset, embedder, reference, out = "out/compare";
  std::string splits = "relu1,pool1,relu2,pool2,relu3,fc1";  ///< split depths attacked
  std::string defenses = "none,noise=1";                       ///< defences on the activations
  int64_t samples = 1000;   ///< generated samples (GAN side)
  double far = 1e-3;        ///< FAR of both verdicts
  int64_t wb_steps = 200;   ///< white-box steps per split
  uint64_t seed = 1;
};

int compare_cmd(const Args& args) {
  CommonOptions common;
  CompareOptions co;
  ganinv::InvertOptions o;
  o.restarts = 2;
  o.loop.steps = 100;
  po::options_description desc("compare options");
  desc.add_options()
      ("generator", po::value(&co.generator), "the GAN trained on the people (omit all model/data options for the demo)")
      ("classifier", po::value(&co.classifier), "the split classifier used by the same people")
      ("dataset", po::value(&co.dataset), "the people's images: manifest or folder (identity = person)")
      ("embedder", po::value(&co.embedder), "identity embedder")
      ("reference", po::value(&co.reference), "images of people not in the GAN's training set (GAN verdict threshold)")
      ("out", opt(&co.out), "output folder: report.html, report.json, report.csv, run.json")
      ("splits", opt(&co.splits), "split stages attacked (comma list, or all)")
      ("defense", opt(&co.defenses), "defences compared on the split side (comma list: none, noise=S, quant=B, dropout=P)")
      ("samples", opt(&co.samples), "generated samples searched (GAN side)")
      ("far", opt(&co.far), "false-accept rate of both verdicts")
      ("wb-steps", opt(&co.wb_steps), "white-box inversion steps per split")
      ("seed", opt(&co.seed), "seed");
  add_invert_options(desc, o);
  if (!parse_command("rewind compare [--generator G --classifier C --dataset M --embedder E [--reference M]] [options]\n"
                     "  with no model/data options: the embedded demo (synthetic identities, shipped demo models)",
                     args, desc, common))
    return 0;
  const bool demo = co.generator.empty() && co.classifier.empty() && co.dataset.empty();
  RW_CHECK(demo || (!co.generator.empty() && !co.classifier.empty() && !co.dataset.empty() && !co.embedder.empty()), Usage,
           "compare needs --generator, --classifier, --dataset and --embedder together (or none for the embedded demo)");
  o.seed = co.seed;
  io::ensure_dir(co.out);
  io::RunRecord record(demo ? "compare (embedded demo)" : "compare");
  record.set_seed(co.seed);
  std::vector<std::string> summary;
  run_and_record(record, co.out + "/run.json", [&] {
    if (demo) {
      auto d = audit::prepare_demo(demo_dir(), co.out + "/demo-data", progress_fn());
      progress_done();
      co.generator = d.generator;
      co.embedder = d.embedder;
      co.dataset = d.dataset;
      co.reference = d.reference;
      co.classifier = d.classifier;
      RW_CHECK(fs::exists(co.classifier), Input, "the demo classifier ", co.classifier,
               " is missing; recreate the demo models with data-tools/make_demo_models.sh");
    }
    record.options() = {{"generator", co.generator}, {"classifier", co.classifier}, {"dataset", co.dataset},
                        {"embedder", co.embedder}, {"reference", co.reference}, {"splits", co.splits},
                        {"defense", co.defenses}, {"samples", co.samples}, {"far", co.far}, {"wb_steps", co.wb_steps},
                        {"restarts", o.restarts}, {"steps", o.loop.steps}, {"seed", co.seed}, {"demo", demo}};
    auto g = models::load_generator(co.generator);
    auto e = models::load_embedder(co.embedder);
    auto c = models::load_classifier(co.classifier);
    std::vector<std::string> splits;
    if (co.splits == "all") splits = c->split_points();
    else {
      std::stringstream ss(co.splits);
      for (std::string t; std::getline(ss, t, ',');) if (!t.empty()) splits.push_back(t);
    }
    for (const auto& sp : splits) models::check_split(*c, sp);
    std::vector<featinv::Defense> defs;
    {
      std::stringstream ss(co.defenses);
      for (std::string t; std::getline(ss, t, ',');) if (!t.empty()) defs.push_back(featinv::Defense::parse(t));
    }
    auto shape = g->output_shape();
    auto set = load_set(co.dataset, shape, record, "dataset");
    auto groups = group_by_identity(set);
    const int64_t n_ids = int64_t(groups.size());
    record.mark("load");

    // ---- output side: the GAN
    auto samples = make_samples(*g, *e, co.samples, co.seed);
    auto emb = embed_tensor(*e, set.images, "embed dataset");
    auto nn = nearest_samples(samples, emb);
    auto vt = verdict_threshold(*e, samples, set, emb, n_ids, co.reference, co.far, co.samples, shape, record);
    auto first = first_per_identity(set, 1);
    auto x = select(set.images, first);  // one image per identity, both directions attack it
    auto rec = recover(*g, x, o, nullptr, "invert");
    record.mark("gan side");

    // ---- input side: the split classifier
    auto cx = featinv::to_shape(x, c->input_shape());
    auto x_emb = select(emb, first);
    // "same person" for a rebuilt photo: the pair threshold at FAR on the dataset's impostor pairs
    const double pair_thr = identity::calibrate(emb, identity_labels(set), {co.far}).points[0].threshold;
    // accuracy through the split: images of the identities the classifier knows (native class names)
    std::vector<std::string> class_names;
    if (models::is_native(co.classifier)) {
      auto arch = models::read_native_arch(co.classifier);
      if (arch.contains("class_names")) class_names = arch["class_names"].get<std::vector<std::string>>();
    }
    std::vector<int64_t> acc_ix, acc_y;
    for (size_t i = 0; i < set.rows.size(); ++i) {
      auto it = std::find(class_names.begin(), class_names.end(), set.m.entries[set.rows[i]].identity);
      if (it != class_names.end()) { acc_ix.push_back(int64_t(i)); acc_y.push_back(it - class_names.begin()); }
    }
    struct Cell { std::string split, defense; double acc = -1; at::Tensor psnr, ssim, cos; at::Tensor recon; };
    std::vector<Cell> cells;
    featinv::WhiteBoxOptions wo;
    wo.loop.steps = co.wb_steps;
    wo.seed = co.seed;
    for (const auto& sp : splits) {
      auto acts = featinv::activations(*c, sp, cx);
      for (const auto& d : defs) {
        Cell cell;
        cell.split = sp;
        cell.defense = d.str();
        auto a = featinv::defend(acts, d, co.seed);
        auto progress = progress_fn();
        ProgressFn staged = [&](const Progress& p) { Progress q = p; q.stage = "white-box " + sp + " " + d.str(); return progress ? progress(q) : true; };
        auto r = featinv::white_box(*c, sp, a, wo, staged);
        progress_done();
        auto q = featinv::quality(cx, r.recon);
        cell.psnr = q.psnr;
        cell.ssim = q.ssim;
        cell.recon = featinv::to_shape(r.recon, shape);
        cell.cos = cosine_rows(x_emb, embed_tensor(*e, cell.recon, "embed rebuilt"));
        if (!acc_ix.empty())
          cell.acc = featinv::accuracy_through_split(*c, sp, featinv::to_shape(select(set.images, acc_ix), c->input_shape()),
                                                     torch::tensor(acc_y, torch::kLong), d, co.seed);
        cells.push_back(std::move(cell));
      }
    }
    record.mark("split side");

    // ---- per identity table
    std::vector<std::string> header = {"identity", "member", "gan_identity_nn", "gan_leaks", "recovery_mse"};
    for (const auto& cl : cells) {
      header.push_back("split_" + cl.split + "_" + cl.defense + "_similarity");
      header.push_back("split_" + cl.split + "_" + cl.defense + "_exposed");
    }
    std::string csv = io::csv_line(header);
    int64_t gan_leaks = 0, gan_leaks_m = 0, members = 0;
    std::vector<int64_t> exposed(cells.size(), 0);
    std::vector<std::vector<std::string>> html_rows;
    for (size_t k = 0; k < groups.size(); ++k) {
      const auto& [id, ix] = groups[k];
      double best = -2;
      for (int64_t i : ix) best = std::max(best, double(nn.sim[size_t(i)]));
      const bool leaks = best > vt.thr;
      const int member = set.m.entries[set.rows[size_t(ix[0])]].member;
      gan_leaks += leaks;
      members += member == 1;
      gan_leaks_m += leaks && member == 1;
      io::CsvRow row = {id, member < 0 ? "" : std::to_string(member), fmt(best, 4), leaks ? "1" : "0",
                        fmt(rec.mse[int64_t(k)].item<double>(), 6)};
      for (size_t j = 0; j < cells.size(); ++j) {
        double cs = cells[j].cos[int64_t(k)].item<double>();
        row.push_back(fmt(cs, 4));
        row.push_back(cs > pair_thr ? "1" : "0");
        exposed[j] += cs > pair_thr;
      }
      csv += io::csv_line(row);
    }
    io::write_file_atomic(co.out + "/report.csv", csv);

    // ---- report
    nlohmann::json rep;
    rep["command"] = "compare";
    rep["build"] = build_string();
    rep["options"] = record.options();
    rep["gan"] = {{"identities", n_ids}, {"leaking", gan_leaks}, {"threshold", vt.thr}, {"threshold_method", vt.method},
                  {"far", co.far}, {"members", members}, {"members_leaking", gan_leaks_m}};
    std::vector<std::vector<std::string>> table;
    table.push_back({"GAN outputs (identity-nn)", "-", "-", std::to_string(gan_leaks) + " / " + std::to_string(n_ids), "", "", ""});
    for (size_t j = 0; j < cells.size(); ++j) {
      const auto& cl = cells[j];
      double psnr = cl.psnr.mean().item<double>(), ssim = cl.ssim.mean().item<double>();
      rep["split"].push_back({{"split", cl.split}, {"defense", cl.defense}, {"exposed", exposed[j]}, {"psnr", psnr},
                              {"ssim", ssim}, {"accuracy", cl.acc}});
      table.push_back({"split activations", cl.split, cl.defense, std::to_string(exposed[j]) + " / " + std::to_string(n_ids),
                       fmt(psnr, 1), fmt(ssim, 3), cl.acc < 0 ? "n/a" : fmt(cl.acc, 3)});
    }
    io::write_file_atomic(co.out + "/report.json", rep.dump(2) + "\n");
    report::HtmlReport html("rewind compare: who is exposed, through the GAN and through split inference?");
    summary.push_back("Through the GAN's outputs: " + std::to_string(gan_leaks) + " of " + std::to_string(n_ids) +
                      " identities have a generated sample the identity network calls the same person (FAR " + fmt(co.far, 4) + ")" +
                      (members > 0 ? "; " + std::to_string(gan_leaks_m) + " of them are among the " + std::to_string(members) +
                                         " identities the GAN was trained on." : "."));
    for (size_t j = 0; j < cells.size(); ++j)
      if (cells[j].defense == "none")
        summary.push_back("Through the split at " + cells[j].split + ": " + std::to_string(exposed[j]) + " of " +
                          std::to_string(n_ids) + " photos are rebuilt well enough to be recognised (PSNR " +
                          fmt(cells[j].psnr.mean().item<double>(), 1) + " dB).");
    html.summary(summary);
    html.heading("Exposure table");
    html.paragraph("One photo per identity goes through both attacks. 'Exposed' for the split side: the photo rebuilt from the "
                   "activations (white-box, " + std::to_string(co.wb_steps) + " Adam steps, TV/L2 priors) is the same person as "
                   "the original (cosine above " + fmt(pair_thr, 3) + ", the 1:1 threshold at FAR " + fmt(co.far, 4) +
                   " on this dataset's impostor pairs). Accuracy: the classifier through the (defended) split on the "
                   "identities it knows: the utility price of the defence.");
    html.table({"direction", "split", "defence", "identities exposed", "PSNR dB", "SSIM", "accuracy"}, table);
    // pictures: first identities, original | closest sample | GAN recon | rebuilt at each split (no defence)
    {
      std::vector<std::string> hdr = {"identity", "photo", "closest sample", "GAN reconstruction"};
      for (const auto& cl : cells) if (cl.defense == "none") hdr.push_back("rebuilt from " + cl.split);
      std::vector<std::vector<std::string>> rows;
      for (size_t k = 0; k < groups.size() && k < 16; ++k) {
        const auto& [id, ix] = groups[k];
        int64_t bi = ix[0];
        for (int64_t i : ix) if (nn.sim[size_t(i)] > nn.sim[size_t(bi)]) bi = i;
        std::vector<std::string> r = {report::escape(id), report::img_png(png(x[int64_t(k)]), "photo", 64),
                                      report::img_png(png(samples.images[nn.sample[size_t(bi)]]), "sample", 64) + "<br>" + fmt(nn.sim[size_t(bi)], 2),
                                      report::img_png(png(rec.recon[int64_t(k)]), "reconstruction", 64)};
        for (const auto& cl : cells)
          if (cl.defense == "none")
            r.push_back(report::img_png(png(cl.recon[int64_t(k)]), "rebuilt", 64) + "<br>" + fmt(cl.cos[int64_t(k)].item<double>(), 2));
        rows.push_back(r);
      }
      html.heading("What each attacker gets");
      html.table_html(hdr, rows);
    }
    html.heading("Method");
    html.paragraph("GAN side: as rewind audit (identity nearest neighbour among " + std::to_string(co.samples) +
                   " samples; threshold: " + vt.method + "). Split side: as rewind split-attack --attack white-box "
                   "(He et al. 2019), with the defences applied to the activations before the attacker sees them.");
    html.details("run options and build", record.options().dump(2) + "\n" + build_string());
    html.write(co.out + "/report.html");
    record.results()["gan"] = rep["gan"];
    record.results()["split"] = rep["split"];
  });
  for (const auto& l : summary) std::cout << l << "\n";
  std::cout << "report: " << co.out << "/report.html (also report.json, report.csv)\n";
  return 0;
}

}  // namespace

int cmd_compare(const Args& args) { return compare_cmd(args); }

}  // namespace rw::cli
