// The audit's report files: report.json, report.csv, report.html, samples.png, top.png.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "rewind/audit/audit.h"
#include "rewind/audit/membership.h"
#include "rewind/core/build_info.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/image.h"
#include "rewind/io/run_record.h"
#include "rewind/report/html.h"

namespace rw::audit {

namespace {

using report::fmt;

nlohmann::json opt_json(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }
std::optional<double> finite_or_none(double v) { return std::isfinite(v) ? std::optional<double>(v) : std::nullopt; }

}  // namespace

const char* verdict_label(Verdict v) {
  switch (v) {
    case Verdict::kLeaks: return "LEAKS";
    case Verdict::kInconclusive: return "inconclusive";
    default: return "no evidence";
  }
}

std::string verdict_html(Verdict v) {
  const char* cls = v == Verdict::kLeaks ? "leak" : v == Verdict::kInconclusive ? "warn" : "safe";
  return std::string("<span class=\"") + cls + "\">" + verdict_label(v) + "</span>";
}

namespace {
/// The discriminator's dataset-level test in one sentence ("" without a discriminator).
std::string disc_test_sentence(const AuditResult& r) {
  const auto& d = r.disc_test;
  if (!d.ran) return r.disc_test.reason.rfind("not run: no --discriminator", 0) == 0 ? "" : " Discriminator test: " + d.reason + ".";
  std::string s = " Discriminator test (the GAN's own discriminator, Hayes et al. 2019): p = " + mia::format_pvalue(d.pvalue) +
                  ", effect size AUC " + fmt(d.auc, 3) + " (your identities' first images against the reference's)";
  if (std::isfinite(r.combined_pvalue))
    s += "; both tests together (Bonferroni, valid however they depend): p = " + mia::format_pvalue(r.combined_pvalue);
  return s + (d.pvalue < 0.01 ? ": the discriminator calls your images real more often than strangers', evidence at the "
                                "1% level that it was trained on them."
                              : ": no evidence at the 1% level from the discriminator.");
}
}  // namespace

std::string set_test_line(const AuditResult& r) {
  const auto& t = r.set_test;
  if (!t.ran) return "Dataset-level test: " + t.reason + "." + disc_test_sentence(r);
  const std::string caveat = r.set_test_caveat.empty() ? "" : " " + r.set_test_caveat;
  const std::string stats = "p = " + mia::format_pvalue(t.pvalue) + ", one-sided Mann-Whitney U; effect size AUC " +
                            fmt(t.auc, 3) + " over " + std::to_string(t.owner) + " of your identities and " +
                            std::to_string(t.reference) + " reference identities, first image each";
  if (t.pvalue < 0.01)
    return "Dataset-level test: your people as a set are closer to the generator's samples than the reference people (" +
           stats + "): evidence at the 1% level that this set was used to train the generator (a 1% false-alarm rate "
           "holds when the reference images come from the same population as yours)." + disc_test_sentence(r) + caveat;
  return "Dataset-level test: no evidence at the 1% level that this set as a whole was used (" + stats +
         "); this does not show that it was not used." + disc_test_sentence(r) + caveat;
}

namespace {
std::string opt_fmt(const std::optional<double>& v, int digits) { return v ? fmt(*v, digits) : "n/a"; }
/// " (member)", " (non-member)" or "" (no ground truth): after an identity's name in plot tips and pictures.
const char* member_suffix(int member) { return member == 1 ? " (member)" : member == 0 ? " (non-member)" : ""; }

/// Pictures of the first `k` ranked identities: your image, closest sample, reconstruction
/// (undefined tensors where there is none). Images are reloaded by row, samples regenerated from
/// their index and reconstructions re-rendered from the recovered latents.
struct Pictures {
  std::vector<at::Tensor> image, sample, recon;
};

Pictures pictures(const AuditResult& r, size_t k, models::Generator& g, const io::Manifest& m, uint64_t seed,
                  const std::string& latent, const std::string& crop) {
  Pictures p;
  torch::NoGradGuard ng;
  const auto shape = g.output_shape();
  std::vector<size_t> rows;
  std::vector<int64_t> samples;
  for (size_t i = 0; i < k; ++i) {
    rows.push_back(r.identities[i].nn_row);
    samples.push_back(std::max<int64_t>(0, r.identities[i].nn_sample));
  }
  std::map<size_t, at::Tensor> loaded;  // a file that became unreadable since is shown blank
  if (!rows.empty()) {
    data::ImageStream s(m, rows, pipeline_loader(shape, crop));
    data::Batch b;
    while (s.next(&b))
      for (int64_t j = 0; j < b.size(); ++j) loaded[b.rows[size_t(j)]] = b.images[j];
  }
  auto smp = SampleBank::images(g, seed, samples);
  for (size_t i = 0; i < k; ++i) {
    const auto& ev = r.identities[i];
    auto it = loaded.find(ev.nn_row);
    p.image.push_back(it == loaded.end() ? at::Tensor() : it->second);
    p.sample.push_back(ev.nn_sample >= 0 ? smp[int64_t(i)] : at::Tensor());
    p.recon.push_back(ev.recovered_index >= 0
                          ? ganinv::render(g, latent, r.recovery.latents.slice(0, ev.recovered_index, ev.recovered_index + 1))
                                .clamp(-1, 1)[0]
                          : at::Tensor());
  }
  return p;
}

std::string img_cell(const at::Tensor& t, const std::string& alt) {
  return t.defined() ? report::img_png(io::encode_png(t), alt, 96) : "";
}

void write_csv_json(const std::string& out, const AuditResult& r, const AuditOptions& o, const io::Manifest& m,
                    const nlohmann::json& options_json) {
  std::string csv = io::csv_line({"rank", "identity", "verdict", "identity_nn_similarity", "threshold", "recovery_mse",
                                  "recovery_z", "recon_identity_similarity", "image", "closest_sample", "member",
                                  "discriminator_percentile"});
  nlohmann::json rep;
  rep["command"] = "audit";
  rep["build"] = build_string();
  rep["options"] = options_json;
  rep["generator"] = r.generator;
  rep["embedder"] = r.embedder;
  rep["summary"] = {{"headline", audit_headline(r, o)}, {"identities", r.identities.size()}, {"leaking", r.leaking},
                    {"inconclusive", r.inconclusive}, {"family_wise_far", o.far}, {"per_test_far", r.threshold.per_test},
                    {"tests", r.threshold.tests}, {"domain_mismatch", r.domain_mismatch},
                    {"domain_fit", {{"probe_auc", {r.fit.probe.m.auc.value, r.fit.probe.m.auc.lo, r.fit.probe.m.auc.hi}},
                                    {"probe_ran", r.fit.probe.ran}, {"sample_to_sample", r.fit.sample_to_sample},
                                    {"image_to_sample", r.fit.image_to_sample}, {"max_auc", o.fit_max_auc},
                                    {"line", fit_line(r, o)}}}, {"null_scores", r.threshold.null_scores},
                    {"null_needed", r.threshold.null_needed}, {"threshold", r.threshold.value},
                    {"threshold_method", r.threshold.method}, {"threshold_resolved", r.threshold.resolved},
                    {"threshold_reason", r.threshold.reason}, {"samples", o.samples},
                    {"recovered_identities", r.recovered_identities}, {"images", r.images},
                    {"skipped", r.skipped.size()}};
  rep["dataset_test"] = {{"ran", r.set_test.ran}, {"reason", r.set_test.reason}, {"identities", r.set_test.owner},
                         {"reference_identities", r.set_test.reference}, {"auc", opt_json(finite_or_none(r.set_test.auc))},
                         {"pvalue_one_sided", opt_json(finite_or_none(r.set_test.pvalue))}, {"line", set_test_line(r)}, {"caveat", r.set_test_caveat}};
  rep["dataset_test"]["discriminator"] = {{"ran", r.disc_test.ran}, {"reason", r.disc_test.reason},
                                          {"auc", opt_json(finite_or_none(r.disc_test.auc))},
                                          {"pvalue_one_sided", opt_json(finite_or_none(r.disc_test.pvalue))}};
  rep["dataset_test"]["combined_pvalue"] = opt_json(finite_or_none(r.combined_pvalue));
  if (r.truth) {
    const auto& t = *r.truth;
    rep["ground_truth"] = {{"members", t.members}, {"nonmembers", t.nonmembers}, {"members_flagged", t.members_flagged},
                           {"nonmembers_flagged", t.nonmembers_flagged}, {"auc_identity_nn", t.auc_identity_nn},
                           {"auc_recovery", t.auc_recovery}, {"recovery_identities", t.recovery_identities},
                           {"auc_identity_nn_interval", {t.identity_nn.auc.lo, t.identity_nn.auc.hi}}};
    if (!t.identity_nn.band.fpr.empty())
      rep["ground_truth"]["identity_nn_roc_band"] = {{"fpr", t.identity_nn.band.fpr}, {"tpr_lo", t.identity_nn.band.lo},
                                                     {"tpr_hi", t.identity_nn.band.hi}};
  }
  rep["identities"] = nlohmann::json::array();
  for (size_t k = 0; k < r.identities.size(); ++k) {
    const auto& ev = r.identities[k];
    const std::string img = m.entries[ev.nn_row].path;
    csv += io::csv_line({std::to_string(k + 1), ev.identity, verdict_name(ev.verdict), fmt(ev.nn_similarity, 4),
                         fmt(r.threshold.value, 4), ev.recovery_error ? fmt(*ev.recovery_error, 6) : "",
                         ev.recovery_z ? fmt(*ev.recovery_z, 2) : "", ev.recon_similarity ? fmt(*ev.recon_similarity, 4) : "",
                         img, std::to_string(ev.nn_sample), ev.member < 0 ? "" : std::to_string(ev.member),
                         ev.disc_percentile ? fmt(*ev.disc_percentile, 4) : ""});
    rep["identities"].push_back({{"rank", k + 1}, {"identity", ev.identity}, {"leaks", ev.leaks},
                                 {"verdict", verdict_name(ev.verdict)},
                                 {"identity_nn_similarity", ev.nn_similarity}, {"closest_sample", ev.nn_sample},
                                 {"recovery_mse", opt_json(ev.recovery_error)}, {"recovery_z", opt_json(ev.recovery_z)},
                                 {"recon_identity_similarity", opt_json(ev.recon_similarity)}, {"image", img},
                                 {"member", ev.member}, {"discriminator_percentile", opt_json(ev.disc_percentile)}});
  }
  io::write_file_atomic(out + "/report.csv", csv);
  io::write_file_atomic(out + "/report.json", io::dump_json(rep, 2) + "\n");
}

}  // namespace

std::string fit_line(const AuditResult& r, const AuditOptions& o) {
  const auto& f = r.fit;
  if (!f.probe.ran) return "Domain fit not checked: " + f.probe.reason + ".";
  const std::string auc = report::fmt_interval(f.probe.m.auc.value, f.probe.m.auc.lo, f.probe.m.auc.hi);
  const std::string spread = "a sample's closest other sample is at similarity " + fmt(f.sample_to_sample) +
                             " (median), your image's closest sample at " + fmt(f.image_to_sample);
  if (r.domain_mismatch)
    return "WARNING: the generator does not fit your images. The embedder tells its samples from your images apart "
           "(linear probe AUC " + auc + ", above " + fmt(o.fit_max_auc, 2) + "); " + spread +
           ". Similarities across two domains are not evidence about people, so every verdict is inconclusive. Audit "
           "a generator of the same kind of images, with an embedder made for them.";
  return "Domain fit: the embedder does not keep the generator's samples apart from your images (linear probe AUC " + auc +
         ", at most " + fmt(o.fit_max_auc, 2) + " allowed); " + spread + ".";
}

std::string audit_headline(const AuditResult& r, const AuditOptions& o) {
  const auto& t = r.threshold;
  const std::string n_ids = std::to_string(r.identities.size());
  const std::string tested = " (" + n_ids + " identities, " + std::to_string(r.images) + " images, each searched against " +
                             std::to_string(o.samples) + " generated samples)";
  auto above = [&](const char* which) {
    return r.inconclusive ? " " + std::to_string(r.inconclusive) + " identities are above the " + which + fmt(t.value, 3) +
                                ": listed as inconclusive, not as leaks."
                          : std::string();
  };
  if (r.domain_mismatch)
    return "INCONCLUSIVE" + tested + ": the generator's samples and your images are different domains to the embedder "
           "(see the domain-fit warning), so no identity is called leaking at family-wise FAR " + report::fmt_g(o.far, 3) + "." +
           above("threshold ");
  if (!t.resolved)
    return "INCONCLUSIVE" + tested + ": no identity can be called leaking at family-wise FAR " + report::fmt_g(o.far, 3) +
           ". " + t.reason + "." + above("unresolved threshold ");
  return std::to_string(r.leaking) + " of " + n_ids + " identities in your dataset LEAK" + tested +
         ": the GAN generates a face the identity network calls the same person (similarity above " + fmt(t.value, 3) +
         "). Family-wise FAR " + report::fmt_g(o.far, 3) + ": the chance that any identity not in the training set is "
         "listed here, certified (95%) by " + std::to_string(t.null_scores) +
         (t.reference_scores.empty() ? " impostor pairs." : " reference images.");
}

namespace {

std::vector<std::string> summary_lines(const AuditResult& r, const AuditOptions& o, const std::string& dataset_name) {
  const int64_t n_ids = int64_t(r.identities.size());
  std::vector<std::string> sum = {
      audit_headline(r, o), fit_line(r, o), set_test_line(r),
      "Generator: " + r.generator + ". Dataset: " + dataset_name + " (" + std::to_string(r.images) + " images). " +
          std::to_string(o.samples) + " samples searched. Latent recovery evidence for " +
          std::to_string(r.recovered_identities) + " of " + std::to_string(n_ids) + " identities."};
  if (r.truth) {
    const auto& t = *r.truth;
    sum.push_back("Ground truth is known here (demo): " + std::to_string(t.members_flagged) + " of " + std::to_string(t.members) +
                  " training identities flagged, " + std::to_string(t.nonmembers_flagged) + " of " +
                  std::to_string(t.nonmembers) + " identities never trained on flagged. AUC identity-nn " +
                  fmt(t.auc_identity_nn) + ", recovery " + fmt(t.auc_recovery) + ".");
  }
  return sum;
}

std::string rank_plot(const AuditResult& r) {
  const auto& idr = r.identities;
  const double thr = r.threshold.value;
  std::vector<double> xs, ys, tx = {0, double(idr.size())}, ty = {thr, thr};
  for (size_t k = 0; k < idr.size(); ++k) {
    xs.push_back(double(k + 1));
    ys.push_back(idr[k].nn_similarity);
  }
  std::vector<report::Series> ss = {{"closest-sample similarity", xs, ys, false, {}, {}, {}, {}}, {"threshold", tx, ty, true, {}, {}, {}, {}}};
  auto ref = r.threshold.reference_scores;
  if (!ref.empty()) {
    std::sort(ref.begin(), ref.end(), std::greater<double>());
    std::vector<double> rx, ry;
    for (size_t k = 0; k < ref.size(); ++k) {
      rx.push_back(double(k + 1) * double(idr.size()) / double(ref.size()));
      ry.push_back(ref[k]);
    }
    ss.push_back({"reference images (not trained on), rescaled", rx, ry, true, {}, {}, {}, {}});
  }
  report::PlotOptions po;
  po.title = "identities by closest-sample similarity";
  po.x_label = "identity rank";
  po.y_label = "similarity";
  po.width = 560;
  return report::svg_plot(ss, po);
}

/// Who is above the threshold: the share of your identities, and of the reference strangers, whose
/// closest generated sample is at least as similar as x (log scale: the tail is what matters), with
/// the threshold drawn. Tooltips name each identity and its verdict. At most ~2,000 identity points
/// (all of the top 300) and ~600 reference points: the page stays small at 10^5 identities.
std::string similarity_spec(const AuditResult& r, const AuditOptions& o) {
  report::Series mine;
  mine.name = "your identities (" + std::to_string(r.identities.size()) + ")";
  std::vector<size_t> order(r.identities.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return r.identities[a].nn_similarity > r.identities[b].nn_similarity; });
  const size_t n = order.size(), step = std::max<size_t>(1, n / 2000);
  for (size_t k = 0; k < n; ++k) {
    if (k >= 300 && k % step != 0 && k + 1 != n) continue;
    const auto& ev = r.identities[order[k]];
    mine.x.push_back(ev.nn_similarity);
    mine.y.push_back(double(k + 1) / double(n));
    mine.tips.push_back(ev.identity + member_suffix(ev.member) + ": " + verdict_name(ev.verdict));
  }
  std::vector<report::Series> ss = {mine};
  auto ref = r.threshold.reference_scores;
  if (!ref.empty()) {
    std::sort(ref.begin(), ref.end(), std::greater<double>());
    report::Series rs;
    rs.name = "reference strangers (" + std::to_string(ref.size()) + ", not trained on)";
    rs.dashed = true;
    const size_t m = ref.size(), rstep = std::max<size_t>(1, m / 500);
    for (size_t k = 0; k < m; ++k)
      if (k < 100 || k % rstep == 0 || k + 1 == m) rs.x.push_back(ref[k]), rs.y.push_back(double(k + 1) / double(m));
    ss.push_back(rs);
  }
  report::PlotOptions po;
  po.title = "Closest-sample similarity: your identities vs strangers";
  po.x_label = "similarity of the closest generated sample";
  po.y_label = "share at or above (log)";
  po.log_y = true;
  po.width = 560;
  po.height = 300;
  po.x_rules = {{r.threshold.value, (r.threshold.resolved ? "threshold " : "unresolved threshold ") + fmt(r.threshold.value, 3) +
                                        " (family-wise FAR " + report::fmt_g(o.far, 3) + ")"}};
  return report::vega_line_spec(ss, po);
}

/// samples.png (the first 64 samples, labelled and at a readable size) and top.png (one identity a
/// row: your image | closest sample | reconstruction, with the identity, its verdict and similarity).
void write_pictures(const std::string& out, const AuditResult& r, const Pictures& p, models::Generator& g, uint64_t seed,
                    int64_t samples) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < std::min<int64_t>(64, samples); ++i) ids.push_back(i);
  io::GridLabels sl;
  sl.title = "generated samples 0-" + std::to_string(ids.size() - 1) + " (seed " + std::to_string(seed) + ")";
  sl.min_side = 64;
  for (size_t i = 0; i < ids.size(); i += 8) sl.rows.push_back({std::to_string(i) + "-" + std::to_string(std::min(ids.size(), i + 8) - 1)});
  io::save_image(out + "/samples.png", io::labelled_grid(SampleBank::images(g, seed, ids), 8, sl));
  std::vector<at::Tensor> tiles;
  const auto s = g.output_shape();
  auto blank = torch::ones({s.channels, s.height, s.width});
  io::GridLabels tl;
  tl.title = "top identities by closest-sample similarity";
  tl.columns = {"your image", "closest sample", "reconstruction"};
  for (size_t k = 0; k < p.image.size() && k < 16; ++k) {
    for (const auto* col : {&p.image, &p.sample, &p.recon}) tiles.push_back((*col)[k].defined() ? (*col)[k] : blank);
    const auto& ev = r.identities[k];
    tl.rows.push_back({"#" + std::to_string(k + 1) + " " + ev.identity + member_suffix(ev.member),
                       verdict_label(ev.verdict),
                       "similarity " + report::fmt_g(ev.nn_similarity, 3)});
  }
  if (tiles.empty()) return;
  io::save_image(out + "/top.png", io::labelled_grid(torch::stack(tiles), 3, tl));
}

}  // namespace

