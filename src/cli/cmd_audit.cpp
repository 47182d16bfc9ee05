// rewind membership | rewind audit: membership scores for the output side (GAN rewinding) and
// the dataset owner's report.
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
  auto z = sample_latents(n, d, seed);
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
struct MembershipOptions {
  std::string generator, members, nonmembers, out, embedder, reference_generator;
  std::string attacks = "recovery,calibrated,identity-nn,recon-identity";
  int64_t samples = 1000;     ///< generated samples for identity-nn
  int64_t per_identity = 0;   ///< images per identity to invert (0 = all)
  uint64_t seed = 1;
  int boot = 1000;
};

int membership_cmd(const Args& args) {
  CommonOptions common;
  MembershipOptions mo;
  ganinv::InvertOptions o;
  o.restarts = 2;
  o.loop.steps = 200;
  po::options_description desc("membership options");
  desc.add_options()
      ("generator", po::value(&mo.generator)->required(), "the GAN under attack")
      ("members", po::value(&mo.members)->required(), "images known to be in its training set (manifest or folder)")
      ("nonmembers", po::value(&mo.nonmembers)->required(), "images known not to be (manifest or folder)")
      ("out", po::value(&mo.out)->required(), "output folder: scores.csv, identity_scores.csv, report.json, report.html, run.json")
      ("embedder", po::value(&mo.embedder), "identity embedder (identity-nn and recon-identity attacks)")
      ("reference-generator", po::value(&mo.reference_generator),
       "GAN trained on disjoint data (calibrated attack, GAN-Leaks)")
      ("attacks", opt(&mo.attacks), "which attacks (those whose models are missing are skipped)")
      ("samples", opt(&mo.samples), "generated samples searched by identity-nn")
      ("per-identity", opt(&mo.per_identity), "images per identity to invert (0 = all)")
      ("bootstrap", opt(&mo.boot), "bootstrap resamples for confidence intervals")
      ("seed", opt(&mo.seed), "seed (samples, restarts, bootstrap)");
  add_invert_options(desc, o);
  if (!parse_command("rewind membership --generator G --members M --nonmembers M --out DIR [options]", args, desc, common))
    return 0;
  o.seed = mo.seed;
  io::RunRecord record("membership");
  record.set_seed(mo.seed);
  record.options() = {{"generator", mo.generator}, {"members", mo.members}, {"nonmembers", mo.nonmembers},
                      {"embedder", mo.embedder}, {"reference_generator", mo.reference_generator},
                      {"attacks", mo.attacks}, {"samples", mo.samples}, {"per_identity", mo.per_identity},
                      {"restarts", o.restarts}, {"steps", o.loop.steps}, {"lr", o.loop.lr}, {"optimizer", o.loop.optimizer}};
  io::ensure_dir(mo.out);
  auto want = [&](const std::string& a) { return ("," + mo.attacks + ",").find("," + a + ",") != std::string::npos; };
  std::string summary_line;
  run_and_record(record, mo.out + "/run.json", [&] {
    auto g = models::load_generator(mo.generator);
    auto shape = g->output_shape();
    std::unique_ptr<models::Embedder> e;
    if (!mo.embedder.empty()) e = models::load_embedder(mo.embedder);
    std::unique_ptr<models::Generator> gref;
    if (!mo.reference_generator.empty()) gref = models::load_generator(mo.reference_generator);
    ImageSet sets[2] = {load_set(mo.nonmembers, shape, record, "non-member"), load_set(mo.members, shape, record, "member")};
    record.mark("load");
    // one combined list: label 1 member, 0 non-member
    struct Row { int label; std::string path, identity; };
    std::vector<Row> rows;
    std::vector<at::Tensor> imgs;
    for (int lab : {1, 0}) {
      auto keep = first_per_identity(sets[lab], mo.per_identity);
      imgs.push_back(select(sets[lab].images, keep));
      for (int64_t i : keep) {
        const auto& en = sets[lab].m.entries[sets[lab].rows[size_t(i)]];
        rows.push_back({lab, en.path, en.identity});
      }
    }
    auto images = torch::cat(imgs);
    const int64_t n = images.size(0);
    log_info(n, " targets (", imgs[0].size(0), " members, ", imgs[1].size(0), " non-members)");
    std::map<std::string, std::vector<double>> score;  // attack -> per image (higher = member)
    std::map<std::string, std::vector<double>> raw;    // attack -> the number users read (error or similarity)
    at::Tensor recon;
    if (want("recovery") || want("calibrated") || want("recon-identity")) {
      auto r = recover(*g, images, o, nullptr, "invert");
      recon = r.recon;
      raw["recovery"] = to_vec(r.mse);
      for (double v : raw["recovery"]) score["recovery"].push_back(-v);
      record.mark("invert");
      if (want("calibrated") && gref) {
        auto rr = recover(*gref, images, o, nullptr, "invert (reference)");
        auto cal = r.mse - rr.mse;
        raw["calibrated"] = to_vec(cal);
        for (double v : raw["calibrated"]) score["calibrated"].push_back(-v);
        record.mark("invert reference");
      }
    }
    if (e) {
      auto emb = embed_tensor(*e, images, "embed targets");
      if (want("recon-identity") && recon.defined()) {
        auto sim = cosine_rows(emb, embed_tensor(*e, recon, "embed reconstructions"));
        raw["recon-identity"] = to_vec(sim);
        score["recon-identity"] = raw["recon-identity"];
      }
      if (want("identity-nn")) {
        auto s = make_samples(*g, *e, mo.samples, mo.seed);
        auto nn = nearest_samples(s, emb);
        raw["identity-nn"] = std::vector<double>(nn.sim.begin(), nn.sim.end());
        score["identity-nn"] = raw["identity-nn"];
        record.mark("identity-nn");
      }
    }
    RW_CHECK(!score.empty(), Usage, "no attack could run: --attacks ", mo.attacks,
             " needs --embedder for identity-nn / recon-identity and --reference-generator for calibrated");
    std::vector<int> labels;
    for (const auto& r : rows) labels.push_back(r.label);

    // per image CSV
    std::vector<std::string> names;
    for (const auto& [k, v] : score) names.push_back(k);
    io::CsvRow header = {"path", "identity", "member"};
    for (const auto& k : names) header.push_back(k == "identity-nn" || k == "recon-identity" ? k + "_similarity" : k + "_error");
    for (const auto& k : names) header.push_back(k + "_score");
    std::string csv = io::csv_line(header);
    for (size_t i = 0; i < rows.size(); ++i) {
      io::CsvRow r = {rows[i].path, rows[i].identity, std::to_string(rows[i].label)};
      for (const auto& k : names) r.push_back(fmt(raw[k][i], 6));
      for (const auto& k : names) r.push_back(fmt(score[k][i], 6));
      csv += io::csv_line(r);
    }
    io::write_file_atomic(mo.out + "/scores.csv", csv);

    // per identity: mean score over its images (identity-nn: max)
    std::map<std::string, std::pair<int, std::vector<size_t>>> ids;
    std::vector<std::string> id_order;
    for (size_t i = 0; i < rows.size(); ++i) {
      auto key = std::to_string(rows[i].label) + "\x1f" + rows[i].identity;
      if (!ids.count(key)) id_order.push_back(key);
      ids[key].first = rows[i].label;
      ids[key].second.push_back(i);
    }
    std::map<std::string, std::vector<double>> id_score;
    std::vector<int> id_labels;
    std::string icsv = io::csv_line([&] { io::CsvRow h = {"identity", "member", "images"}; for (auto& k : names) h.push_back(k + "_score"); return h; }());
    for (const auto& key : id_order) {
      const auto& [lab, ix] = ids[key];
      id_labels.push_back(lab);
      io::CsvRow r = {key.substr(key.find('\x1f') + 1), std::to_string(lab), std::to_string(ix.size())};
      for (const auto& k : names) {
        double v = k == "identity-nn" ? -1e9 : 0;
        for (size_t i : ix) v = k == "identity-nn" ? std::max(v, score[k][i]) : v + score[k][i] / double(ix.size());
        id_score[k].push_back(v);
        r.push_back(fmt(v, 6));
      }
      icsv += io::csv_line(r);
    }
    io::write_file_atomic(mo.out + "/identity_scores.csv", icsv);

    // metrics
    nlohmann::json rep;
    rep["command"] = "membership";
    rep["build"] = build_string();
    rep["options"] = record.options();
    report::HtmlReport html("rewind membership report");
    std::vector<std::string> summary;
    std::vector<std::vector<std::string>> table;
    std::vector<std::pair<std::string, mia::Roc>> rocs;
    for (const auto& level : {"image", "identity"}) {
      for (const auto& k : names) {
        const bool img = std::string(level) == "image";
        auto m = mia::evaluate(img ? score[k] : id_score[k], img ? labels : id_labels, {1e-3, 1e-2, 1e-1}, mo.boot, mo.seed);
        nlohmann::json j = {{"members", m.members}, {"nonmembers", m.nonmembers},
                            {"auc", {m.auc.value, m.auc.lo, m.auc.hi}}, {"ks_statistic", m.ks_statistic},
                            {"ks_pvalue", m.ks_pvalue}};
        for (size_t f = 0; f < m.fprs.size(); ++f)
          j["tpr_at_fpr"][fmt(m.fprs[f], 3)] = {m.tpr[f].value, m.tpr[f].lo, m.tpr[f].hi};
        if (img && (k == "recovery" || k == "calibrated")) {
          std::vector<double> a, b;
          for (size_t i = 0; i < rows.size(); ++i) (labels[i] ? a : b).push_back(raw[k][i]);
          j["median_error_members"] = mia::median(a);
          j["median_error_nonmembers"] = mia::median(b);
          if (k == "recovery") j["mre_gap"] = mia::mre_gap(a, b);
        }
        rep["metrics"][level][k] = j;
        auto ci = [](const mia::Interval& v) { return fmt(v.value) + " [" + fmt(v.lo) + ", " + fmt(v.hi) + "]"; };
        table.push_back({level, k, std::to_string(m.members) + " / " + std::to_string(m.nonmembers), ci(m.auc),
                         ci(m.tpr[0]), ci(m.tpr[1]), ci(m.tpr[2]), fmt(m.ks_pvalue, 4),
                         j.contains("mre_gap") ? fmt(j["mre_gap"].get<double>()) : ""});
        if (img) rocs.push_back({k, m.roc});
        if (img) summary.push_back(k + ": AUC " + fmt(m.auc.value) + " (95% CI " + fmt(m.auc.lo) + "-" + fmt(m.auc.hi) +
                                   "), TPR " + fmt(m.tpr[1].value) + " at FPR 1e-2");
      }
    }
    io::write_file_atomic(mo.out + "/report.json", rep.dump(2) + "\n");
    html.paragraph("Generator " + mo.generator + "; " + std::to_string(imgs[0].size(0)) + " member and " +
                   std::to_string(imgs[1].size(0)) + " non-member images. A score is 'higher = more likely a member'.");
    html.summary(summary);
    html.heading("Metrics (95% bootstrap intervals)");
    html.table({"level", "attack", "members / non-members", "AUC", "TPR@FPR 1e-3", "TPR@FPR 1e-2", "TPR@FPR 1e-1",
                "KS p-value", "MRE-gap"}, table);
    html.raw(roc_svg(rocs, false) + roc_svg(rocs, true));
    html.heading("Method");
    html.paragraph("recovery: latent recovery error (MSE of G(z*) to the target, Webster et al. 2019); calibrated: minus the "
                   "same error under a reference generator trained on other data (GAN-Leaks, Chen et al. 2020); "
                   "identity-nn: best identity similarity between the target and " + std::to_string(mo.samples) +
                   " generated samples (Webster et al. 2021); recon-identity: identity similarity between the target and "
                   "its own reconstruction. MRE-gap = (median non-member error - median member error) / median non-member error.");
    html.details("run options", record.options().dump(2));
    html.write(mo.out + "/report.html");
    summary_line = summary.empty() ? "" : summary.front();
    record.results()["metrics"] = rep["metrics"];
    for (const auto& s : summary) std::cout << s << "\n";
  });
  std::cout << "wrote " << mo.out << "/report.html, scores.csv, identity_scores.csv, report.json\n";
  return 0;
}

