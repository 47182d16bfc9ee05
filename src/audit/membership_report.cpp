// membership's report files: scores.csv, identity_scores.csv, report.json, report.html.
#include <algorithm>
#include <cmath>
#include <fstream>

#include "rewind/audit/membership.h"
#include "rewind/core/build_info.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/run_record.h"
#include "rewind/mia/metrics.h"
#include "rewind/report/html.h"

namespace rw::audit {

namespace {

using report::fmt;

std::string cell(double v, int digits = 6) { return std::isnan(v) ? "" : fmt(v, digits); }

/// "0.812 [0.770, 0.851]"
std::string ci(const mia::Interval& v) { return report::fmt_interval(v.value, v.lo, v.hi); }

void write_scores(const std::string& out, const MembershipResult& r, const io::Manifest* const sets[2]) {
  io::CsvRow header = {"path", "identity", "member"};
  for (const auto& k : r.attacks)
    header.push_back(k == "identity-nn" || k == "recon-identity"      ? k + "_similarity"
                     : k == "identity-calibrated"                     ? k + "_similarity_gap"
                     : k == "lira" || k == "rmia" || k == "identity-lira" || k == "recon-identity-lira" ? k + "_statistic"
                     : k == "discriminator"                           ? k + "_logit"
                                                                      : k + "_error");
  for (const auto& k : r.attacks) header.push_back(k + "_score");
  // one line at a time into the temporary file: at 10^6 images the text would be ~100 MB
  io::write_via_temp(out + "/scores.csv", [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary);
    f << io::csv_line(header);
    for (size_t i = 0; i < r.rows.size() && f; ++i) {
      const auto& en = sets[r.rows[i].label]->entries.at(r.rows[i].row);
      io::CsvRow row = {en.path, en.identity, std::to_string(r.rows[i].label)};
      for (const auto& k : r.attacks) row.push_back(cell(r.raw.at(k)[i]));
      for (const auto& k : r.attacks) row.push_back(cell(r.score.at(k)[i]));
      f << io::csv_line(row);
    }
    f.flush();
    return bool(f);
  });
  io::CsvRow ih = {"identity", "member", "images"};
  for (const auto& k : r.attacks) ih.push_back(k + "_score");
  std::string icsv = io::csv_line(ih);
  for (size_t i = 0; i < r.identity_rows.size(); ++i) {
    const auto& id = r.identity_rows[i];
    io::CsvRow row = {id.identity, std::to_string(id.label), std::to_string(id.images)};
    for (const auto& k : r.attacks) row.push_back(cell(r.identity_score.at(k)[i]));
    icsv += io::csv_line(row);
  }
  io::write_file_atomic(out + "/identity_scores.csv", icsv);
}

nlohmann::json metrics_json(const AttackMetrics& a) {
  const auto& m = a.m;
  nlohmann::json j = {{"members", m.members}, {"nonmembers", m.nonmembers}, {"auc", {m.auc.value, m.auc.lo, m.auc.hi}},
                      {"auc_pvalue", m.auc_pvalue}, {"ks_statistic", m.ks_statistic}, {"ks_pvalue", m.ks_pvalue}};
  for (const auto& t : m.tpr) {
    const auto key = report::fmt_g(t.fpr, 3);
    if (t.resolved) j["tpr_at_fpr"][key] = {t.tpr.value, t.tpr.lo, t.tpr.hi};
    else j["tpr_at_fpr"][key] = t.reason;
  }
  if (!std::isnan(a.median_member)) j["median_error_members"] = a.median_member;
  if (!std::isnan(a.median_nonmember)) j["median_error_nonmembers"] = a.median_nonmember;
  if (!std::isnan(a.mre_gap)) j["mre_gap"] = a.mre_gap;
  if (!m.band.fpr.empty()) j["roc_band"] = {{"fpr", m.band.fpr}, {"tpr_lo", m.band.lo}, {"tpr_hi", m.band.hi}};
  return j;
}

/// "0.91 [0.85, 0.95]" or the reason it is not stated.
std::string tpr_cell(const mia::TprAtFpr& t) {
  return t.resolved ? ci(t.tpr) : t.reason;
}

/// The summary's TPR: at the lowest FPR the non-members resolve.
std::string lowest_resolved_tpr(const mia::MiaMetrics& m) {
  const mia::TprAtFpr* best = nullptr;
  for (const auto& t : m.tpr)
    if (t.resolved && (!best || t.fpr < best->fpr)) best = &t;
  if (!best) return "TPR at low FPR n/a (" + std::to_string(m.nonmembers) + " non-members resolve none of the FPRs)";
  return "TPR " + ci(best->tpr) + " at FPR " +
         report::fmt_g(best->fpr, 3);
}

}  // namespace

