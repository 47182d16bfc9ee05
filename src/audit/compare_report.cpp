// compare's report files: report.csv, report.json, report.html.
#include <torch/torch.h>

#include <algorithm>

#include "rewind/audit/compare.h"
#include "rewind/core/build_info.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/image.h"
#include "rewind/io/run_record.h"
#include "rewind/report/html.h"

#include <nlohmann/json.hpp>

namespace rw::audit {

namespace {

using report::fmt;

void write_csv(const std::string& out, const CompareResult& r) {
  std::vector<std::string> header = {"identity", "member", "gan_identity_nn", "gan_probe_similarity", "gan_verdict",
                                     "gan_control", "recovery_mse"};
  for (const auto& cl : r.cells) {
    header.push_back("split_" + cl.split + "_" + cl.defense + "_similarity");
    header.push_back("split_" + cl.split + "_" + cl.defense + "_exposed");
    header.push_back("split_" + cl.split + "_" + cl.defense + "_control");
  }
  std::string csv = io::csv_line(header);
  for (size_t k = 0; k < r.identities.size(); ++k) {
    const auto& id = r.identities[k];
    io::CsvRow row = {id.identity, id.member < 0 ? "" : std::to_string(id.member), fmt(id.nn_similarity, 4),
                      fmt(r.gan_exposure.own[k], 4), verdict_name(id.gan_verdict), r.gan_exposure.control[k] ? "1" : "0",
                      fmt(id.recovery_mse, 6)};
    for (const auto& cl : r.cells) {
      row.push_back(fmt(cl.cos[int64_t(k)].item<double>(), 4));
      row.push_back(cl.exposure.exposed[k] ? (cl.threshold.resolved ? "1" : "inconclusive") : "0");
      row.push_back(cl.exposure.control[k] ? "1" : "0");
    }
    csv += io::csv_line(row);
  }
  io::write_file_atomic(out + "/report.csv", csv);
}

/// "12 / 128" when the threshold is resolved, else "inconclusive (12 / 128 above an unresolved threshold)".
std::string count_cell(int64_t k, int64_t n, const Threshold& t) {
  const std::string c = std::to_string(k) + " / " + std::to_string(n);
  return t.resolved ? c : "inconclusive (" + c + " above an unresolved threshold)";
}

std::string png(const at::Tensor& t) { return io::encode_png(t); }

/// Both directions on one chart: people exposed (bars) and the control (ticks) through the GAN's
/// outputs and through each split, grouped by defence, stages in depth order. Inconclusive cells
/// (unresolved threshold) are hatched by opacity and say so in the tooltip.
std::string exposure_chart_spec(const CompareResult& r, const CompareOptions& o) {
  using nlohmann::json;
  json values = json::array(), order = json::array({"GAN outputs"});
  values.push_back({{"direction", "GAN outputs"}, {"defence", "none"}, {"exposed", r.gan_exposure.n_exposed},
                    {"control", r.gan_exposure.n_control}, {"claim", r.gan_threshold.resolved ? "resolved" : "inconclusive"}});
  for (const auto& cl : r.cells) {
    const std::string d = "split at " + cl.split;
    if (std::find(order.begin(), order.end(), d) == order.end()) order.push_back(d);
    values.push_back({{"direction", d}, {"defence", cl.defense}, {"exposed", cl.exposed}, {"control", cl.control},
                      {"claim", cl.threshold.resolved ? "resolved" : "inconclusive"}});
  }
  const json x = {{"field", "direction"}, {"type", "nominal"}, {"sort", order}, {"title", nullptr}, {"axis", {{"labelAngle", -30}}}};
  const json tooltip = json::array({{{"field", "direction"}}, {{"field", "defence"}}, {{"field", "exposed"}, {"title", "people exposed"}},
                                    {{"field", "control"}}, {{"field", "claim"}, {"title", "threshold"}}});
  json spec = {
      {"$schema", "https://vega.github.io/schema/vega-lite/v5.json"},
      {"title", "People exposed of " + std::to_string(r.identities.size()) + ", through the GAN and through each split (family-wise FAR " +
                    report::fmt_g(o.far, 3) + "); ticks: the control"},
      {"width", 560},
      {"height", 260},
      {"data", {{"values", values}}},
      {"encoding", {{"x", x}, {"xOffset", {{"field", "defence"}, {"type", "nominal"}}}, {"tooltip", tooltip}}},
      {"layer", json::array({{{"mark", {{"type", "bar"}}},
                              {"encoding", {{"y", {{"field", "exposed"}, {"type", "quantitative"}, {"title", "people"}}},
                                            {"color", {{"field", "defence"}, {"type", "nominal"},
                                                       {"legend", {{"orient", "bottom"}, {"title", "defence"}}}}},
                                            {"opacity", {{"field", "claim"}, {"type", "ordinal"}, {"sort", {"resolved", "inconclusive"}}, {"legend", nullptr},
                                                         {"scale", {{"domain", {"resolved", "inconclusive"}}, {"range", {1.0, 0.35}}}}}}}}},
                             {{"mark", {{"type", "tick"}, {"color", "#222"}, {"thickness", 2}}},
                              {"encoding", {{"y", {{"field", "control"}, {"type", "quantitative"}}}}}}})}};
  return spec.dump();
}

/// In how many directions (the GAN, each split x defence cell) each person is exposed.
std::vector<int> exposure_counts(const CompareResult& r) {
  std::vector<int> hits(r.identities.size(), 0);
  for (size_t k = 0; k < hits.size(); ++k) {
    hits[k] = r.gan_exposure.exposed[k];
    for (const auto& cl : r.cells) hits[k] += cl.exposure.exposed[k];
  }
  return hits;
}

/// People riskiest first: exposed in more directions (`hits`, exposure_counts) first, then by the
/// GAN side's closest-sample similarity.
std::vector<size_t> risk_order(const CompareResult& r, const std::vector<int>& hits) {
  std::vector<size_t> order(r.identities.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (hits[a] != hits[b]) return hits[a] > hits[b];
    return r.identities[a].nn_similarity > r.identities[b].nn_similarity;
  });
  return order;
}

/// The per-person table in risk_order. Verdicts coloured; similarities to 2 decimals (the
/// embedder's noise floor is about 0.01).
std::vector<std::vector<std::string>> person_rows(const CompareResult& r, std::vector<std::string>* header) {
  *header = {"identity", "member", "exposed in", "GAN: closest sample", "GAN verdict"};
  for (const auto& cl : r.cells) header->push_back(cl.split + " / " + cl.defense);
  const auto hits = exposure_counts(r);
  const auto order = risk_order(r, hits);
  std::vector<std::vector<std::string>> rows;
  for (size_t k : order) {
    const auto& id = r.identities[k];
    std::vector<std::string> row = {report::escape(id.identity),
                                    id.member < 0 ? "n/a" : id.member ? "<b>member</b>" : "non-member",
                                    std::to_string(hits[k]) + " of " + std::to_string(1 + r.cells.size()),
                                    fmt(id.nn_similarity, 2), verdict_html(id.gan_verdict)};
    for (const auto& cl : r.cells) {
      const double c = cl.cos[int64_t(k)].item<double>();
      row.push_back(!cl.exposure.exposed[k] ? fmt(c, 2)
                    : cl.threshold.resolved ? "<span class=\"leak\">" + fmt(c, 2) + " exposed</span>"
                                            : "<span class=\"warn\">" + fmt(c, 2) + " inconclusive</span>");
    }
    rows.push_back(row);
  }
  return rows;
}

std::vector<std::vector<std::string>> picture_rows(const CompareResult& r, const CompareOptions& o, models::Generator& g,
                                                   const io::Manifest& m) {
  const auto shape = g.output_shape();
  const size_t n = r.shown.size();
  std::vector<size_t> rows;
  std::vector<int64_t> samples;
  for (size_t k : r.shown) {
    rows.push_back(r.identities[k].photo_row);
    samples.push_back(std::max<int64_t>(0, r.identities[k].nn_sample));
  }
  std::map<size_t, at::Tensor> photos;
  if (!rows.empty()) {
    data::ImageStream s(m, rows, pipeline_loader(shape, o.crop));
    data::Batch b;
    while (s.next(&b))
      for (int64_t j = 0; j < b.size(); ++j) photos[b.rows[size_t(j)]] = b.images[j];
  }
  torch::NoGradGuard ng;
  auto smp = SampleBank::images(g, o.seed, samples);
  std::vector<std::vector<std::string>> out;
  for (size_t j = 0; j < n; ++j) {
    const size_t k = r.shown[j];
    const auto& id = r.identities[k];
    auto rec = ganinv::render(g, o.invert.latent, r.recovery.latents.slice(0, int64_t(k), int64_t(k) + 1)).clamp(-1, 1)[0];
    auto it = photos.find(id.photo_row);
    std::vector<std::string> row = {report::escape(id.identity) + "<br>" + verdict_html(id.gan_verdict),
                                    it == photos.end() ? "" : report::img_png(png(it->second), "photo", 64),
                                    report::img_png(png(smp[int64_t(j)]), "sample", 64) + "<br>" + fmt(id.nn_similarity, 2),
                                    report::img_png(png(rec), "reconstruction", 64)};
    for (const auto& cl : r.cells)
      if (cl.defense == "none")
        row.push_back(report::img_png(png(cl.recon_shown[int64_t(j)]), "rebuilt", 64) + "<br>" +
                      fmt(cl.cos[int64_t(k)].item<double>(), 2));
    out.push_back(row);
  }
  return out;
}

}  // namespace