// ------------------------------------------------------------------------------------------------
struct AuditOptions {
  std::string generator, dataset, out = "out/audit", embedder, reference;
  int64_t samples = 1000;        ///< generated samples searched for each identity
  double far = 1e-3;             ///< false-accept rate of the "leaks" verdict
  int64_t per_identity = 1;      ///< images per identity to invert
  int64_t top = 24;              ///< identities shown with pictures in the HTML
  uint64_t seed = 1;
};

struct DemoPaths {
  std::string generator, embedder, dataset, reference;
};

/// The embedded default: synthetic identities (half of them trained the shipped demo GAN).
DemoPaths prepare_demo(const std::string& work) {
  DemoPaths d;
  const std::string models = std::string(REWIND_SOURCE_DIR) + "/data-tools/demo";
  d.generator = models + "/generator.pt";
  d.embedder = models + "/embedder.pt";
  RW_CHECK(fs::exists(d.generator) && fs::exists(d.embedder), Input, "the demo models are missing from ", models,
           "; recreate them with data-tools/make_demo_models.sh (about 40 min on 2 cores)");
  auto meta = nlohmann::json::parse(io::read_file(models + "/demo.json"));
  const int ids = meta.at("identities").get<int>(), per = meta.at("audit_per_identity").get<int>(),
            size = meta.at("size").get<int>(), refs = meta.at("reference_identities").get<int>();
  d.dataset = work + "/dataset";
  d.reference = work + "/reference";
  if (!fs::exists(d.dataset + "/manifest.csv")) {
    data::SynthFacesOptions o;
    o.out = d.dataset;
    o.identities = ids;
    o.per_identity = per;
    o.size = size;
    o.contact_sheet = false;
    auto r = data::synth_faces(o, progress_fn());
    progress_done();
    // ground truth: identities below `members` trained the demo GAN
    auto m = io::read_manifest(r.manifest);
    const int members = meta.at("member_identities").get<int>();
    for (auto& en : m.entries) en.member = std::stoi(en.identity.substr(2)) < members ? 1 : 0;
    io::write_manifest(r.manifest, m);
  }
  if (!fs::exists(d.reference + "/manifest.csv")) {
    data::SynthFacesOptions o;
    o.out = d.reference;
    o.identities = refs;
    o.per_identity = 1;
    o.size = size;
    o.first_identity = meta.at("reference_first_identity").get<int>();
    o.contact_sheet = false;
    data::synth_faces(o, progress_fn());
    progress_done();
  }
  return d;
}

