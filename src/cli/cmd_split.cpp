// rewind split-attack: rebuild input images from the activations of a split classifier.
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "cli.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/data/datasets.h"
#include "rewind/featinv/featinv.h"
#include "rewind/identity/calibration.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/models/native.h"
#include "rewind/report/html.h"

namespace fs = std::filesystem;

namespace rw::cli {

namespace {

const std::vector<std::string> kAttacks = {"white-box", "inverse-net", "gan-prior"};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string fmt_g(double v, const char* f = "%.4g") {
  char b[32];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

double median_of(at::Tensor t) {
  t = t.flatten().to(torch::kDouble);
  if (t.numel() == 0) return 0;
  return std::get<0>(t.sort()).index({t.numel() / 2}).item<double>();
}

/// Images of a manifest / folder in the classifier's shape; bad files are skipped and recorded.
struct Data {
  io::Manifest manifest;
  io::ImageBatch batch;
  std::vector<std::string> paths;  ///< resolved path of each loaded image
};

Data load_data(const std::string& where, const std::string& flag, const models::ImageShape& shape, int64_t limit,
               io::RunRecord& record) {
  Data d;
  d.manifest = data::open_data(where);
  if (limit > 0 && int64_t(d.manifest.entries.size()) > limit) d.manifest.entries.resize(size_t(limit));
  std::vector<std::string> paths;
  for (size_t i = 0; i < d.manifest.entries.size(); ++i) paths.push_back(d.manifest.resolve(i));
  d.batch = io::load_images(paths, {shape.channels, shape.height, io::ResizeMode::kCenterCrop}, progress_fn());
  progress_done();
  for (const auto& [i, why] : d.batch.skipped) record.add_skip(paths[i], why);
  if (!d.batch.skipped.empty())
    log_warn(d.batch.skipped.size(), " of ", paths.size(), " images of ", flag, " ", where, " skipped; first: ",
             d.batch.skipped.front().second);
  for (size_t i : d.batch.indices) d.paths.push_back(fs::weakly_canonical(paths[i]).string());
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

struct Row {  // one (split, defence, attack) configuration
  std::string split, defense, attack;
  int64_t depth = 0;
  double accuracy = -1, seconds = 0;
  at::Tensor psnr, ssim, feature_loss, id_cos;
};

int split_attack_cmd(const Args& args) {
  CommonOptions common;
  featinv::WhiteBoxOptions wb;
  featinv::InverseNetOptions inv;
  featinv::GanPriorOptions gp;
  std::string classifier, split, targets, out, attack = "white-box", aux, generator, defense = "none", eval,
                                                 label_column = "label", embedder;
  double match_threshold = 0, match_far = 1e-3;
  int64_t limit = 0, pairs_rows = 16;
  po::options_description desc("split-attack options");
  desc.add_options()
      ("classifier", po::value(&classifier)->required(), "split classifier (native or TorchScript)")
      ("split", po::value(&split)->required(),
       "split point: a stage name (conv1, features.2, head), or 'all' to sweep every stage")
      ("targets", po::value(&targets)->required(), "target images: manifest, folder with manifest.csv, or folder of images")
      ("out", po::value(&out)->required(),
       "output folder: recon/, pairs.png, scores.csv, depth.csv, report.json, report.html, run.json")
      ("attack", opt(&attack), "comma list of white-box, inverse-net (needs --aux), gan-prior (needs --generator), or all")
      ("defense", opt(&defense),
       "comma list of defences on the activations, each a row of the trade-off table: none, noise=SIGMA "
       "(x activation RMS), quant=BITS, dropout=P")
      ("limit", opt(&limit), "use the first N targets only; 0 = all")
      ("seed", opt(&wb.seed), "seed of restarts, defences and the inverse network")
      ("restarts", opt(&wb.restarts), "white-box: starts per target (restart 0 is grey), best feature loss kept")
      ("steps", opt(&wb.loop.steps), "white-box: optimiser steps")
      ("lr", opt(&wb.loop.lr), "white-box: learning rate")
      ("optimizer", opt(&wb.loop.optimizer), "white-box: adam | lbfgs")
      ("w-tv", opt(&wb.w_tv), "white-box: total-variation weight")
      ("w-l2", opt(&wb.w_l2), "white-box: L2 weight")
      ("w-bn", opt(&wb.w_bn), "white-box: DeepInversion BatchNorm-statistics weight (0 = off)")
      ("batch", opt(&wb.batch), "targets x restarts optimised at once; 0 = auto (64 on CPU)")
      ("aux", po::value(&aux), "inverse-net: the attacker's own images (disjoint from --targets)")
      ("inv-epochs", opt(&inv.epochs), "inverse-net: training epochs")
      ("inv-width", opt(&inv.width), "inverse-net: decoder width")
      ("inv-lr", opt(&inv.lr), "inverse-net: Adam learning rate")
      ("inv-batch", opt(&inv.batch), "inverse-net: images per step")
      ("generator", po::value(&generator), "gan-prior: generator (native or TorchScript)")
      ("gan-restarts", opt(&gp.restarts), "gan-prior: latent starts per target")
      ("gan-steps", opt(&gp.loop.steps), "gan-prior: optimiser steps")
      ("refine-steps", opt(&gp.refine_steps), "gan-prior: white-box refinement steps from G(z) (0 = latent only)")
      ("eval", po::value(&eval), "labelled images for the accuracy through the (defended) split; default: --targets")
      ("label-column", opt(&label_column), "manifest column holding the class ('identity' for classifiers of people)")
      ("embedder", po::value(&embedder), "identity embedder: adds identity match (cosine of original vs rebuilt)")
      ("match-threshold", opt(&match_threshold),
       "cosine above which a rebuilt image is the same person; 0 = calibrate at --match-far on impostor "
       "pairs of the target originals")
      ("match-far", opt(&match_far), "false-accept rate of the calibrated threshold")
      ("pairs", opt(&pairs_rows), "targets shown in pairs.png and the report");
  if (!parse_command("rewind split-attack --classifier C --split LAYER|all --targets M --out DIR [options]", args, desc,
                     common))
    return 0;
  std::vector<std::string> attacks = attack == "all" ? kAttacks : split_list(attack);
  RW_CHECK(!attacks.empty(), Usage, "--attack is empty (use white-box, inverse-net, gan-prior or all)");
  for (const auto& a : attacks)
    RW_CHECK(std::find(kAttacks.begin(), kAttacks.end(), a) != kAttacks.end(), Usage, "--attack: unknown attack '", a,
             "' (white-box, inverse-net, gan-prior, all)");
  auto has = [&](const std::string& a) { return std::find(attacks.begin(), attacks.end(), a) != attacks.end(); };
  RW_CHECK(!has("inverse-net") || !aux.empty(), Usage,
           "--attack inverse-net needs --aux MANIFEST: images the attacker owns, disjoint from --targets");
  RW_CHECK(!has("gan-prior") || !generator.empty(), Usage, "--attack gan-prior needs --generator G");
  std::vector<featinv::Defense> defenses;
  for (const auto& s : split_list(defense)) defenses.push_back(featinv::Defense::parse(s));
  if (defenses.empty()) defenses.push_back({});
  RW_CHECK(match_threshold >= 0 && match_threshold < 1, Usage, "--match-threshold must be in [0, 1)");
  inv.seed = gp.seed = wb.seed;
  gp.batch = wb.batch;
  gp.refine = wb;

  io::RunRecord record("split-attack");
  record.options() = {{"classifier", classifier}, {"split", split}, {"targets", targets}, {"out", out},
                      {"attack", attacks}, {"defense", defense}, {"limit", limit}, {"seed", wb.seed},
                      {"restarts", wb.restarts}, {"steps", wb.loop.steps}, {"lr", wb.loop.lr},
                      {"optimizer", wb.loop.optimizer}, {"w_tv", wb.w_tv}, {"w_l2", wb.w_l2}, {"w_bn", wb.w_bn},
                      {"batch", wb.batch}, {"aux", aux}, {"inv_epochs", inv.epochs}, {"inv_width", inv.width},
                      {"inv_lr", inv.lr}, {"inv_batch", inv.batch}, {"generator", generator},
                      {"gan_restarts", gp.restarts}, {"gan_steps", gp.loop.steps}, {"refine_steps", gp.refine_steps},
                      {"eval", eval}, {"label_column", label_column}, {"embedder", embedder},
                      {"match_threshold", match_threshold}, {"match_far", match_far}};
  record.set_seed(wb.seed);
  io::ensure_dir(out);
  std::vector<Row> rows;
  int64_t n_targets = 0;
  run_and_record(record, out + "/run.json", [&] {
    auto c = models::load_classifier(classifier);
    record.results()["classifier"] = c->describe();
    const auto shape = c->input_shape();
    std::vector<std::string> splits = split == "all" ? c->split_points() : split_list(split);
    RW_CHECK(!splits.empty(), Usage, "--split is empty");
    for (const auto& s : splits) models::check_split(*c, s);
    const auto all_splits = c->split_points();
    std::vector<std::string> class_names;
    if (models::is_native(classifier)) {
      auto arch = models::read_native_arch(classifier);
      if (arch.contains("class_names")) class_names = arch["class_names"].get<std::vector<std::string>>();
    }

    auto tgt = load_data(targets, "--targets", shape, limit, record);
    const auto x = tgt.batch.images;
    n_targets = x.size(0);
    Data auxd;
    if (has("inverse-net")) {
      auxd = load_data(aux, "--aux", shape, 0, record);
      std::set<std::string> tset(tgt.paths.begin(), tgt.paths.end());
      int64_t shared = 0;
      std::string first;
      for (const auto& p : auxd.paths)
        if (tset.count(p) && shared++ == 0) first = p;
      RW_CHECK(shared == 0, Usage, "--aux ", aux, " shares ", shared, " images with --targets (first: ", first,
               "); the attacker's auxiliary data must be disjoint from the targets");
    }
    at::Tensor eval_x = x, eval_y;
    if (!eval.empty()) {
      auto e = load_data(eval, "--eval", shape, 0, record);
      eval_x = e.batch.images;
      eval_y = labels_of(e, label_column, class_names, c->num_classes(), eval);
      RW_CHECK(eval_y.defined(), Input, "--eval ", eval, " has no column '", label_column,
               "'; pass --label-column NAME or add the column");
    } else {
      eval_y = labels_of(tgt, label_column, class_names, c->num_classes(), targets);
      if (!eval_y.defined())
        log_warn("targets have no '", label_column, "' column: no accuracy through the split (pass --eval MANIFEST)");
    }
    std::unique_ptr<models::Generator> g;
    if (has("gan-prior")) g = models::load_generator(generator);
    std::unique_ptr<models::Embedder> emb;
    at::Tensor emb_orig;
    if (!embedder.empty()) {
      emb = models::load_embedder(embedder);
      torch::NoGradGuard ng;
      emb_orig = emb->embed(x);
      if (match_threshold == 0) {
        // impostor pairs among the originals (different identities)
        std::map<std::string, int64_t> ids;
        std::vector<int64_t> lab;
        for (size_t i : tgt.batch.indices) lab.push_back(ids.emplace(tgt.manifest.entries[i].identity, int64_t(ids.size())).first->second);
        auto l = torch::tensor(lab, torch::kLong);
        auto sim = emb_orig.matmul(emb_orig.t());
        auto mask = l.unsqueeze(0).ne(l.unsqueeze(1)).triu(1);
        auto imp = sim.masked_select(mask);
        RW_CHECK(imp.numel() > 0, Usage, "--embedder: the targets hold one identity, so no threshold can be "
                 "calibrated; pass --match-threshold");
        match_threshold = identity::threshold_for_far(imp, match_far);
        if (double(imp.numel()) * match_far < 1)
          log_warn("only ", imp.numel(), " impostor pairs for FAR ", match_far, ": the threshold is the maximum impostor score");
        record.results()["match_threshold_calibration"] = {{"far", match_far}, {"impostor_pairs", imp.numel()},
                                                           {"threshold", match_threshold}};
      }
      record.results()["embedder"] = emb->describe();
      record.results()["match_threshold"] = match_threshold;
    }
    record.mark("load");

    io::CsvRow header{"row", "path", "identity", "split", "defense", "attack", "psnr", "ssim", "feature_loss"};
    if (emb) {
      header.push_back("id_cos");
      header.push_back("id_match");
    }
    std::string scores = io::csv_line(header);
    const bool multi = splits.size() > 1 || defenses.size() > 1;
    std::vector<at::Tensor> pair_cols{x.slice(0, 0, std::min<int64_t>(pairs_rows, n_targets))};
    std::vector<std::string> pair_names{"original"};
    auto progress = progress_fn();
    for (const auto& s : splits) {
      const int64_t depth = std::find(all_splits.begin(), all_splits.end(), s) - all_splits.begin();
      auto clean = featinv::activations(*c, s, x);
      for (const auto& d : defenses) {
        auto acts = featinv::defend(clean, d, wb.seed);
        double acc = eval_y.defined() ? featinv::accuracy_through_split(*c, s, eval_x, eval_y, d, wb.seed) : -1;
        for (const auto& a : attacks) {
          featinv::AttackResult r;
          if (a == "white-box") r = featinv::white_box(*c, s, acts, wb, progress);
          else if (a == "inverse-net") r = featinv::inverse_network(*c, s, acts, auxd.batch.images, d, inv, progress);
          else r = featinv::gan_prior(*g, *c, s, acts, gp, progress);
          progress_done();
          auto q = featinv::quality(x, r.recon);
          Row row{s, d.str(), a, depth, acc, r.seconds, q.psnr, q.ssim, r.feature_loss, {}};
          if (emb) {
            torch::NoGradGuard ng;
            row.id_cos = (emb_orig * emb->embed(r.recon)).sum(1);
          }
          const std::string sub = multi ? s + "/" + d.str() + "/" + a : a;
          for (int64_t j = 0; j < n_targets; ++j) {
            io::save_image(out + "/recon/" + sub + "/" + std::to_string(j) + ".png", r.recon[j]);
            const auto& e = tgt.manifest.entries[tgt.batch.indices[size_t(j)]];
            io::CsvRow cells{std::to_string(j), e.path, e.identity, s, d.str(), a, fmt_g(q.psnr[j].item<double>()),
                             fmt_g(q.ssim[j].item<double>()), fmt_g(r.feature_loss[j].item<double>())};
            if (emb) {
              const double cs = row.id_cos[j].item<double>();
              cells.push_back(fmt_g(cs));
              cells.push_back(cs > match_threshold ? "1" : "0");
            }
            scores += io::csv_line(cells);
          }
          if (pair_cols.size() < 16) {
            pair_cols.push_back(r.recon.slice(0, 0, std::min<int64_t>(pairs_rows, n_targets)));
            pair_names.push_back(multi ? s + " " + d.str() + " " + a : a);
          }
          log_info(s, " ", d.str(), " ", a, ": PSNR ", fmt_g(q.psnr.mean().item<double>()), " dB, SSIM ",
                   fmt_g(q.ssim.mean().item<double>()), acc >= 0 ? ", accuracy " + fmt_g(acc) : "", " (",
                   fmt_g(r.seconds, "%.1f"), " s)");
          rows.push_back(std::move(row));
        }
      }
    }
    record.mark("attack");
    io::write_file_atomic(out + "/scores.csv", scores);

    // aggregates: depth.csv + report.json
    io::CsvRow dh{"split", "depth", "defense", "attack", "accuracy", "psnr_mean", "psnr_median", "ssim_mean",
                  "ssim_median", "feature_loss_median", "seconds"};
    if (emb) dh.push_back("id_match_rate");
    std::string depth_csv = io::csv_line(dh);
    nlohmann::json agg = nlohmann::json::array();
    std::vector<std::vector<std::string>> table;
    for (const auto& r : rows) {
      const double pm = r.psnr.mean().item<double>(), sm = r.ssim.mean().item<double>();
      io::CsvRow cells{r.split, std::to_string(r.depth), r.defense, r.attack, r.accuracy >= 0 ? fmt_g(r.accuracy) : "",
                       fmt_g(pm), fmt_g(median_of(r.psnr)), fmt_g(sm), fmt_g(median_of(r.ssim)),
                       fmt_g(median_of(r.feature_loss)), fmt_g(r.seconds, "%.2f")};
      nlohmann::json j = {{"split", r.split}, {"depth", r.depth}, {"defense", r.defense}, {"attack", r.attack},
                          {"psnr_mean", pm}, {"psnr_median", median_of(r.psnr)}, {"ssim_mean", sm},
                          {"ssim_median", median_of(r.ssim)}, {"feature_loss_median", median_of(r.feature_loss)},
                          {"seconds", r.seconds}, {"targets", n_targets}};
      if (r.accuracy >= 0) j["accuracy"] = r.accuracy;
      if (emb) {
        const double rate = r.id_cos.gt(match_threshold).to(torch::kDouble).mean().item<double>();
        cells.push_back(fmt_g(rate));
        j["id_match_rate"] = rate;
        j["id_cos_mean"] = r.id_cos.mean().item<double>();
      }
      depth_csv += io::csv_line(cells);
      agg.push_back(j);
      table.push_back(cells);
    }
    io::write_file_atomic(out + "/depth.csv", depth_csv);
    nlohmann::json report = {{"command", "split-attack"}, {"classifier", c->describe()}, {"targets", n_targets},
                             {"skipped", record.skipped()}, {"splits", splits}, {"attacks", attacks},
                             {"defenses", split_list(defense)}, {"results", agg}};
    if (emb) report["match_threshold"] = match_threshold;
    io::write_file_atomic(out + "/report.json", report.dump(2) + "\n");

    // pairs.png: rows = targets, columns = original | each configuration (up to 15)
    const int64_t k = pair_cols[0].size(0);
    std::vector<at::Tensor> tiles;
    for (int64_t j = 0; j < k; ++j)
      for (const auto& col : pair_cols) tiles.push_back(col[j]);
    auto grid = io::make_grid(torch::stack(tiles), int(pair_cols.size()), 2);
    io::save_image(out + "/pairs.png", grid);

    // report.html
    report::HtmlReport html("rewind split-attack: " + c->describe());
    std::vector<std::string> summary{"classifier: " + c->describe(),
                                     std::to_string(n_targets) + " targets (" + std::to_string(record.skipped()) +
                                         " skipped), splits: " + std::to_string(splits.size())};
    for (const auto& r : rows)
      if (r.defense == "none" && (splits.size() == 1 || &r == &rows.front() || &r == &rows.back()))
        summary.push_back(r.split + " " + r.attack + ": PSNR " + report::fmt(r.psnr.mean().item<double>(), 2) +
                          " dB, SSIM " + report::fmt(r.ssim.mean().item<double>(), 3) +
                          (r.accuracy >= 0 ? ", accuracy " + report::fmt(r.accuracy, 3) : ""));
    html.summary(summary);
    if (splits.size() > 1) {
      html.heading("Quality vs split depth");
      for (const char* metric : {"psnr", "ssim"}) {
        std::vector<report::Series> series;
        for (const auto& d : defenses)
          for (const auto& a : attacks) {
            report::Series se;
            se.name = a + (defenses.size() > 1 ? " " + d.str() : "");
            se.dashed = d.kind != "none";
            for (const auto& r : rows)
              if (r.attack == a && r.defense == d.str()) {
                se.x.push_back(double(r.depth));
                se.y.push_back(std::string(metric) == "psnr" ? r.psnr.mean().item<double>() : r.ssim.mean().item<double>());
              }
            series.push_back(se);
          }
        report::PlotOptions po;
        po.title = std::string(metric) == "psnr" ? "PSNR (dB) vs split depth" : "SSIM vs split depth";
        po.x_label = "stage index (see table)";
        po.y_label = std::string(metric) == "psnr" ? "PSNR dB" : "SSIM";
        html.raw(report::svg_plot(series, po));
      }
    }
    if (defenses.size() > 1) {
      html.heading("Utility / privacy trade-off");
      html.paragraph("Accuracy of the classifier through the defended split beside the attack quality on the same "
                     "defended activations: a good defence keeps accuracy while PSNR/SSIM fall.");
    }
    html.heading("Per configuration (means over targets)");
    html.table(dh, table);
    html.heading("Originals and reconstructions");
    std::string legend;
    for (size_t i = 0; i < pair_names.size(); ++i) legend += (i ? " | " : "") + pair_names[i];
    html.paragraph("columns: " + legend);
    html.raw(report::img_png(io::encode_png(grid), "pairs", std::min<int>(1200, int(grid.size(2)) * 3)));
    if (record.skipped() > 0) html.paragraph(std::to_string(record.skipped()) + " input images skipped: see run.json");
    html.details("run record", record.to_json().dump(2));
    html.write(out + "/report.html");
    record.results()["targets"] = n_targets;
    record.results()["configurations"] = agg.size();
  });
  std::printf("split-attack on %lld targets -> %s\n", (long long)n_targets, out.c_str());
  std::printf("%-10s %-12s %-12s %9s %8s %8s\n", "split", "defense", "attack", "accuracy", "PSNR", "SSIM");
  for (const auto& r : rows)
    std::printf("%-10s %-12s %-12s %9s %8.2f %8.3f\n", r.split.c_str(), r.defense.c_str(), r.attack.c_str(),
                r.accuracy >= 0 ? fmt_g(r.accuracy, "%.3f").c_str() : "-", r.psnr.mean().item<double>(),
                r.ssim.mean().item<double>());
  return 0;
}

}  // namespace

int cmd_split_attack(const Args& args) { return split_attack_cmd(args); }

}  // namespace rw::cli
