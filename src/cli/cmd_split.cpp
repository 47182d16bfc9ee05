// rewind split-attack: rebuild input images from the activations of a split classifier.
// The sweep itself is featinv::run_sweep; this file binds flags, loads images, writes the outputs.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "cli.h"
#include "rewind/audit/stages.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/data/datasets.h"
#include "rewind/featinv/featinv.h"
#include "rewind/featinv/sweep.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/run_record.h"
#include "rewind/models/native.h"
#include "rewind/report/html.h"

namespace fs = std::filesystem;

namespace rw::cli {

namespace {

/// The one short number format of the CSV files and logs.
std::string fmt_g(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

/// Images of a manifest / folder in the classifier's shape; bad files are skipped and recorded.
struct Data {
  io::Manifest manifest;
  io::ImageBatch batch;
  std::vector<std::string> paths;  ///< resolved path of each loaded image
};

Data load_data(const std::string& where, const std::string& flag, const models::ImageShape& shape, int64_t limit,
               const std::string& crop, io::RunRecord& record) {
  Data d;
  d.manifest = data::open_data(where);
  if (limit > 0 && int64_t(d.manifest.entries.size()) > limit) d.manifest.entries.resize(size_t(limit));
  auto l = load_images_of(d.manifest, flag + " " + where, audit::pipeline_loader(shape, crop), &record);
  d.batch = std::move(l.batch);
  for (size_t i : d.batch.indices) d.paths.push_back(fs::weakly_canonical(d.manifest.resolve(i)).string());
  return d;
}

/// Class index of each loaded image from the label column (class names from a native classifier's
/// record, else integer labels). Undefined tensor when the manifest has no such column.
at::Tensor labels_of(const Data& d, const std::string& column, const std::vector<std::string>& class_names,
                     int64_t classes, const std::string& where) {
  int col = -1;
  for (size_t c = 0; c < d.manifest.extra_columns.size(); ++c)
    if (d.manifest.extra_columns[c] == column) col = int(c);
  if (col < 0 && column != "identity") return {};
  std::vector<int64_t> y;
  for (size_t i : d.batch.indices) {
    const auto& e = d.manifest.entries[i];
    const std::string& v = col >= 0 ? e.extra[size_t(col)] : e.identity;
    int64_t k = -1;
    if (!class_names.empty()) {
      auto it = std::find(class_names.begin(), class_names.end(), v);
      if (it != class_names.end()) k = it - class_names.begin();
    } else {
      try {
        k = std::stoll(v);
      } catch (...) {
      }
    }
    RW_CHECK(k >= 0 && k < classes, Input, where, ": label '", v, "' in column '", column,
             "' is not one of the classifier's classes; pass --label-column or --eval with matching labels");
    y.push_back(k);
  }
  return torch::tensor(y, torch::kLong);
}

/// Identity ids (order of first appearance) of the loaded targets, for the match-threshold calibration.
at::Tensor identity_ids(const Data& d) {
  std::map<std::string, int64_t> ids;
  std::vector<int64_t> lab;
  for (size_t i : d.batch.indices)
    lab.push_back(ids.emplace(d.manifest.entries[i].identity, int64_t(ids.size())).first->second);
  return torch::tensor(lab, torch::kLong);
}

/// The command line, bound to the sweep's options.
struct Flags {
  featinv::SweepOptions sweep;
  std::string classifier, split, targets, out, attack = "white-box", aux, generator, defense = "none", eval,
                                                 label_column = "label", embedder, crop = "center";
  int64_t limit = 0;
};

void add_flags(po::options_description& desc, Flags& f) {
  auto& wb = f.sweep.white_box;
  auto& inv = f.sweep.inverse_net;
  auto& gp = f.sweep.gan_prior;
  desc.add_options()
      ("classifier", po::value(&f.classifier)->required(), "split classifier (native or TorchScript)")
      ("split", po::value(&f.split)->required(),
       "split point: a stage name (conv1, features.2, head), or 'all' to sweep every stage")
      ("targets", po::value(&f.targets)->required(), "target images: manifest, folder with manifest.csv, or folder of images")
      ("out", po::value(&f.out)->required(),
       "output folder: recon/, pairs.png, scores.csv, depth.csv, report.json, report.html, run.json")
      ("attack", opt(&f.attack), "comma list of white-box, inverse-net (needs --aux), gan-prior (needs --generator), or all")
      ("defense", opt(&f.defense),
       "comma list of defences on the activations, each a row of the trade-off table: none, noise=SIGMA "
       "(x activation RMS), quant=BITS, dropout=P")
      ("limit", opt(&f.limit), "use the first N targets only; 0 = all")
      ("crop", opt(&f.crop), "how the images (targets, --aux, --eval) are cut to the classifier's input: center "
       "(centred square: prepared crops) | none (whole image) | detect (OpenCV Haar) | dlib (alias align: photos, "
       "the largest face aligned as dlib does; a photo without a face is reported and skipped)")
      ("seed", opt(&f.sweep.seed), "seed of restarts, defences and the inverse network")
      ("wb-restarts", opt(&wb.restarts), "white-box: starts per target (restart 0 is grey), best feature loss kept")
      ("wb-steps", opt(&wb.loop.steps), "white-box: optimiser steps")
      ("wb-lr", opt(&wb.loop.lr), "white-box: learning rate")
      ("wb-optimizer", opt(&wb.loop.optimizer), "white-box: adam | lbfgs")
      ("wb-tv", opt(&wb.w_tv), "white-box: total-variation weight")
      ("wb-l2", opt(&wb.w_l2), "white-box: L2 weight")
      ("wb-bn", opt(&wb.w_bn), "white-box: DeepInversion BatchNorm-statistics weight (0 = off)")
      ("wb-batch", opt(&wb.batch), "white-box: targets x restarts optimised at once; 0 = auto (64 on CPU; on CUDA "
       "sized by a trial step)")
      ("wb-precision", opt(&wb.precision), "white-box: the classifier's arithmetic during the search, fp32 | bf16 | fp16 "
       "(CUDA only); pixels and the reported errors fp32")
      ("aux", po::value(&f.aux), "inverse-net: the attacker's own images (disjoint from --targets)")
      ("inv-epochs", opt(&inv.epochs), "inverse-net: training epochs")
      ("inv-width", opt(&inv.width), "inverse-net: decoder width")
      ("inv-lr", opt(&inv.lr), "inverse-net: Adam learning rate")
      ("inv-batch", opt(&inv.batch), "inverse-net: images per step")
      ("generator", po::value(&f.generator), "gan-prior: generator (native or TorchScript)")
      ("restarts", opt(&gp.restarts), "gan-prior: latent recovery's random starts per target")
      ("steps", opt(&gp.loop.steps), "gan-prior: latent recovery's optimiser steps")
      ("lr", opt(&gp.loop.lr), "gan-prior: latent recovery's learning rate")
      ("optimizer", opt(&gp.loop.optimizer), "gan-prior: latent recovery's adam | lbfgs")
      ("batch", opt(&gp.batch), "gan-prior: targets x restarts per chunk; 0 = auto (64 on CPU)")
      ("precision", opt(&gp.precision), "gan-prior: the generator's arithmetic during the search, fp32 | bf16 | fp16 "
       "(CUDA only); on the CPU bf16 pays off for compiled generators; errors reported in fp32")
      ("refine-steps", opt(&gp.refine_steps), "gan-prior: white-box refinement steps from G(z) (0 = latent only)")
      ("eval", po::value(&f.eval), "labelled images for the accuracy through the (defended) split; default: --targets")
      ("label-column", opt(&f.label_column), "manifest column holding the class ('identity' for classifiers of people)")
      ("embedder", po::value(&f.embedder), "identity embedder: adds identity match (cosine of original vs rebuilt)")
      ("match-threshold", opt(&f.sweep.match_threshold),
       "cosine above which a rebuilt image is the same person; 0 = calibrate at --match-far on impostor "
       "pairs of the target originals")
      ("match-far", opt(&f.sweep.match_far), "false-accept rate of the calibrated threshold")
      ("pairs", opt(&f.sweep.keep_recon), "targets shown in pairs.png and the report");
}

/// Flag strings -> sweep options, with the flag-level checks (before anything is loaded).
void resolve_flags(const Args& args, Flags& f) {
  auto& o = f.sweep;
  const auto& known = featinv::sweep_attacks();
  o.attacks = f.attack == "all" ? known : io::split_list(f.attack);
  RW_CHECK(!o.attacks.empty(), Usage, "--attack is empty (use white-box, inverse-net, gan-prior or all)");
  for (const auto& a : o.attacks)
    RW_CHECK(std::find(known.begin(), known.end(), a) != known.end(), Usage, "--attack: unknown attack '", a,
             "' (white-box, inverse-net, gan-prior, all)");
  auto has = [&](const std::string& a) { return std::find(o.attacks.begin(), o.attacks.end(), a) != o.attacks.end(); };
  RW_CHECK(!has("inverse-net") || !f.aux.empty(), Usage,
           "--attack inverse-net needs --aux MANIFEST: images the attacker owns, disjoint from --targets");
  RW_CHECK(!has("gan-prior") || !f.generator.empty(), Usage, "--attack gan-prior needs --generator G");
  for (const char* flag : {"restarts", "steps", "lr", "optimizer", "batch", "precision"})  // the names every command gives latent recovery
    RW_CHECK(has("gan-prior") || !flag_given(args, flag), Usage, "--", flag, " sets the latent recovery of --attack "
             "gan-prior, which this run does not use; white-box inversion's is --wb-", flag);
  o.defenses.clear();
  for (const auto& s : io::split_list(f.defense)) o.defenses.push_back(featinv::Defense::parse(s));
  if (o.defenses.empty()) o.defenses.push_back({});
  RW_CHECK(o.match_threshold >= 0 && o.match_threshold < 1, Usage, "--match-threshold must be in [0, 1)");
  o.splits.clear();
  if (f.split != "all") {
    o.splits = io::split_list(f.split);
    RW_CHECK(!o.splits.empty(), Usage, "--split is empty");
  }
  // the GAN prior's refinement follows the white-box flags
  o.gan_prior.refine = o.white_box;
}

nlohmann::json options_json(const Flags& f) {
  const auto& wb = f.sweep.white_box;
  const auto& inv = f.sweep.inverse_net;
  const auto& gp = f.sweep.gan_prior;
  return {{"classifier", f.classifier}, {"split", f.split}, {"targets", f.targets}, {"out", f.out},
          {"attack", f.sweep.attacks}, {"defense", f.defense}, {"limit", f.limit}, {"seed", f.sweep.seed},
          {"wb_restarts", wb.restarts}, {"wb_steps", wb.loop.steps}, {"wb_lr", wb.loop.lr},
          {"wb_optimizer", wb.loop.optimizer}, {"wb_tv", wb.w_tv}, {"wb_l2", wb.w_l2}, {"wb_bn", wb.w_bn},
          {"wb_batch", wb.batch}, {"wb_precision", wb.precision}, {"aux", f.aux}, {"inv_epochs", inv.epochs}, {"inv_width", inv.width},
          {"inv_lr", inv.lr}, {"inv_batch", inv.batch}, {"generator", f.generator},
          {"restarts", gp.restarts}, {"steps", gp.loop.steps}, {"lr", gp.loop.lr}, {"optimizer", gp.loop.optimizer},
          {"batch", gp.batch}, {"precision", gp.precision}, {"refine_steps", gp.refine_steps},
          {"eval", f.eval}, {"label_column", f.label_column}, {"embedder", f.embedder},
          {"match_threshold", f.sweep.match_threshold}, {"match_far", f.sweep.match_far}, {"crop", f.crop}};
}

/// Everything the sweep runs on; `inputs` points into the members.
struct Loaded {
  std::unique_ptr<models::SplitClassifier> classifier;
  Data targets, aux;
  std::unique_ptr<models::Generator> generator;
  std::unique_ptr<models::Embedder> embedder;
  featinv::SweepInputs inputs;
  bool multi = false;  ///< more than one split or defence: outputs are named split/defence/attack
  std::string cell_name(const featinv::SweepCell& c, const char* sep) const {
    return multi ? c.split + sep + c.defense.str() + sep + c.attack : c.attack;
  }
};

void load_aux(const Flags& f, Loaded& l, io::RunRecord& record) {
  l.aux = load_data(f.aux, "--aux", l.classifier->input_shape(), 0, f.crop, record);
  // the same file, or a copy of it: by contents (paths are canonical, so symlinks and ./ count too)
  std::set<std::string> tset;
  for (const auto& p : l.targets.paths) tset.insert(io::file_content_hash(p));
  int64_t shared = 0;
  std::string first;
  for (const auto& p : l.aux.paths)
    if (tset.count(io::file_content_hash(p)) && shared++ == 0) first = p;
  RW_CHECK(shared == 0, Usage, "--aux ", f.aux, " shares ", shared, shared == 1 ? " image" : " images", " with --targets (first: ", first,
           "); the attacker's auxiliary data must be disjoint from the targets");
  l.inputs.aux = l.aux.batch.images;
}

void load_eval(const Flags& f, Loaded& l, io::RunRecord& record) {
  std::vector<std::string> class_names;
  if (models::is_native(f.classifier)) {
    auto arch = models::read_native_arch(f.classifier);
    if (arch.contains("class_names")) class_names = arch["class_names"].get<std::vector<std::string>>();
  }
  const int64_t classes = l.classifier->num_classes();
  if (!f.eval.empty()) {
    auto e = load_data(f.eval, "--eval", l.classifier->input_shape(), 0, f.crop, record);
    l.inputs.eval_images = e.batch.images;
    l.inputs.eval_labels = labels_of(e, f.label_column, class_names, classes, f.eval);
    RW_CHECK(l.inputs.eval_labels.defined(), Input, "--eval ", f.eval, " has no column '", f.label_column,
             "'; pass --label-column NAME or add the column");
  } else {
    l.inputs.eval_labels = labels_of(l.targets, f.label_column, class_names, classes, f.targets);
    if (!l.inputs.eval_labels.defined())
      log_warn("targets have no '", f.label_column, "' column: no accuracy through the split (pass --eval MANIFEST)");
  }
}

Loaded load_inputs(const Flags& f, io::RunRecord& record) {
  Loaded l;
  l.classifier = models::load_classifier(f.classifier);
  record.results()["classifier"] = l.classifier->describe();
  for (const auto& s : f.sweep.splits) models::check_split(*l.classifier, s);
  const size_t n_splits = f.sweep.splits.empty() ? l.classifier->split_points().size() : f.sweep.splits.size();
  l.multi = n_splits > 1 || f.sweep.defenses.size() > 1;
  l.targets = load_data(f.targets, "--targets", l.classifier->input_shape(), f.limit, f.crop, record);
  l.inputs.targets = l.targets.batch.images;
  l.inputs.target_identities = identity_ids(l.targets);
  const auto& attacks = f.sweep.attacks;
  if (std::find(attacks.begin(), attacks.end(), "inverse-net") != attacks.end()) load_aux(f, l, record);
  load_eval(f, l, record);
  if (std::find(attacks.begin(), attacks.end(), "gan-prior") != attacks.end()) {
    l.generator = models::load_generator(f.generator);
    l.inputs.generator = l.generator.get();
  }
  if (!f.embedder.empty()) {
    l.embedder = models::load_embedder(f.embedder);
    l.inputs.embedder = l.embedder.get();
    record.results()["embedder"] = l.embedder->describe();
  }
  record.mark("load");
  return l;
}

/// Per finished cell: its reconstructions as PNGs and a log line.
void on_cell(const Flags& f, const Loaded& l, const featinv::SweepCell& c) {
  progress_done();
  const std::string dir = f.out + "/recon/" + l.cell_name(c, "/") + "/";
  for (int64_t j = 0; j < c.recon.size(0); ++j) io::save_image(dir + std::to_string(j) + ".png", c.recon[j]);
  log_info(c.split, " ", c.defense.str(), " ", c.attack, ": PSNR ", fmt_g(c.psnr_mean), " dB, SSIM ",
           fmt_g(c.ssim_mean), std::isnan(c.accuracy) ? "" : ", accuracy " + fmt_g(c.accuracy), " (",
           report::fmt(c.seconds, 1), " s)");
}

void record_match(const featinv::SweepResult& r, io::RunRecord& record) {
  if (!r.identity) return;
  const auto& m = r.match;
  if (m.calibrated) {
    if (!m.far_resolved) log_warn(m.reason);
    record.results()["match_threshold_calibration"] = {{"far", m.far}, {"impostor_pairs", m.impostor_pairs},
                                                       {"threshold", m.threshold}, {"far_actual", m.far_actual},
                                                       {"far_resolved", m.far_resolved}, {"reason", m.reason}};
  }
  record.results()["match_threshold"] = m.threshold;
}

void write_scores(const Flags& f, const Data& tgt, const featinv::SweepResult& r) {
  io::CsvRow header{"row", "path", "identity", "split", "defense", "attack", "psnr", "ssim", "feature_loss"};
  if (r.identity) {
    header.push_back("id_cos");
    header.push_back("id_match");
  }
  std::string csv = io::csv_line(header);
  for (const auto& c : r.cells)
    for (int64_t j = 0; j < r.targets; ++j) {
      const auto& e = tgt.manifest.entries[tgt.batch.indices[size_t(j)]];
      io::CsvRow cells{std::to_string(j), e.path, e.identity, c.split, c.defense.str(), c.attack,
                       fmt_g(c.psnr[j].item<double>()), fmt_g(c.ssim[j].item<double>()),
                       fmt_g(c.feature_loss[j].item<double>())};
      if (r.identity) {
        cells.push_back(fmt_g(c.id_cos[j].item<double>()));
        cells.push_back(c.id_match[j].item<bool>() ? "1" : "0");
      }
      csv += io::csv_line(cells);
    }
  io::write_file_atomic(f.out + "/scores.csv", csv);
}

/// depth.csv (also the HTML table) and the per-cell JSON of report.json.
struct Aggregates {
  io::CsvRow header;
  std::vector<io::CsvRow> table;
  /// the same for people: rounded to what the data supports (PSNR to 0.1 dB, SSIM and rates to
  /// 0.001, seconds to 0.1)
  io::CsvRow html_header;
  std::vector<io::CsvRow> html;
  nlohmann::json json = nlohmann::json::array();
};

Aggregates write_depth(const Flags& f, const featinv::SweepResult& r) {
  Aggregates a;
  a.header = {"split", "depth", "defense", "attack", "accuracy", "psnr_mean", "psnr_median", "ssim_mean",
              "ssim_median", "feature_loss_median", "seconds"};
  if (r.identity) a.header.push_back("id_match_rate");
  a.html_header = {"split", "defence", "attack", "accuracy", "PSNR dB mean", "PSNR dB median", "SSIM mean",
                   "SSIM median", "feature loss median", "seconds"};
  if (r.identity) a.html_header.push_back("identity match rate");
  std::string csv = io::csv_line(a.header);
  for (const auto& c : r.cells) {
    const bool acc = !std::isnan(c.accuracy);
    io::CsvRow cells{c.split, std::to_string(c.depth), c.defense.str(), c.attack, acc ? fmt_g(c.accuracy) : "",
                     fmt_g(c.psnr_mean), fmt_g(c.psnr_median), fmt_g(c.ssim_mean), fmt_g(c.ssim_median),
                     fmt_g(c.feature_loss_median), report::fmt(c.seconds, 2)};
    nlohmann::json j = {{"split", c.split}, {"depth", c.depth}, {"defense", c.defense.str()}, {"attack", c.attack},
                        {"psnr_mean", c.psnr_mean}, {"psnr_median", c.psnr_median}, {"ssim_mean", c.ssim_mean},
                        {"ssim_median", c.ssim_median}, {"feature_loss_median", c.feature_loss_median},
                        {"seconds", c.seconds}, {"targets", r.targets}};
    if (acc) j["accuracy"] = c.accuracy;
    io::CsvRow shown{c.split, c.defense.str(), c.attack, acc ? report::fmt(c.accuracy, 3) : "n/a",
                     report::fmt(c.psnr_mean, 1), report::fmt(c.psnr_median, 1), report::fmt(c.ssim_mean, 3),
                     report::fmt(c.ssim_median, 3), report::fmt_g(c.feature_loss_median, 3), report::fmt(c.seconds, 1)};
    if (r.identity) shown.push_back(report::fmt(c.id_match_rate, 3));
    a.html.push_back(shown);
    if (r.identity) {
      cells.push_back(fmt_g(c.id_match_rate));
      j["id_match_rate"] = c.id_match_rate;
      j["id_cos_mean"] = c.id_cos_mean;
    }
    csv += io::csv_line(cells);
    a.json.push_back(j);
    a.table.push_back(cells);
  }
  io::write_file_atomic(f.out + "/depth.csv", csv);
  return a;
}

void write_report_json(const Flags& f, const Loaded& l, const featinv::SweepResult& r, const Aggregates& a,
                       const io::RunRecord& record) {
  nlohmann::json report = {{"command", "split-attack"}, {"classifier", l.classifier->describe()},
                           {"targets", r.targets}, {"skipped", record.skipped()}, {"splits", r.splits},
                           {"attacks", f.sweep.attacks}, {"defenses", io::split_list(f.defense)}, {"results", a.json}};
  if (r.identity) {
    report["match_threshold"] = r.match.threshold;
    if (r.match.calibrated)
      report["match_calibration"] = {{"far", r.match.far}, {"impostor_pairs", r.match.impostor_pairs},
                                     {"far_resolved", r.match.far_resolved}, {"reason", r.match.reason}};
  }
  io::write_file_atomic(f.out + "/report.json", io::dump_json(report, 2) + "\n");
}

/// pairs.png: rows = targets, columns = original | each configuration, labelled, wrapped into bands
/// at the report's 1080 px. Undefined when
/// no target is shown (--pairs 0).
at::Tensor write_pairs(const Flags& f, const Loaded& l, const featinv::SweepResult& r,
                       std::vector<std::string>& names) {
  const int64_t k = std::min<int64_t>(f.sweep.keep_recon, r.targets);
  if (k <= 0) return {};
  std::vector<at::Tensor> cols{l.inputs.targets.slice(0, 0, k)};
  names = {"original"};
  std::vector<std::string> headers = names;
  for (const auto& c : r.cells) {  // every configuration, the deepest split included; wide grids wrap
    cols.push_back(c.recon);
    names.push_back(l.cell_name(c, " "));
    headers.push_back(l.cell_name(c, "\n"));
  }
  std::vector<at::Tensor> tiles;
  for (int64_t j = 0; j < k; ++j)
    for (const auto& col : cols) tiles.push_back(col[j]);
  io::GridLabels gl;
  gl.title = "each target rebuilt from the activations at each split (x defence, attack)";
  gl.columns = headers;
  for (int64_t j = 0; j < k; ++j) gl.rows.push_back({"target " + std::to_string(j)});
  gl.repeat_first = true;  // each band of columns starts with the original again
  gl.min_side = 64;
  gl.max_width = 1080;  // the report's page width
  auto grid = io::labelled_grid(torch::stack(tiles), int(cols.size()), gl);
  io::save_image(f.out + "/pairs.png", grid);
  return grid;
}

int64_t max_depth(const featinv::SweepResult& r) {
  int64_t m = -1;
  for (const auto& c : r.cells) m = std::max<int64_t>(m, c.depth);
  return m;
}

void html_depth_plots(report::HtmlReport& html, const Flags& f, const featinv::SweepResult& r) {
  html.heading("Quality vs split depth");
  const auto& defenses = f.sweep.defenses;
  for (const bool psnr : {true, false}) {
    std::vector<report::Series> series;
    for (const auto& d : defenses)
      for (const auto& a : f.sweep.attacks) {
        report::Series se;
        se.name = a + (defenses.size() > 1 ? " " + d.str() : "");
        se.dashed = d.kind != "none";
        for (const auto& c : r.cells)
          if (c.attack == a && c.defense.str() == d.str()) {
            se.x.push_back(double(c.depth));
            se.y.push_back(psnr ? c.psnr_mean : c.ssim_mean);
          }
        series.push_back(se);
      }
    report::PlotOptions po;
    po.title = psnr ? "PSNR (dB) by split stage" : "SSIM by split stage";
    po.x_label = "split stage (input to output)";
    po.y_label = psnr ? "PSNR dB" : "SSIM";
    po.x_names.assign(size_t(std::max<int64_t>(0, max_depth(r) + 1)), "");
    for (const auto& c : r.cells)
      if (c.depth >= 0 && size_t(c.depth) < po.x_names.size()) po.x_names[size_t(c.depth)] = c.split;
    auto fallback = po;
    fallback.x_names.clear();
    fallback.x_label = "stage index (see table)";
    html.vega(psnr ? "psnr-by-stage" : "ssim-by-stage", report::vega_line_spec(series, po), report::svg_plot(series, fallback));
  }
}

std::vector<std::string> html_summary(const Loaded& l, const featinv::SweepResult& r, const io::RunRecord& record) {
  std::vector<std::string> summary{"classifier: " + l.classifier->describe(),
                                   std::to_string(r.targets) + " targets (" + std::to_string(record.skipped()) +
                                       " skipped), splits: " + std::to_string(r.splits.size())};
  for (const auto& c : r.cells)
    if (c.defense.kind == "none" && (r.splits.size() == 1 || &c == &r.cells.front() || &c == &r.cells.back()))
      summary.push_back(c.split + " " + c.attack + ": PSNR " + report::fmt(c.psnr_mean, 2) + " dB, SSIM " +
                        report::fmt(c.ssim_mean, 3) +
                        (std::isnan(c.accuracy) ? "" : ", accuracy " + report::fmt(c.accuracy, 3)));
  if (r.identity && !r.match.far_resolved) summary.push_back("identity match threshold: " + r.match.reason);
  return summary;
}

void write_html(const Flags& f, const Loaded& l, const featinv::SweepResult& r, const Aggregates& a,
                const at::Tensor& grid, const std::vector<std::string>& names, const io::RunRecord& record) {
  report::HtmlReport html("rewind split-attack: " + l.classifier->describe());
  html.summary(html_summary(l, r, record));
  if (r.splits.size() > 1) html_depth_plots(html, f, r);
  if (f.sweep.defenses.size() > 1) {
    html.heading("Utility / privacy trade-off");
    html.paragraph("Accuracy of the classifier through the defended split beside the attack quality on the same "
                   "defended activations: a good defence keeps accuracy while PSNR/SSIM fall.");
    nlohmann::json values = nlohmann::json::array();
    for (const auto& c : r.cells)
      if (!std::isnan(c.accuracy))
        values.push_back({{"split", c.split}, {"defence", c.defense.str()}, {"attack", c.attack}, {"accuracy", c.accuracy},
                          {"psnr", c.psnr_mean}});
    if (!values.empty()) {
      nlohmann::json spec = {
          {"$schema", "https://vega.github.io/schema/vega-lite/v5.json"},
          {"title", "Accuracy kept vs what the attacker rebuilds (one point per split x defence x attack)"},
          {"width", 480}, {"height", 300}, {"data", {{"values", values}}},
          {"mark", {{"type", "point"}, {"filled", true}, {"size", 70}}},
          {"encoding", {{"x", {{"field", "accuracy"}, {"type", "quantitative"}, {"title", "accuracy through the split"},
                               {"scale", {{"zero", false}}}}},
                        {"y", {{"field", "psnr"}, {"type", "quantitative"}, {"title", "attack PSNR dB (mean)"},
                               {"scale", {{"zero", false}}}}},
                        {"color", {{"field", "defence"}, {"type", "nominal"}, {"legend", {{"orient", "bottom"}}}}},
                        {"shape", {{"field", "attack"}, {"type", "nominal"}, {"legend", {{"orient", "bottom"}}}}},
                        {"tooltip", nlohmann::json::array({{{"field", "split"}}, {{"field", "defence"}}, {{"field", "attack"}},
                                                           {{"field", "accuracy"}, {"format", ".3f"}},
                                                           {{"field", "psnr"}, {"title", "PSNR dB"}, {"format", ".1f"}}})}}}};
      html.vega("tradeoff", spec.dump());
    } else {
      html.paragraph("Accuracy: n/a. No image with a class label reached the classifier (give --eval, labelled images, "
                     "or targets with a --label-column the classifier knows), so the utility side cannot be shown.");
    }
  }
  html.heading("Per configuration (means over targets)");
  html.table(a.html_header, a.html);
  html.paragraph("Rounded for reading (PSNR to 0.1 dB, SSIM to 0.001); depth.csv and report.json keep 4 significant digits.");
  if (grid.defined()) {
    html.heading("Originals and reconstructions");
    std::string legend;
    for (size_t i = 0; i < names.size(); ++i) legend += (i ? " | " : "") + names[i];
    html.paragraph("columns (named in the picture; wide sweeps wrap into bands, each starting with the original): " + legend);
    html.raw(report::img_png(io::encode_png(grid), "pairs", std::min<int>(1080, int(grid.size(2)))));
  }
  if (record.skipped() > 0) html.paragraph(std::to_string(record.skipped()) + " input images skipped: see run.json");
  html.details("run record", io::dump_json(record.to_json(), 2));
  html.write(f.out + "/report.html");
}

void print_summary(const Flags& f, const featinv::SweepResult& r) {
  std::printf("split-attack on %lld targets -> %s\n", (long long)r.targets, f.out.c_str());
  std::printf("%-10s %-12s %-12s %9s %8s %8s\n", "split", "defense", "attack", "accuracy", "PSNR", "SSIM");
  for (const auto& c : r.cells)
    std::printf("%-10s %-12s %-12s %9s %8.2f %8.3f\n", c.split.c_str(), c.defense.str().c_str(), c.attack.c_str(),
                std::isnan(c.accuracy) ? "-" : report::fmt(c.accuracy, 3).c_str(), c.psnr_mean, c.ssim_mean);
}

int split_attack_cmd(const Args& args) {
  CommonOptions common;
  Flags f;
  po::options_description desc("split-attack options");
  add_flags(desc, f);
  if (!parse_command("rewind split-attack --classifier C --split LAYER|all --targets M --out DIR [options]", args, desc,
                     common))
    return 0;
  resolve_flags(args, f);
  check_precision_flag("--wb-precision", f.sweep.white_box.precision);
  check_precision_flag("--precision", f.sweep.gan_prior.precision);
  io::RunRecord record("split-attack");
  record.options() = options_json(f);
  record.set_seed(f.sweep.seed);
  io::ensure_dir(f.out);
  featinv::SweepResult res;
  run_and_record(record, f.out + "/run.json", [&] {
    auto l = load_inputs(f, record);
    res = featinv::run_sweep(*l.classifier, l.inputs, f.sweep, progress_fn(),
                             [&](const featinv::SweepCell& c) { on_cell(f, l, c); });
    record_match(res, record);
    record.mark("attack");
    write_scores(f, l.targets, res);
    auto agg = write_depth(f, res);
    write_report_json(f, l, res, agg, record);
    std::vector<std::string> names;
    auto grid = write_pairs(f, l, res, names);
    write_html(f, l, res, agg, grid, names, record);
    record.results()["targets"] = res.targets;
    record.results()["configurations"] = res.cells.size();
  });
  print_summary(f, res);
  return 0;
}

}  // namespace

int cmd_split_attack(const Args& args) { return split_attack_cmd(args); }

}  // namespace rw::cli
