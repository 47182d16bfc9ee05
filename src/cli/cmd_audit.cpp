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
  auto z = torch::empty({n, d});
  for (int64_t i = 0; i < n; ++i) {
    auto gen = at::detail::createCPUGenerator(mix_seed(seed, uint64_t(i), 0x5A3Dull));
    z[i].copy_(torch::randn({d}, gen));
  }
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
      ("out", opt(&ao.out), "output folder: report.html, report.json, report.csv, run.json")
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
    std::string thr_method;
    bool resolved = true;
    std::vector<double> ref_best;
    if (!ao.reference.empty()) {
      auto ref = load_set(ao.reference, shape, record, "reference");
      auto rnn = nearest_samples(samples, embed_tensor(*e, ref.images, "embed reference"));
      for (const auto& [id, ix] : group_by_identity(ref)) {
        double b = -2;
        for (int64_t i : ix) b = std::max(b, double(rnn.sim[size_t(i)]));
        ref_best.push_back(b);
      }
      thr = identity::threshold_for_far(torch::tensor(ref_best, torch::kFloat64), ao.far);
      resolved = double(ref_best.size()) * ao.far >= 1.0;
      thr_method = "at most FAR " + fmt(ao.far, 4) + " of " + std::to_string(ref_best.size()) +
                   " reference identities (people not in the training set) have a generated sample above it" +
                   (resolved ? "" : " (fewer than 1/FAR reference identities: the threshold is their maximum, so the real FAR is up to 1/" +
                                        std::to_string(ref_best.size()) + ")");
    } else {
      // impostor pairs among the owner's identities, Bonferroni over the comparisons per identity
      std::map<std::string, int64_t> lab_of;
      std::vector<int64_t> lab;
      for (size_t i = 0; i < set.rows.size(); ++i)
        lab.push_back(lab_of.emplace(set.m.entries[set.rows[i]].identity, int64_t(lab_of.size())).first->second);
      double per_pair = ao.far / double(ao.samples * std::max<int64_t>(1, set.images.size(0) / n_ids));
      auto c = identity::calibrate(emb, torch::tensor(lab, torch::kLong), {std::max(per_pair, 1e-12)});
      thr = c.points[0].threshold;
      resolved = double(c.impostor_pairs) * per_pair >= 1.0;
      thr_method = "pair threshold at FAR " + fmt(per_pair, 8) + " per comparison (= FAR " + fmt(ao.far, 4) + " / (" +
                   std::to_string(ao.samples) + " samples x images per identity)) from " +
                   std::to_string(c.impostor_pairs) + " impostor pairs of the dataset's own identities" +
                   (resolved ? "" : "; too few pairs to resolve it, so the threshold is their maximum (conservative)");
    }
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
  });
  std::cout << leaks << " of " << n_ids << " identities leak at FAR " << ao.far << " (threshold " << fmt(thr, 4) << ")\n"
            << "report: " << ao.out << "/report.html (also report.json, report.csv)\n";
  return 0;
}

}  // namespace

int cmd_membership(const Args& args) { return membership_cmd(args); }
int cmd_audit(const Args& args) { return audit_cmd(args); }

}  // namespace rw::cli