std::vector<std::string> write_compare_report(const std::string& out, const CompareResult& r, const CompareOptions& o,
                                              models::Generator& g, const io::Manifest& dataset,
                                              const nlohmann::json& options_json) {
  write_csv(out, r);
  const int64_t n_ids = int64_t(r.identities.size());
  nlohmann::json rep;
  rep["command"] = "compare";
  rep["build"] = build_string();
  rep["options"] = options_json;
  rep["family_wise_far"] = o.far;
  rep["gan"] = {{"identities", n_ids}, {"exposed", r.gan_exposure.n_exposed}, {"control", r.gan_exposure.n_control},
                {"leaking", r.gan_leaking}, {"threshold", r.gan_threshold.value},
                {"threshold_method", r.gan_threshold.method}, {"threshold_resolved", r.gan_threshold.resolved},
                {"threshold_reason", r.gan_threshold.reason}, {"members", r.members},
                {"members_leaking", r.members_leaking}};
  rep["split_threshold"] = {{"value", r.split_threshold.value}, {"resolved", r.split_threshold.resolved},
                            {"reason", r.split_threshold.reason}, {"impostor_pairs", r.split_threshold.null_scores},
                            {"per_test_far", r.split_threshold.per_test}};
  rep["split"] = nlohmann::json::array();
  std::vector<std::vector<std::string>> table;
  table.push_back({"GAN outputs (closest sample)", "-", "-", count_cell(r.gan_exposure.n_exposed, n_ids, r.gan_threshold),
                   std::to_string(r.gan_exposure.n_control) + " / " + std::to_string(n_ids), fmt(r.gan_threshold.value, 3),
                   "", "", ""});
  for (const auto& cl : r.cells) {
    const double psnr = cl.psnr.mean().item<double>(), ssim = cl.ssim.mean().item<double>();
    rep["split"].push_back({{"split", cl.split}, {"defense", cl.defense}, {"exposed", cl.exposed}, {"control", cl.control},
                            {"control_at_impostor_threshold", cl.control_impostor}, {"threshold", cl.threshold.value}, {"threshold_resolved", cl.threshold.resolved},
                            {"psnr", psnr}, {"ssim", ssim}, {"accuracy", cl.accuracy}});
    table.push_back({"split activations (rebuilt photo)", cl.split, cl.defense, count_cell(cl.exposed, n_ids, cl.threshold),
                     std::to_string(cl.control) + " / " + std::to_string(n_ids), fmt(cl.threshold.value, 3),
                     fmt(psnr, 1), fmt(ssim, 3), cl.accuracy < 0 ? "n/a" : fmt(cl.accuracy, 3)});
  }
  io::write_file_atomic(out + "/report.json", io::dump_json(rep, 2) + "\n");
  std::vector<std::string> summary;
  const std::string fw = " (rank 1 among all " + std::to_string(n_ids) + " people's photos and above the threshold at "
                         "family-wise FAR " + report::fmt_g(o.far, 3) + ")";
  if (r.gan_threshold.resolved)
    summary.push_back("Through the GAN's outputs: " + std::to_string(r.gan_exposure.n_exposed) + " of " + std::to_string(n_ids) +
                      " people are exposed: their closest generated sample is recognised as them" + fw + "; control: " +
                      std::to_string(r.gan_exposure.n_control) + " samples pass the same threshold against someone else's photo" +
                      (r.members > 0 ? ". " + std::to_string(r.members_leaking) + " of the exposed are among the " +
                                           std::to_string(r.members) + " identities the GAN was trained on." : "."));
  else
    summary.push_back("Through the GAN's outputs: inconclusive. " + r.gan_threshold.reason + ".");
  for (const auto& cl : r.cells)
    if (cl.defense == "none" && !cl.threshold.resolved)
      summary.push_back("Through the split at " + cl.split + ": inconclusive. " + cl.threshold.reason + ".");
    else if (cl.defense == "none")
      summary.push_back("Through the split at " + cl.split + ": " + std::to_string(cl.exposed) + " of " + std::to_string(n_ids) +
                        " photos are rebuilt well enough to be recognised" + fw + " (PSNR " +
                        fmt(cl.psnr.mean().item<double>(), 1) + " dB); control " + std::to_string(cl.control) + ".");
  report::HtmlReport html("rewind compare: who is exposed, through the GAN and through split inference?");
  html.summary(summary);
  html.heading("Exposure table");
  html.paragraph("One photo per identity goes through both attacks, and one rule says 'exposed' for both: the probe (the "
                 "generated sample closest to the person; the photo rebuilt from the activations by white-box inversion, " +
                 std::to_string(o.wb_steps) + " Adam steps, TV/L2 priors) matches the person's own photo at rank 1 among "
                 "all the people's photos, and above the direction's threshold at family-wise FAR " + report::fmt_g(o.far, 3) +
                 ". Control: probes above the same threshold against another person's photo; a rule that counts noise "
                 "shows a control as large as its exposures. Split-side threshold of each cell: certified at FAR " +
                 report::fmt_g(r.split_threshold.per_test, 3) + " per rebuilt photo both by " +
                 std::to_string(r.split_threshold.null_scores) + " impostor pairs of this dataset (" +
                 fmt(r.split_threshold.value, 3) + ") and by the cell's own rebuilds against other people's photos "
                 "(rebuilds that show no one are exchangeable with those), whichever is higher. The split side's control is therefore "
                 "held down by that certification; report.json also gives it at the impostor-pair threshold alone "
                 "(control_at_impostor_threshold), where weak rebuilds that resemble many people pass against strangers. Accuracy: the classifier through the "
                 "(defended) split on the identities it knows: the utility price of the defence.");
  html.table({"direction", "split", "defence", "people exposed", "control", "threshold", "PSNR dB", "SSIM", "accuracy"}, table);
  html.vega("exposure", exposure_chart_spec(r, o));
  std::vector<std::string> hdr = {"identity", "photo", "closest sample", "GAN reconstruction"};
  for (const auto& cl : r.cells)
    if (cl.defense == "none") hdr.push_back("rebuilt from " + cl.split);
  html.heading("Per person, riskiest first");
  html.paragraph("Each person's exposure in every direction: the GAN's closest sample (similarity and verdict) and, per "
                 "split / defence, the similarity of the rebuilt photo to the person's own photo, marked where the person "
                 "is exposed. Sorted by the number of directions that expose the person, then by closest-sample "
                 "similarity; click a column to sort by it. The same per person in report.csv (in dataset order).");
  std::vector<std::string> phdr;
  auto prows = person_rows(r, &phdr);
  html.table_html(phdr, prows);
  html.heading("What each attacker gets");
  html.paragraph("The " + std::to_string(r.shown.size()) + " people the GAN exposes most (leaks, then inconclusive, then by "
                 "closest-sample similarity) with what each attacker rebuilds of them: the closest generated sample, the "
                 "GAN's reconstruction of the photo, and the photo rebuilt from each undefended split's activations, with "
                 "its similarity to the person's own photo (--pictures sets how many).");
  html.table_html(hdr, picture_rows(r, o, g, dataset));
  html.heading("Method");
  html.paragraph("GAN side: as rewind audit (identity nearest neighbour among " + std::to_string(o.samples) +
                 " samples; threshold: " + r.gan_threshold.method + "). Split side: as rewind split-attack --attack white-box "
                 "(He et al. 2019), with the defences applied to the activations before the attacker sees them.");
  html.details("run options and build", io::dump_json(options_json, 2) + "\n" + build_string());
  html.write(out + "/report.html");
  return summary;
}

}  // namespace rw::audit