void write_audit_report(const std::string& out, const AuditResult& r, const AuditOptions& o, models::Generator& g,
                        const io::Manifest& dataset, const std::string& dataset_name, const nlohmann::json& options_json) {
  write_csv_json(out, r, o, dataset, options_json);
  const size_t shown = std::min(r.identities.size(), size_t(std::max<int64_t>(0, o.top)));
  auto pics = pictures(r, std::max(shown, std::min<size_t>(16, r.identities.size())), g, dataset, o.seed, o.invert.latent, o.crop);
  report::HtmlReport html("rewind audit: does this GAN reproduce your people?");
  html.summary(summary_lines(r, o, dataset_name));
  html.heading("Your identities against strangers");
  html.paragraph("For each of your identities, the similarity of the closest generated sample; beside it the same for "
                 "reference images of people the GAN was not trained on. A curve of your people to the right of the "
                 "strangers' means the GAN makes faces closer to them than chance does; an identity right of the "
                 "threshold leaks. Hover a point for the identity.");
  html.vega("similarity", similarity_spec(r, o), rank_plot(r));
  if (r.truth) {  // ground truth (the demo, or a manifest's member column): how well each signal separates the two
    const auto& t = *r.truth;
    html.heading("Against the ground truth");
    html.paragraph("Your manifest says which identities were trained on (" + std::to_string(t.members) + ") and which were "
                   "not (" + std::to_string(t.nonmembers) + "), so each signal's ROC can be drawn: identity-nn (the closest "
                   "sample's similarity) over every identity, recovery (the calibrated recovery error) over the " +
                   std::to_string(t.recovery_identities) + " with recovery evidence. Shaded: pointwise 95% bootstrap bands, "
                   "at the FPRs the non-member identities resolve (at least 3/FPR of them). Without a ground truth the "
                   "plot above is the ROC's counterpart: your identities against reference strangers.");
    std::vector<std::pair<std::string, const mia::MiaMetrics*>> rocs = {{"identity-nn", &t.identity_nn}};
    if (!t.recovery.roc.fpr.empty()) rocs.push_back({"recovery", &t.recovery});
    roc_plots(html, rocs);
  }
  html.heading("Top identities");
  html.paragraph("Each row: your image | the closest generated sample | the generator's best reconstruction of your image "
                 "(latent recovery). Identities are ranked by the similarity of their closest sample.");
  std::vector<std::vector<std::string>> rows;
  const bool with_disc = std::any_of(r.identities.begin(), r.identities.end(),
                                     [](const IdentityEvidence& ev) { return ev.disc_percentile.has_value(); });
  for (size_t k = 0; k < shown; ++k) {
    const auto& ev = r.identities[k];
    rows.push_back({std::to_string(k + 1),
                    report::escape(ev.identity) + (ev.member < 0 ? "" : ev.member ? "<br><small>(member)</small>" : "<br><small>(non-member)</small>"),
                    verdict_html(ev.verdict), img_cell(pics.image[k], "your image of " + ev.identity), img_cell(pics.sample[k], "generated sample"),
                    img_cell(pics.recon[k], "reconstruction"), fmt(ev.nn_similarity, 3),
                    ev.recovery_error ? fmt(*ev.recovery_error, 4) + "<br><small>z " + fmt(*ev.recovery_z, 1) + "</small>" : "n/a (not recovered)",
                    opt_fmt(ev.recon_similarity, 3)});
    if (with_disc) rows.back().push_back(opt_fmt(ev.disc_percentile, 3));
  }
  std::vector<std::string> header = {"#", "identity", "verdict", "your image", "closest sample", "reconstruction",
                                     "sample similarity", "recovery error", "reconstruction similarity"};
  if (with_disc) header.push_back("discriminator percentile");
  html.table_html(header, rows);
  html.heading("Method");
  html.paragraph("Identity nearest neighbour (Webster et al. 2021, 'This Person (Probably) Exists'): " + std::to_string(o.samples) +
                 " samples are drawn from the generator, embedded with " + r.embedder +
                 " and indexed (FAISS); each of your images is searched against them. An identity leaks when its best "
                 "similarity is above the threshold. Latent recovery (Webster et al. 2019): the generator's latent space is "
                 "searched for the first " + std::to_string(o.per_identity) + " image(s) of " +
                 std::to_string(r.recovered_identities) + " identities (the " +
                 (o.recover_top < 0 ? std::string("all") : std::to_string(o.recover_top)) + " highest by identity-nn, plus " +
                 std::to_string(o.recover_control) + " drawn at random from the rest as a control; " +
                 std::to_string(o.invert.restarts) + " restarts x " + std::to_string(o.invert.loop.steps) +
                 " " + (o.invert.loop.optimizer == "lbfgs" ? "L-BFGS" : "Adam") +
                 " steps); a recovery error far below the median of the recovered images "
                 "(z = (median - error) / (1.4826 MAD)) is supporting evidence: training images are usually rebuilt better. " +
                 ganinv::latent_space_note(o.invert.latent));
  html.paragraph("Dataset-level test (with --reference): the first image of each of your identities and of each "
                 "reference identity is scored by its closest-sample similarity, and a one-sided Mann-Whitney U test asks "
                 "whether yours are higher as a set; it needs 20 identities on each side. It answers 'was this set "
                 "used?', not 'was this person used?', and its false-alarm rate holds only when the reference people "
                 "come from the same population as yours. " + set_test_line(r));
  html.heading("Thresholds");
  html.paragraph("Verdict threshold " + fmt(r.threshold.value, 4) + ": " + r.threshold.method + "." +
                 (r.threshold.resolved ? "" : " Not resolved: " + r.threshold.reason + "."));
  if (!r.skipped.empty())
    html.paragraph(std::to_string(r.skipped.size()) + " images could not be loaded and were skipped (listed in run.json); first: " +
                   r.skipped.front().reason);
  html.details("run options and build", io::dump_json(options_json, 2) + "\n" + build_string());
  html.write(out + "/report.html");
  write_pictures(out, r, pics, g, o.seed, o.samples);
}

}  // namespace rw::audit