/// The ROC curves as series and plot options (linear or log-log axes).
static std::pair<std::vector<report::Series>, report::PlotOptions> roc_plot(const std::vector<std::pair<std::string, const mia::MiaMetrics*>>& rocs,
                                                                     bool log) {
  std::vector<report::Series> ss;
  for (const auto& [name, m] : rocs) {
    const auto& r = m->roc;
    // at most ~2000 points per curve: the picture is the same, the page stays small at 10^5 images
    const size_t n = r.fpr.size(), step = std::max<size_t>(1, n / 2000);
    report::Series se;
    se.name = name;
    for (size_t i = 0; i < n; i += step) se.x.push_back(r.fpr[i]), se.y.push_back(r.tpr[i]);
    if (n > 0 && (n - 1) % step != 0) se.x.push_back(r.fpr[n - 1]), se.y.push_back(r.tpr[n - 1]);
    se.band_x = m->band.fpr, se.band_lo = m->band.lo, se.band_hi = m->band.hi;
    ss.push_back(std::move(se));
  }
  report::PlotOptions o;
  o.title = log ? "ROC, log-log (the low-FPR end)" : "ROC";
  o.x_label = "false-positive rate";
  o.y_label = "true-positive rate";
  o.log_x = o.log_y = log;
  o.diagonal = true;
  o.x_max = o.y_max = 1;
  o.x_min = o.y_min = log ? 1e-3 : 0;
  o.width = 360;
  o.height = 300;
  if (log) o.x_rules = {{0.01, "FPR 1%"}};
  return {ss, o};
}

void roc_plots(report::HtmlReport& html, const std::vector<std::pair<std::string, const mia::MiaMetrics*>>& rocs) {
  for (const bool log : {false, true}) {
    const auto [ss, o] = roc_plot(rocs, log);
    html.vega(log ? "roc-loglog" : "roc", report::vega_line_spec(ss, o), report::svg_plot(ss, o));
  }
}

std::string blind_line(const mia::BlindBaseline& b) {
  if (!b.ran) return "blind baseline: not run, " + b.reason;
  const std::string auc = ci(b.m.auc);
  if (b.biased)
    return "WARNING: the member / non-member split is biased. Image statistics alone, without the GAN, tell the two "
           "sets apart with AUC " + auc + " (" + std::to_string(b.folds) + "-fold logistic regression), so the attacks' "
           "AUCs above do not measure membership alone. Use members and non-members from the same source and processing.";
  if (std::isnan(b.m.auc.lo))
    return "blind baseline (image statistics alone, no GAN): AUC " + auc + ": whether the split is biased is "
           "inconclusive without a bootstrap interval (--bootstrap 0 was given)";
  if (b.m.auc.hi < 0.5)  // out-of-fold scores of a classifier with nothing to learn are anti-correlated on small sets
    return "blind baseline (image statistics alone, no GAN): AUC " + auc + ", below chance: the cross-validated "
           "classifier found nothing that separates the sets (an interval below 0.5 is the usual artefact of "
           "cross-validation on small sets with no signal), so no sign that the split is biased";
  return "blind baseline (image statistics alone, no GAN): AUC " + auc + ", not better than chance: no sign that the split is biased";
}

std::vector<std::string> membership_summary(const MembershipResult& r) {
  std::vector<std::string> out;
  for (const auto& a : r.metrics) {
    if (a.level != "image") continue;
    const auto& m = a.m;
    out.push_back(a.attack + ": AUC " + ci(m.auc) + " (p = " + mia::format_pvalue(m.auc_pvalue) + " against 0.5), " + lowest_resolved_tpr(m) + "; " +
                  std::to_string(m.members) + " members / " + std::to_string(m.nonmembers) + " non-members");
  }
  for (const auto& [a, why] : r.skipped_attacks) out.push_back(a + ": not run, " + why);
  out.push_back(blind_line(r.blind));
  return out;
}