int audit_cmd(const Args& args) {
  CommonOptions common;
  AuditOptions ao;
  ganinv::InvertOptions o;
  o.restarts = 2;
  o.loop.steps = 200;
  po::options_description desc("audit options");
  desc.add_options()
      ("generator", po::value(&ao.generator), "the released GAN (omit all data options for the embedded demo)")
      ("dataset", po::value(&ao.dataset), "the owner's images: manifest or folder (identity = person)")
      ("embedder", po::value(&ao.embedder), "identity embedder (required with --generator)")
      ("reference", po::value(&ao.reference),
       "images of people certainly NOT in the training set (same domain); sets the verdict threshold at --far. "
       "Without it the threshold comes from impostor pairs in --dataset (conservative)")
      ("out", opt(&ao.out), "output folder: report.html, report.json, report.csv, samples.png, top.png (your image | closest sample | reconstruction), run.json")
      ("samples", opt(&ao.samples), "generated samples searched for each identity")
      ("far", opt(&ao.far), "false-accept rate of the 'leaks' verdict (per identity)")
      ("per-identity", opt(&ao.per_identity), "images per identity to invert (latent recovery evidence)")
      ("top", opt(&ao.top), "identities shown with pictures in report.html")
      ("seed", opt(&ao.seed), "seed (samples, restarts)");
  add_invert_options(desc, o);
  if (!parse_command("rewind audit [--generator G --dataset M --embedder E [--reference M]] [options]\n"
                     "  with no data options: the embedded demo (synthetic identities, shipped demo GAN)",
                     args, desc, common))
    return 0;
  const bool demo = ao.generator.empty() && ao.dataset.empty();
  RW_CHECK(demo || (!ao.generator.empty() && !ao.dataset.empty() && !ao.embedder.empty()), Usage,
           "audit needs --generator, --dataset and --embedder together (or none of them for the embedded demo)");
  o.seed = ao.seed;
  io::ensure_dir(ao.out);
  io::RunRecord record(demo ? "audit (embedded demo)" : "audit");
  record.set_seed(ao.seed);
  int64_t leaks = 0, n_ids = 0;
  double thr = 0;
  run_and_record(record, ao.out + "/run.json", [&] {
    nlohmann::json demo_truth;
    if (demo) {
      auto d = prepare_demo(ao.out + "/demo-data");
      ao.generator = d.generator;
      ao.embedder = d.embedder;
      ao.dataset = d.dataset;
      ao.reference = d.reference;
      demo_truth = nlohmann::json::parse(io::read_file(std::string(REWIND_SOURCE_DIR) + "/data-tools/demo/demo.json"));
      record.mark("demo data");
    }
    record.options() = {{"generator", ao.generator}, {"dataset", ao.dataset}, {"embedder", ao.embedder},
                        {"reference", ao.reference}, {"samples", ao.samples}, {"far", ao.far},
                        {"per_identity", ao.per_identity}, {"restarts", o.restarts}, {"steps", o.loop.steps},
                        {"lr", o.loop.lr}, {"seed", ao.seed}, {"demo", demo}};
    auto g = models::load_generator(ao.generator);
    auto e = models::load_embedder(ao.embedder);
    auto shape = g->output_shape();
    auto set = load_set(ao.dataset, shape, record, "dataset");
    auto groups = group_by_identity(set);
    n_ids = int64_t(groups.size());
    RW_CHECK(n_ids >= 1, Input, ao.dataset, " has no loadable image");
    log_info("auditing ", n_ids, " identities (", set.images.size(0), " images) against ", g->describe());
    record.mark("load");

    // 1. samples and identity nearest neighbours
    auto samples = make_samples(*g, *e, ao.samples, ao.seed);
    auto emb = embed_tensor(*e, set.images, "embed dataset");
    auto nn = nearest_samples(samples, emb);
    record.mark("identity-nn");

    // 2. the verdict threshold at FAR (per identity)
    auto vt = verdict_threshold(*e, samples, set, emb, n_ids, ao.reference, ao.far, ao.samples, shape, record);
    thr = vt.thr;
    const std::string& thr_method = vt.method;
    const bool resolved = vt.resolved;
    std::vector<double> ref_best = vt.ref_best;
    record.mark("threshold");

    // 3. latent recovery of the first images of each identity
    auto inv_ix = first_per_identity(set, ao.per_identity);
    auto inv_imgs = select(set.images, inv_ix);
    auto rec = recover(*g, inv_imgs, o, nullptr, "invert");
    auto rec_sim = cosine_rows(select(emb, inv_ix), embed_tensor(*e, rec.recon, "embed reconstructions"));
    record.mark("invert");
    std::map<int64_t, int64_t> inv_pos;
    for (size_t j = 0; j < inv_ix.size(); ++j) inv_pos[inv_ix[j]] = int64_t(j);
    auto all_mse = to_vec(rec.mse);
    const double med = mia::median(all_mse);
    std::vector<double> dev;
    for (double v : all_mse) dev.push_back(std::abs(v - med));
    const double mad = 1.4826 * mia::median(dev) + 1e-12;

    // 4. per identity evidence
    struct IdRow {
      std::string id;
      double nn_sim = -2;
      int64_t nn_img = -1, nn_sample = -1, inv_img = -1;
      double mse = NAN, z = NAN, recon_sim = NAN;
      bool leaks = false;
      int member = -1;
    };
    std::vector<IdRow> idr;
    for (const auto& [id, ix] : groups) {
      IdRow r;
      r.id = id;
      for (int64_t i : ix) {
        if (nn.sim[size_t(i)] > r.nn_sim) {
          r.nn_sim = nn.sim[size_t(i)];
          r.nn_img = i;
          r.nn_sample = nn.sample[size_t(i)];
        }
        r.member = set.m.entries[set.rows[size_t(i)]].member;
      }
      double msum = 0, ssum = 0;
      int cnt = 0;
      for (int64_t i : ix)
        if (inv_pos.count(i)) {
          int64_t j = inv_pos[i];
          if (r.inv_img < 0) r.inv_img = i;
          msum += all_mse[size_t(j)];
          ssum += rec_sim[j].item<double>();
          ++cnt;
        }
      if (cnt) {
        r.mse = msum / cnt;
        r.recon_sim = ssum / cnt;
        r.z = (med - r.mse) / mad;
      }
      r.leaks = r.nn_sim > thr;
      idr.push_back(r);
    }
    std::sort(idr.begin(), idr.end(), [](const IdRow& a, const IdRow& b) {
      if (a.leaks != b.leaks) return a.leaks;
      return a.nn_sim > b.nn_sim;
    });
    for (const auto& r : idr) leaks += r.leaks;

    // ground truth (demo, or a dataset with a member column): how good were the verdicts?
    nlohmann::json truth;
    {
      int64_t m = 0, nm = 0, tp = 0, fp = 0;
      std::vector<double> s_nn, s_rec;
      std::vector<int> lab;
      for (const auto& r : idr) {
        if (r.member < 0) continue;
        (r.member ? m : nm) += 1;
        tp += r.member && r.leaks;
        fp += !r.member && r.leaks;
        s_nn.push_back(r.nn_sim);
        s_rec.push_back(std::isnan(r.z) ? 0 : r.z);
        lab.push_back(r.member);
      }
      if (m > 0 && nm > 0) {
        truth = {{"members", m}, {"nonmembers", nm}, {"members_flagged", tp}, {"nonmembers_flagged", fp},
                 {"auc_identity_nn", mia::roc_auc(s_nn, lab)}, {"auc_recovery", mia::roc_auc(s_rec, lab)}};
      }
    }

    // 5. outputs
    std::string csv = io::csv_line({"rank", "identity", "verdict", "identity_nn_similarity", "threshold", "recovery_mse",
                                    "recovery_z", "recon_identity_similarity", "image", "closest_sample", "member"});
    nlohmann::json rep;
    rep["command"] = "audit";
    rep["build"] = build_string();
    rep["options"] = record.options();
    rep["generator"] = g->describe();
    rep["embedder"] = e->describe();
    rep["summary"] = {{"identities", n_ids}, {"leaking", leaks}, {"far", ao.far}, {"threshold", thr},
                      {"threshold_method", thr_method}, {"threshold_resolved", resolved}, {"samples", ao.samples}};
    if (!truth.is_null()) rep["ground_truth"] = truth;
    for (size_t k = 0; k < idr.size(); ++k) {
      const auto& r = idr[k];
      std::string img = r.nn_img >= 0 ? set.m.entries[set.rows[size_t(r.nn_img)]].path : "";
      csv += io::csv_line({std::to_string(k + 1), r.id, r.leaks ? "leaks" : "no-evidence", fmt(r.nn_sim, 4), fmt(thr, 4),
                           fmt(r.mse, 6), fmt(r.z, 2), fmt(r.recon_sim, 4), img, std::to_string(r.nn_sample),
                           r.member < 0 ? "" : std::to_string(r.member)});
      rep["identities"].push_back({{"rank", k + 1}, {"identity", r.id}, {"leaks", r.leaks}, {"identity_nn_similarity", r.nn_sim},
                                   {"closest_sample", r.nn_sample}, {"recovery_mse", std::isnan(r.mse) ? nlohmann::json() : nlohmann::json(r.mse)},
                                   {"recovery_z", std::isnan(r.z) ? nlohmann::json() : nlohmann::json(r.z)},
                                   {"recon_identity_similarity", std::isnan(r.recon_sim) ? nlohmann::json() : nlohmann::json(r.recon_sim)},
                                   {"image", img}, {"member", r.member}});
    }
    io::write_file_atomic(ao.out + "/report.csv", csv);
    io::write_file_atomic(ao.out + "/report.json", rep.dump(2) + "\n");

    report::HtmlReport html("rewind audit: does this GAN reproduce your people?");
    std::vector<std::string> sum = {
        std::to_string(leaks) + " of " + std::to_string(n_ids) + " identities in your dataset LEAK: the GAN generates a face the " +
            "identity network calls the same person (similarity above " + fmt(thr, 3) + ", FAR " + fmt(ao.far, 4) + " per identity).",
        "Generator: " + g->describe() + ". Dataset: " + ao.dataset + " (" + std::to_string(set.images.size(0)) + " images). " +
            std::to_string(ao.samples) + " samples searched."};
    if (!resolved) sum.push_back("Note: the false-accept rate could not be resolved with the data given; see Thresholds.");
    if (!truth.is_null())
      sum.push_back("Ground truth is known here (demo): " + std::to_string(truth["members_flagged"].get<int64_t>()) + " of " +
                    std::to_string(truth["members"].get<int64_t>()) + " training identities flagged, " +
                    std::to_string(truth["nonmembers_flagged"].get<int64_t>()) + " of " +
                    std::to_string(truth["nonmembers"].get<int64_t>()) + " identities never trained on flagged. AUC identity-nn " +
                    fmt(truth["auc_identity_nn"].get<double>()) + ", recovery " + fmt(truth["auc_recovery"].get<double>()) + ".");
    html.summary(sum);
    html.heading("Top identities");
    html.paragraph("Each row: your image | the closest generated sample | the generator's best reconstruction of your image "
                   "(latent recovery). Identities are ranked by the similarity of their closest sample.");
    std::vector<std::vector<std::string>> rows;
    for (size_t k = 0; k < idr.size() && int64_t(k) < ao.top; ++k) {
      const auto& r = idr[k];
      std::string real = r.nn_img >= 0 ? report::img_png(png(set.images[r.nn_img]), "your image of " + r.id, 96) : "";
      std::string smp = r.nn_sample >= 0 ? report::img_png(png(samples.images[r.nn_sample]), "generated sample", 96) : "";
      std::string rc = r.inv_img >= 0 ? report::img_png(png(rec.recon[inv_pos[r.inv_img]]), "reconstruction", 96) : "";
      std::string verdict = r.leaks ? "<span class=\"leak\">LEAKS</span>" : "<span class=\"safe\">no evidence</span>";
      rows.push_back({std::to_string(k + 1), report::escape(r.id) + (r.member < 0 ? "" : r.member ? "<br><small>(member)</small>" : "<br><small>(non-member)</small>"),
                      verdict, real, smp, rc, fmt(r.nn_sim, 3), fmt(r.mse, 4) + "<br><small>z " + fmt(r.z, 1) + "</small>",
                      fmt(r.recon_sim, 3)});
    }
    html.table_html({"#", "identity", "verdict", "your image", "closest sample", "reconstruction", "sample similarity",
                     "recovery error", "reconstruction similarity"}, rows);
    // distribution plot: identity-nn similarity, sorted, with the threshold
    {
      std::vector<double> xs, ys, tx = {0, double(idr.size())}, ty = {thr, thr};
      for (size_t k = 0; k < idr.size(); ++k) { xs.push_back(double(k + 1)); ys.push_back(idr[k].nn_sim); }
      std::vector<report::Series> ss = {{"closest-sample similarity", xs, ys, false}, {"threshold", tx, ty, true}};
      if (!ref_best.empty()) {
        std::sort(ref_best.begin(), ref_best.end(), std::greater<double>());
        std::vector<double> rx, ry;
        for (size_t k = 0; k < ref_best.size(); ++k) { rx.push_back(double(k + 1) * double(idr.size()) / double(ref_best.size())); ry.push_back(ref_best[k]); }
        ss.push_back({"reference (not trained on), rescaled", rx, ry, true});
      }
      report::PlotOptions po_;
      po_.title = "identities by closest-sample similarity";
      po_.x_label = "identity rank";
      po_.y_label = "similarity";
      po_.width = 560;
      html.raw(report::svg_plot(ss, po_));
    }
    html.heading("Method");
    html.paragraph("Identity nearest neighbour (Webster et al. 2021, 'This Person (Probably) Exists'): " + std::to_string(ao.samples) +
                   " samples are drawn from the generator, embedded with " + e->describe() +
                   " and indexed (FAISS); each of your images is searched against them. An identity leaks when its best "
                   "similarity is above the threshold. Latent recovery (Webster et al. 2019): the generator's latent space is "
                   "searched for each identity's first image (" + std::to_string(o.restarts) + " restarts x " +
                   std::to_string(o.loop.steps) + " Adam steps); a recovery error far below the dataset's median "
                   "(z = (median - error) / (1.4826 MAD)) is supporting evidence: training images are usually rebuilt better.");
    html.heading("Thresholds");
    html.paragraph("Verdict threshold " + fmt(thr, 4) + ": " + thr_method + ".");
    html.details("run options and build", record.options().dump(2) + "\n" + build_string());
    html.write(ao.out + "/report.html");
    record.results()["summary"] = rep["summary"];
    if (!truth.is_null()) record.results()["ground_truth"] = truth;
    // sample grid for people who want to look
    io::save_image(ao.out + "/samples.png", io::make_grid(samples.images.slice(0, 0, std::min<int64_t>(64, ao.samples)), 8));
    // top.png: the report's picture rows without the HTML: your image | closest sample | reconstruction
    {
      std::vector<at::Tensor> tiles;
      auto blank = torch::ones_like(samples.images[0]);
      for (size_t k = 0; k < idr.size() && int64_t(k) < std::min<int64_t>(ao.top, 16); ++k) {
        const auto& r = idr[k];
        tiles.push_back(r.nn_img >= 0 ? set.images[r.nn_img] : blank);
        tiles.push_back(r.nn_sample >= 0 ? samples.images[r.nn_sample] : blank);
        tiles.push_back(r.inv_img >= 0 ? rec.recon[inv_pos[r.inv_img]].to(blank.device()) : blank);
      }
      if (!tiles.empty()) {
        auto grid = io::make_grid(torch::stack(tiles), 6, 2);
        const int64_t side = samples.images.size(-1), up = side >= 96 ? 1 : (96 + side - 1) / side;
        if (up > 1)  // small faces are shown at >= 96 px, as in report.html
          grid = torch::upsample_nearest2d(grid.unsqueeze(0), {grid.size(-2) * up, grid.size(-1) * up}).squeeze(0);
        io::save_image(ao.out + "/top.png", grid);
      }
    }
  });
  std::cout << leaks << " of " << n_ids << " identities leak at FAR " << ao.far << " (threshold " << fmt(thr, 4) << ")\n"
            << "report: " << ao.out << "/report.html (also report.json, report.csv)\n";
  return 0;
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
      auto d = prepare_demo(co.out + "/demo-data");
      co.generator = d.generator;
      co.embedder = d.embedder;
      co.dataset = d.dataset;
      co.reference = d.reference;
      co.classifier = std::string(REWIND_SOURCE_DIR) + "/data-tools/demo/classifier.pt";
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

int cmd_membership(const Args& args) { return membership_cmd(args); }
int cmd_audit(const Args& args) { return audit_cmd(args); }
int cmd_compare(const Args& args) { return compare_cmd(args); }

}  // namespace rw::cli
