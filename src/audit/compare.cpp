#include "rewind/audit/compare.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <map>
#include <sstream>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/io/csv.h"
#include "rewind/mia/metrics.h"
#include "rewind/report/html.h"

namespace rw::audit {

namespace {

at::Tensor embed_chunked(models::Embedder& e, const at::Tensor& x, int64_t batch) {
  torch::NoGradGuard ng;
  std::vector<at::Tensor> out;
  for (int64_t s = 0; s < x.size(0); s += batch) out.push_back(e.embed(x.slice(0, s, std::min(x.size(0), s + batch))));
  return out.empty() ? torch::empty({0, e.dim()}) : torch::cat(out);
}

/// Accuracy set: images of identities the classifier has a class for, with their class index.
struct AccuracySet {
  at::Tensor images, labels;
};

AccuracySet accuracy_set(const io::Manifest& m, const std::vector<size_t>& rows, const std::vector<std::string>& classes,
                         const models::ImageShape& shape, const std::string& crop) {
  AccuracySet a;
  std::vector<size_t> keep;
  std::vector<int64_t> y;
  for (size_t r : rows) {
    auto it = std::find(classes.begin(), classes.end(), m.entries[r].identity);
    if (it == classes.end()) continue;
    keep.push_back(r);
    y.push_back(it - classes.begin());
  }
  if (keep.empty()) return a;
  data::ImageStream s(m, keep, pipeline_loader(shape, crop));
  auto all = data::load_all(s, "the accuracy images");
  std::map<size_t, int64_t> cls;
  for (size_t i = 0; i < keep.size(); ++i) cls[keep[i]] = y[i];
  std::vector<int64_t> yl;
  for (size_t r : all.rows) yl.push_back(cls[r]);
  a.images = all.images;
  a.labels = torch::tensor(yl, torch::kLong);
  return a;
}

nlohmann::json compare_fingerprint(const models::Generator& g, const models::Embedder& e, const models::SplitClassifier& c,
                                   const io::Manifest& dataset, const io::Manifest* reference,
                                   const std::vector<std::string>& class_names, const CompareOptions& o) {
  return {{"splits", o.splits}, {"defenses", o.defenses}, {"samples", o.samples}, {"crop", o.crop},
          {"wb_steps", o.wb_steps}, {"pictures", o.pictures}, {"embed_batch", o.embed_batch}, {"seed", o.seed},
          {"recovery", recovery_fingerprint(o.invert)}, {"generator", g.id()}, {"embedder", e.id()},
          {"classifier", c.id()}, {"classes", class_names}, {"dataset", manifest_hash(dataset)},
          {"reference", reference ? manifest_hash(*reference) : ""}};
}

/// A finished split x defence cell, kept as the pieces its verdicts are computed from (the
/// thresholds and exposures are recomputed from `sim`, so --far may differ on resume).
struct CellStage {
  at::Tensor psnr, ssim, sim, recon_shown;
  double accuracy = -1;
};

bool load_cell(const StageCache& c, const std::string& name, CellStage* out) {
  nlohmann::json meta;
  if (!c.load_json(name, &meta) || !c.load(name + "-psnr", &out->psnr) || !c.load(name + "-ssim", &out->ssim) ||
      !c.load(name + "-sim", &out->sim))
    return false;
  if (meta.value("shown", false) && !c.load(name + "-recon", &out->recon_shown)) return false;
  out->psnr = out->psnr.to(torch::kFloat32), out->ssim = out->ssim.to(torch::kFloat32), out->sim = out->sim.to(torch::kFloat32);
  if (out->recon_shown.defined()) out->recon_shown = out->recon_shown.to(torch::kFloat32);
  out->accuracy = meta.value("accuracy", -1.0);
  return true;
}

void save_cell(const StageCache& c, const std::string& name, const CellStage& s) {
  c.save(name + "-psnr", s.psnr);
  c.save(name + "-ssim", s.ssim);
  c.save(name + "-sim", s.sim);
  if (s.recon_shown.defined()) c.save(name + "-recon", s.recon_shown);
  c.save_json(name, {{"accuracy", s.accuracy}, {"shown", s.recon_shown.defined()}});  // last: marks it complete
}

}  // namespace

CompareResult run_compare(models::Generator& g, models::Embedder& e, models::SplitClassifier& c, const io::Manifest& dataset,
                          const io::Manifest* reference, const std::vector<std::string>& class_names,
                          const CompareOptions& o, const ProgressFn& progress, io::RunRecord* record) {
  RW_CHECK(o.far > 0 && o.far < 1, Usage, "CompareOptions::far must be in (0, 1), got ", o.far);
  RW_CHECK(o.samples >= 1, Usage, "CompareOptions::samples must be >= 1, got ", o.samples);
  RW_CHECK(o.wb_steps >= 1, Usage, "CompareOptions::wb_steps must be >= 1, got ", o.wb_steps);
  ganinv::check_options(g, o.invert, false);
  std::vector<std::string> splits = o.splits == "all" ? c.split_points() : io::split_list(o.splits);
  RW_CHECK(!splits.empty(), Usage, "CompareOptions::splits is empty");
  for (const auto& sp : splits) models::check_split(c, sp);
  std::vector<featinv::Defense> defs;
  for (const auto& t : io::split_list(o.defenses)) defs.push_back(featinv::Defense::parse(t));
  RW_CHECK(!defs.empty(), Usage, "CompareOptions::defenses is empty (use none)");
  const auto shape = g.output_shape();
  auto mark = [&](const char* s) { if (record) record->mark(s); };
  StageCache cache(o.stage_dir, compare_fingerprint(g, e, c, dataset, reference, class_names, o), o.resume);
  cache.guard_files({{"dataset", &dataset}, {"reference", reference}});
  CompareResult res;

  // ---- output side: the GAN (as the audit)
  const Embedded ds = kept_embedded(
      cache, "dataset", [&] { return embed_manifest(e, dataset, shape, "embed dataset", progress, o.embed_batch, {}, o.crop); });
  record_skips(record, ds.skipped);
  res.skipped = ds.skipped;
  RW_CHECK(!ds.rows.empty(), Input, "no image of the dataset could be loaded",
           ds.skipped.empty() ? std::string() : " (first problem: " + ds.skipped.front().reason + ")");
  const auto bank_kept = kept_sample_bank(cache, g, e, o.samples, o.seed, progress);
  const SampleBank& bank = *bank_kept;
  std::vector<double> nn_sim;
  std::vector<int64_t> nn_sample;
  bank.nearest(ds.emb, &nn_sim, &nn_sample);
  auto labels = io::identity_labels(dataset, ds.rows);
  std::vector<double> ref_scores;
  if (reference) {
    const Embedded ref = kept_embedded(
        cache, "reference", [&] { return embed_manifest(e, *reference, shape, "embed reference", progress, o.embed_batch, {}, o.crop); });
    record_skips(record, ref.skipped);
    std::vector<int64_t> rsample;
    bank.nearest(ref.emb, &ref_scores, &rsample);
  }
  res.gan_threshold = verdict_threshold(reference ? &ref_scores : nullptr, ds.emb, labels, o.far, o.samples,
                                        int64_t(ds.rows.size()));
  std::vector<size_t> photo_pos;  // position (among loaded images) of each identity's photo
  for (size_t i = 0; i < ds.rows.size(); ++i) {
    const size_t k = size_t(labels[i]);
    if (k == res.identities.size()) {
      CompareIdentity id;
      id.identity = dataset.entries[ds.rows[i]].identity;
      id.member = dataset.entries[ds.rows[i]].member;
      id.photo_row = ds.rows[i];
      res.identities.push_back(id);
      photo_pos.push_back(i);
    }
    auto& id = res.identities[k];
    if (nn_sim[i] > id.nn_similarity) id.nn_similarity = nn_sim[i], id.nn_row = ds.rows[i], id.nn_sample = nn_sample[i];
  }
  std::vector<size_t> photo_rows;
  for (const auto& id : res.identities) photo_rows.push_back(id.photo_row);
  res.recovery = recover_rows(g, dataset, photo_rows, o.invert, nullptr, progress, "invert", &cache, 0, {}, o.crop);
  RW_CHECK(res.recovery.rows == photo_rows, Input, "a photo could not be reloaded for latent recovery (",
           res.recovery.skipped.empty() ? std::string("changed on disk") : res.recovery.skipped.front().reason, ")");
  // the GAN side's probes: each person's closest sample, matched against all the people's photos
  std::vector<int64_t> photo_ix(photo_pos.begin(), photo_pos.end()), probe_ix;
  auto x_emb = ds.emb.index_select(0, torch::tensor(photo_ix, torch::kLong));
  for (const auto& id : res.identities) probe_ix.push_back(std::max<int64_t>(0, id.nn_sample));
  res.gan_exposure = exposure(bank.embeddings().index_select(0, torch::tensor(probe_ix, torch::kLong)), x_emb,
                              res.gan_threshold.value);
  for (size_t k = 0; k < res.identities.size(); ++k) {
    auto& id = res.identities[k];
    id.recovery_mse = res.recovery.mse[int64_t(k)].item<double>();
    id.gan_verdict = !res.gan_exposure.exposed[k]     ? Verdict::kNoEvidence
                     : res.gan_threshold.resolved ? Verdict::kLeaks
                                                  : Verdict::kInconclusive;
    id.gan_leaks = id.gan_verdict == Verdict::kLeaks;
    res.gan_leaking += id.gan_leaks;
    res.members += id.member == 1;
    res.members_leaking += id.gan_leaks && id.member == 1;
  }
  // the people pictured: the GAN's most exposed, known now, so each split cell keeps just their rebuilds
  res.shown.resize(res.identities.size());
  std::iota(res.shown.begin(), res.shown.end(), size_t(0));
  auto rank = [](Verdict v) { return v == Verdict::kLeaks ? 0 : v == Verdict::kInconclusive ? 1 : 2; };
  std::stable_sort(res.shown.begin(), res.shown.end(), [&](size_t a, size_t b) {
    const auto &x = res.identities[a], &y = res.identities[b];
    if (rank(x.gan_verdict) != rank(y.gan_verdict)) return rank(x.gan_verdict) < rank(y.gan_verdict);
    return x.nn_similarity > y.nn_similarity;
  });
  res.shown.resize(std::min(res.shown.size(), size_t(std::max<int64_t>(0, o.pictures))));
  std::vector<int64_t> shown_ix(res.shown.begin(), res.shown.end());
  mark("gan side");

  // ---- input side: the split classifier, on the same photos
  res.split_threshold = verdict_threshold(nullptr, ds.emb, labels, o.far, 1, int64_t(res.identities.size()));
  // the photos, the accuracy set and the activations are loaded only for cells not kept already
  at::Tensor cx;
  AccuracySet acc;
  bool loaded = false;
  auto load_photos = [&] {
    if (loaded) return;
    data::ImageStream ps(dataset, photo_rows, pipeline_loader(shape, o.crop));
    cx = featinv::to_shape(data::load_all(ps, "the photos").images, c.input_shape());
    acc = accuracy_set(dataset, ds.rows, class_names, shape, o.crop);
    loaded = true;
  };
  featinv::WhiteBoxOptions wo;
  wo.loop.steps = o.wb_steps;
  wo.seed = o.seed;
  int64_t cell_no = 0;
  for (const auto& sp : splits) {
    at::Tensor acts;
    for (const auto& d : defs) {
      SplitCell cell;
      cell.split = sp;
      cell.defense = d.str();
      const std::string stage = "cell-" + std::to_string(cell_no++);
      CellStage kept;
      if (!load_cell(cache, stage, &kept)) {
        load_photos();
        if (!acts.defined()) acts = featinv::activations(c, sp, cx);
        auto a = featinv::defend(acts, d, o.seed);
        auto r = featinv::white_box(c, sp, a, wo, staged(progress, "white-box " + sp + " " + d.str()));
        auto q = featinv::quality(cx, r.recon);
        kept.psnr = q.psnr;
        kept.ssim = q.ssim;
        auto recon = featinv::to_shape(r.recon, shape);
        // sim[i][j]: rebuild i against photo j. The rebuild-specific null is the off-diagonal: rebuilds against
        // OTHER people's photos (a rebuild that shows no one is exchangeable with those); the cell's threshold
        // must be certified by it and by real impostors
        kept.sim = torch::mm(embed_chunked(e, recon, 128), x_emb.t());
        if (d.kind == "none") kept.recon_shown = recon.index_select(0, torch::tensor(shown_ix, torch::kLong));
        if (acc.images.defined())
          kept.accuracy = featinv::accuracy_through_split(c, sp, featinv::to_shape(acc.images, c.input_shape()), acc.labels, d, o.seed);
        save_cell(cache, stage, kept);
      }
      cell.psnr = kept.psnr;
      cell.ssim = kept.ssim;
      cell.recon_shown = kept.recon_shown;
      cell.accuracy = kept.accuracy;
      const auto& sim = kept.sim;
      cell.cos = sim.diagonal().clone();
      auto off = sim.masked_select(~torch::eye(sim.size(0), torch::kBool));
      cell.threshold = res.split_threshold;
      if (off.numel() > 0) {
        const auto c = certified_threshold(off, res.split_threshold.per_test);
        cell.threshold.resolved = cell.threshold.resolved && c.resolved;
        if (c.value > cell.threshold.value) cell.threshold.value = c.value;
        if (!c.resolved)
          cell.threshold.reason = std::to_string(off.numel()) + " rebuild x other-photo pairs cannot certify FAR " +
                                  report::fmt_g(res.split_threshold.per_test, 3) + " per photo; it needs " +
                                  std::to_string(mia::null_scores_needed(res.split_threshold.per_test)) + " (more people)";
      } else {
        cell.threshold.resolved = false;
        cell.threshold.reason = "one person: no other photos to certify against";
      }
      cell.exposure = exposure_of(sim, cell.threshold.value);
      cell.exposed = cell.exposure.n_exposed;
      cell.control = cell.exposure.n_control;
      cell.control_impostor = exposure_of(sim, res.split_threshold.value).n_control;
      res.cells.push_back(std::move(cell));
    }
  }
  mark("split side");
  return res;
}

}  // namespace rw::audit