void write_membership_report(const std::string& out, const MembershipResult& r, const io::Manifest& members,
                             const io::Manifest& nonmembers, const MembershipOptions& o,
                             const std::string& generator_name, const nlohmann::json& options_json) {
  const io::Manifest* sets[2] = {&nonmembers, &members};
  write_scores(out, r, sets);
  nlohmann::json rep;
  rep["command"] = "membership";
  rep["build"] = build_string();
  rep["options"] = options_json;
  std::vector<std::vector<std::string>> table;
  std::vector<std::pair<std::string, const mia::MiaMetrics*>> rocs;
  const auto& fprs = mia::default_fprs();
  for (const auto& a : r.metrics) {
    const auto& m = a.m;
    rep["metrics"][a.level][a.attack] = metrics_json(a);
    std::vector<std::string> row = {a.level, a.attack, std::to_string(m.members) + " / " + std::to_string(m.nonmembers),
                                    ci(m.auc), mia::format_pvalue(m.auc_pvalue)};
    for (const auto& t : m.tpr) row.push_back(tpr_cell(t));
    row.push_back(mia::format_pvalue(m.ks_pvalue));
    row.push_back(std::isnan(a.mre_gap) ? "" : fmt(a.mre_gap));
    table.push_back(row);
    if (a.level == "image") rocs.push_back({a.attack, &m});
  }
  for (const auto& [a, why] : r.skipped_attacks) rep["skipped_attacks"][a] = why;
  rep["blind_baseline"] = r.blind.ran ? nlohmann::json{{"auc", {r.blind.m.auc.value, r.blind.m.auc.lo, r.blind.m.auc.hi}},
                                                       {"auc_pvalue", r.blind.m.auc_pvalue}, {"biased", r.blind.biased},
                                                       {"folds", r.blind.folds}, {"members", r.blind.m.members},
                                                       {"nonmembers", r.blind.m.nonmembers}}
                                      : nlohmann::json{{"ran", false}, {"reason", r.blind.reason}};
  const auto summary = membership_summary(r);
  const std::string same_levels =
      "Each identity has one image, so the identity level repeats the image level (no per-identity aggregation).";
  if (r.one_image_per_identity) rep["identity_level_note"] = same_levels;
  io::write_file_atomic(out + "/report.json", io::dump_json(rep, 2) + "\n");
  report::HtmlReport html("rewind membership report");
  html.paragraph("Generator " + generator_name + "; " + std::to_string(r.members) + " member and " +
                 std::to_string(r.nonmembers) + " non-member images. A score is 'higher = more likely a member'." +
                 (o.recover_max > 0 ? " Latent recovery ran on at most " + std::to_string(o.recover_max) +
                                          " images per class (a seeded draw); its attacks are measured on those."
                                    : ""));
  html.summary(summary);
  html.heading(o.boot > 0 ? "Metrics (95% bootstrap intervals)" : "Metrics (no intervals: --bootstrap 0)");
  std::vector<std::string> head = {"level", "attack", "members / non-members", "AUC", "AUC p-value (vs 0.5)"};
  for (double f : fprs) head.push_back("TPR@FPR " + report::fmt_g(f, 3));
  head.push_back("KS p-value");
  head.push_back("MRE-gap");
  html.table(head, table);
  html.paragraph("TPR at an FPR is stated only where the non-members resolve it: with no false positive among N non-members "
                 "the 95% upper bound on the FPR is about 3/N, so FPR f needs at least 3/f non-members; otherwise 'n/a'. "
                 "The AUC p-value is two-sided (Mann-Whitney U, normal approximation)." +
                 std::string(o.boot > 0 ? " Shaded around each ROC curve: its pointwise 95% bootstrap band (the same "
                                          "resamples as the intervals), drawn only at the FPRs the non-members resolve."
                                        : "") +
                 (r.one_image_per_identity ? " " + same_levels : std::string()));
  roc_plots(html, rocs);
  html.heading("Validity guard: blind baseline");
  html.paragraph(blind_line(r.blind) + ". Features: per-channel mean and spread, gradient and Laplacian energy, "
                 "saturation and high-frequency share of each image as the attacks see it; scored out of fold, so a "
                 "fair split gives about 0.5 (Das et al. 2024 show such baselines beating published attacks on "
                 "biased evaluation sets).");
  html.heading("Method");
  html.paragraph("recovery: latent recovery error (MSE of G(z*) to the target, Webster et al. 2019); calibrated: that error "
                 "minus the mean of the same image's errors under the reference generators trained on other data (GAN-Leaks, Chen et al. "
                 "2020); lira: offline LiRA (Carlini et al. 2022) on log errors, (mean log reference error - log error) / "
                 "spread, the spread pooled over images below 8 references (LiRA's fixed variance); rmia: RMIA's likelihood "
                 "ratio (Zarifzadeh et al. 2024) of the target generator to the references, likelihood exp(-error / "
                 "median reference error); "
                 "identity-nn: best identity similarity between the target and " + std::to_string(o.samples) +
                 " generated samples (Webster et al. 2021); recon-identity: identity similarity between the target and "
                 "its own reconstruction; identity-calibrated: the identity-nn similarity minus its mean over the same "
                 "number of samples of each reference generator (the same seeds), how much closer this GAN comes to the "
                 "person than GANs that never saw them; identity-lira: offline LiRA on the closest-sample distance "
                 "(1 - similarity) against the references, as lira on errors; recon-identity-lira: offline LiRA on the "
                 "reconstruction's identity distance (1 - recon-identity similarity) against the same image's under each "
                 "reference generator; discriminator: the logit the GAN's own "
                 "discriminator gives the image (Hayes et al. 2019, white-box LOGAN). MRE-gap = (median non-member error - median member error) / median non-member error. " +
                 ganinv::latent_space_note(o.invert.latent));
  if (!r.skipped.empty()) html.paragraph(std::to_string(r.skipped.size()) + " images skipped (listed in run.json).");
  html.details("run options", io::dump_json(options_json, 2));
  html.write(out + "/report.html");
}

}  // namespace rw::audit
