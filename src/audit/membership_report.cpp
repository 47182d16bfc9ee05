// membership's report files: scores.csv, identity_scores.csv, report.json, report.html.
#include <algorithm>
#include <cmath>
#include <fstream>

#include "rewind/audit/membership.h"
#include "rewind/core/build_info.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/report/html.h"

namespace rw::audit {

namespace {

using report::fmt;

std::string cell(double v, int digits = 6) { return std::isnan(v) ? "" : fmt(v, digits); }

void write_scores(const std::string& out, const MembershipResult& r, const io::Manifest* const sets[2]) {
  io::CsvRow header = {"path", "identity", "member"};
  for (const auto& k : r.attacks) header.push_back(k == "identity-nn" || k == "recon-identity" ? k + "_similarity" : k + "_error");
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
                      {"ks_statistic", m.ks_statistic}, {"ks_pvalue", m.ks_pvalue}};
  for (size_t f = 0; f < m.fprs.size(); ++f) j["tpr_at_fpr"][fmt(m.fprs[f], 3)] = {m.tpr[f].value, m.tpr[f].lo, m.tpr[f].hi};
  if (!std::isnan(a.median_member)) j["median_error_members"] = a.median_member;
  if (!std::isnan(a.median_nonmember)) j["median_error_nonmembers"] = a.median_nonmember;
  if (!std::isnan(a.mre_gap)) j["mre_gap"] = a.mre_gap;
  return j;
}

std::string roc_svg(const std::vector<std::pair<std::string, mia::Roc>>& rocs, bool log) {
  std::vector<report::Series> ss;
  for (const auto& [name, r] : rocs) {
    // at most ~2000 points per curve: the picture is the same, the page stays small at 10^5 images
    const size_t n = r.fpr.size(), step = std::max<size_t>(1, n / 2000);
    report::Series se{name, {}, {}, false};
    for (size_t i = 0; i < n; i += step) se.x.push_back(r.fpr[i]), se.y.push_back(r.tpr[i]);
    if (n > 0 && (n - 1) % step != 0) se.x.push_back(r.fpr[n - 1]), se.y.push_back(r.tpr[n - 1]);
    ss.push_back(std::move(se));
  }
  report::PlotOptions o;
  o.title = log ? "ROC (log-log)" : "ROC";
  o.x_label = "false-positive rate";
  o.y_label = "true-positive rate";
  o.log_x = o.log_y = log;
  o.diagonal = true;
  o.x_max = o.y_max = 1;
  o.x_min = o.y_min = log ? 1e-3 : 0;
  return report::svg_plot(ss, o);
}

}  // namespace

void write_membership_report(const std::string& out, const MembershipResult& r, const io::Manifest& members,
                             const io::Manifest& nonmembers, const MembershipOptions& o,
                             const std::string& generator_name, const nlohmann::json& options_json) {
  const io::Manifest* sets[2] = {&nonmembers, &members};
  write_scores(out, r, sets);
  nlohmann::json rep;
  rep["command"] = "membership";
  rep["build"] = build_string();
  rep["options"] = options_json;
  std::vector<std::string> summary;
  std::vector<std::vector<std::string>> table;
  std::vector<std::pair<std::string, mia::Roc>> rocs;
  auto ci = [](const mia::Interval& v) { return fmt(v.value) + " [" + fmt(v.lo) + ", " + fmt(v.hi) + "]"; };
  for (const auto& a : r.metrics) {
    const auto& m = a.m;
    rep["metrics"][a.level][a.attack] = metrics_json(a);
    table.push_back({a.level, a.attack, std::to_string(m.members) + " / " + std::to_string(m.nonmembers), ci(m.auc),
                     ci(m.tpr[0]), ci(m.tpr[1]), ci(m.tpr[2]), fmt(m.ks_pvalue, 4), std::isnan(a.mre_gap) ? "" : fmt(a.mre_gap)});
    if (a.level == "image") {
      rocs.push_back({a.attack, m.roc});
      summary.push_back(a.attack + ": AUC " + fmt(m.auc.value) + " (95% CI " + fmt(m.auc.lo) + "-" + fmt(m.auc.hi) +
                        "), TPR " + fmt(m.tpr[1].value) + " at FPR 1e-2");
    }
  }
  io::write_file_atomic(out + "/report.json", rep.dump(2) + "\n");
  report::HtmlReport html("rewind membership report");
  html.paragraph("Generator " + generator_name + "; " + std::to_string(r.members) + " member and " +
                 std::to_string(r.nonmembers) + " non-member images. A score is 'higher = more likely a member'." +
                 (o.recover_max > 0 ? " Latent recovery ran on at most " + std::to_string(o.recover_max) +
                                          " images per class (a seeded draw); its attacks are measured on those."
                                    : ""));
  html.summary(summary);
  html.heading("Metrics (95% bootstrap intervals)");
  html.table({"level", "attack", "members / non-members", "AUC", "TPR@FPR 1e-3", "TPR@FPR 1e-2", "TPR@FPR 1e-1",
              "KS p-value", "MRE-gap"}, table);
  html.raw(roc_svg(rocs, false) + roc_svg(rocs, true));
  html.heading("Method");
  html.paragraph("recovery: latent recovery error (MSE of G(z*) to the target, Webster et al. 2019); calibrated: minus the "
                 "same error under a reference generator trained on other data (GAN-Leaks, Chen et al. 2020); "
                 "identity-nn: best identity similarity between the target and " + std::to_string(o.samples) +
                 " generated samples (Webster et al. 2021); recon-identity: identity similarity between the target and "
                 "its own reconstruction. MRE-gap = (median non-member error - median member error) / median non-member error.");
  if (!r.skipped.empty()) html.paragraph(std::to_string(r.skipped.size()) + " images skipped (listed in run.json).");
  html.details("run options", options_json.dump(2));
  html.write(out + "/report.html");
}

}  // namespace rw::audit
