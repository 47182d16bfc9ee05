#include "rewind/audit/audit.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"
#include "rewind/identity/calibration.h"
#include "rewind/mia/metrics.h"
#include "rewind/report/html.h"

namespace rw::audit {

namespace {

void check_options(const AuditOptions& o) {
  RW_CHECK(o.samples >= 1, Usage, "AuditOptions::samples must be >= 1, got ", o.samples);
  RW_CHECK(o.far > 0 && o.far < 1, Usage, "AuditOptions::far must be in (0, 1), got ", o.far);
  RW_CHECK(o.per_identity >= 1, Usage, "AuditOptions::per_identity must be >= 1, got ", o.per_identity);
  RW_CHECK(o.recover_control >= 0, Usage, "AuditOptions::recover_control must be >= 0, got ", o.recover_control);
  RW_CHECK(o.batch >= 1, Usage, "AuditOptions::batch must be >= 1, got ", o.batch);
  RW_CHECK(o.invert.restarts >= 1, Usage, "AuditOptions::invert.restarts must be >= 1, got ", o.invert.restarts);
  RW_CHECK(o.invert.loop.steps >= 1, Usage, "AuditOptions::invert.loop.steps must be >= 1, got ", o.invert.loop.steps);
}

/// Loaded rows grouped by identity, identities in first-appearance order; `pos` indexes `rows`.
struct Groups {
  std::vector<std::string> names;
  std::vector<std::vector<size_t>> pos;
  std::vector<int64_t> label;  ///< per loaded image: its identity's group number
};

Groups group_rows(const io::Manifest& m, const std::vector<size_t>& rows) {
  Groups g;
  g.label = io::identity_labels(m, rows);
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t k = size_t(g.label[i]);
    if (k == g.names.size()) {
      g.names.push_back(m.entries[rows[i]].identity);
      g.pos.emplace_back();
    }
    g.pos[k].push_back(i);
  }
  return g;
}

/// Identities that get latent recovery: the top ones by identity-nn and a seeded control draw.
std::vector<size_t> recovery_identities(const std::vector<IdentityEvidence>& ev, const AuditOptions& o) {
  const size_t n = ev.size();
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ev[a].nn_similarity > ev[b].nn_similarity; });
  const size_t top = o.recover_top < 0 ? n : std::min(n, size_t(o.recover_top));
  std::vector<size_t> chosen(order.begin(), order.begin() + long(top));
  std::vector<size_t> rest(order.begin() + long(top), order.end());
  std::sort(rest.begin(), rest.end());
  std::mt19937_64 rng(mix_seed(o.seed, 0xC0117801ull));
  std::shuffle(rest.begin(), rest.end(), rng);
  for (size_t k = 0; k < rest.size() && k < size_t(o.recover_control); ++k) chosen.push_back(rest[k]);
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

}  // namespace

Threshold verdict_threshold(const std::vector<double>* reference_best, const at::Tensor& emb,
                            const std::vector<int64_t>& labels, double far, int64_t samples) {
  Threshold t;
  if (reference_best && !reference_best->empty()) {
    t.reference_best = *reference_best;
    const int64_t n = int64_t(reference_best->size());
    t.value = identity::threshold_for_far(torch::tensor(*reference_best, torch::kFloat64), far);
    t.resolved = double(n) * far >= 1.0;
    t.method = "at most FAR " + report::fmt_g(far, 6) + " of " + std::to_string(n) +
               " reference identities (people not in the training set) have a generated sample above it" +
               (t.resolved ? "" : " (fewer than 1/FAR reference identities: the threshold is their maximum, so the real FAR is up to 1/" +
                                      std::to_string(n) + ")");
    return t;
  }
  int64_t n_ids = 0;
  for (int64_t l : labels) n_ids = std::max(n_ids, l + 1);
  const int64_t per_id = std::max<int64_t>(1, int64_t(labels.size()) / std::max<int64_t>(1, n_ids));
  const double per_pair = far / double(samples * per_id);
  auto c = identity::calibrate(emb, torch::tensor(labels, torch::kLong), {std::max(per_pair, 1e-12)});
  t.value = c.points[0].threshold;
  t.resolved = double(c.impostor_pairs) * per_pair >= 1.0;
  std::ostringstream pp;
  pp.precision(8);
  pp << std::fixed << per_pair;
  t.method = "pair threshold at FAR " + pp.str() + " per comparison (= FAR " + report::fmt_g(far, 6) + " / (" +
             std::to_string(samples) + " samples x images per identity)) from " + std::to_string(c.impostor_pairs) +
             " impostor pairs of the dataset's own identities" +
             (t.resolved ? "" : "; too few pairs to resolve it, so the threshold is their maximum (conservative)");
  return t;
}

AuditResult run(models::Generator& g, models::Embedder& e, const io::Manifest& dataset, const io::Manifest* reference,
                const AuditOptions& o, const ProgressFn& progress, io::RunRecord* record) {
  check_options(o);
  const auto shape = g.output_shape();
  nlohmann::json fp = {{"samples", o.samples}, {"seed", o.seed}, {"per_identity", o.per_identity},
                       {"recover_top", o.recover_top}, {"recover_control", o.recover_control}, {"batch", o.batch},
                       {"restarts", o.invert.restarts}, {"steps", o.invert.loop.steps}, {"lr", o.invert.loop.lr},
                       {"optimizer", o.invert.loop.optimizer}, {"generator", g.describe()}, {"embedder", e.id()},
                       {"dataset", manifest_hash(dataset)}, {"reference", reference ? manifest_hash(*reference) : ""}};
  StageCache cache(o.stage_dir, fp, o.resume);
  auto mark = [&](const char* stage) { if (record) record->mark(stage); };
  AuditResult res;
  res.generator = g.describe();
  res.embedder = e.describe();

  // 1. the owner's images, embedded
  Embedded ds;
  if (!load_embedded(cache, "dataset", &ds)) {
    ds = embed_manifest(e, dataset, shape, "embed dataset", progress, o.batch);
    save_embedded(cache, "dataset", ds);
  }
  record_skips(record, ds.skipped);
  res.skipped = ds.skipped;
  RW_CHECK(!ds.rows.empty(), Input, "no image of the dataset could be loaded",
           ds.skipped.empty() ? std::string() : " (first problem: " + ds.skipped.front().reason + ")");
  if (!ds.skipped.empty())
    log_warn(ds.skipped.size(), " dataset images skipped (listed in run.json); first: ", ds.skipped.front().reason);
  res.images = int64_t(ds.rows.size());
  auto groups = group_rows(dataset, ds.rows);
  log_info("auditing ", groups.names.size(), " identities (", res.images, " images) against ", g.describe());
  mark("embed dataset");

  // 2. samples and identity nearest neighbours
  at::Tensor sample_emb;
  std::unique_ptr<SampleBank> bank;
  if (cache.load("samples", &sample_emb)) bank = std::make_unique<SampleBank>(sample_emb.to(torch::kFloat32), o.seed);
  else {
    bank = std::make_unique<SampleBank>(g, e, o.samples, o.seed, progress);
    cache.save("samples", bank->embeddings());
  }
  std::vector<double> nn_sim;
  std::vector<int64_t> nn_sample;
  bank->nearest(ds.emb, &nn_sim, &nn_sample);
  mark("identity-nn");

  // 3. the verdict threshold
  std::vector<double> ref_best;
  if (reference) {
    Embedded ref;
    if (!load_embedded(cache, "reference", &ref)) {
      ref = embed_manifest(e, *reference, shape, "embed reference", progress, o.batch);
      save_embedded(cache, "reference", ref);
    }
    record_skips(record, ref.skipped);
    RW_CHECK(!ref.rows.empty(), Input, "no image of the reference set could be loaded",
             ref.skipped.empty() ? std::string() : " (first problem: " + ref.skipped.front().reason + ")");
    std::vector<double> rs;
    std::vector<int64_t> rsample;
    bank->nearest(ref.emb, &rs, &rsample);
    auto rg = group_rows(*reference, ref.rows);
    for (const auto& pos : rg.pos) {
      double b = -2;
      for (size_t i : pos) b = std::max(b, rs[i]);
      ref_best.push_back(b);
    }
  }
  res.threshold = verdict_threshold(reference ? &ref_best : nullptr, ds.emb, groups.label, o.far, o.samples);
  mark("threshold");

  // 4. per identity: identity-nn evidence
  for (size_t k = 0; k < groups.names.size(); ++k) {
    IdentityEvidence ev;
    ev.identity = groups.names[k];
    for (size_t i : groups.pos[k]) {
      if (nn_sim[i] > ev.nn_similarity) {
        ev.nn_similarity = nn_sim[i];
        ev.nn_row = ds.rows[i];
        ev.nn_sample = nn_sample[i];
      }
      ev.member = dataset.entries[ds.rows[i]].member;
    }
    ev.leaks = ev.nn_similarity > res.threshold.value;
    res.identities.push_back(ev);
  }

  // 5. latent recovery of the chosen identities' first images
  std::vector<size_t> inv_rows;
  std::map<size_t, size_t> owner;  // manifest row -> identity
  for (size_t k : recovery_identities(res.identities, o))
    for (size_t j = 0; j < groups.pos[k].size() && int64_t(j) < o.per_identity; ++j) {
      inv_rows.push_back(ds.rows[groups.pos[k][j]]);
      owner[inv_rows.back()] = k;
    }
  std::sort(inv_rows.begin(), inv_rows.end());
  res.recovery = recover_rows(g, dataset, inv_rows, o.invert, &e, progress, "invert", &cache);
  mark("invert");
  std::map<size_t, size_t> row_pos;  // manifest row -> position among loaded dataset images
  for (size_t i = 0; i < ds.rows.size(); ++i) row_pos[ds.rows[i]] = i;
  auto mse = to_vector(res.recovery.mse);
  const auto [med, mad] = robust_scale(mse);
  std::vector<double> msum(groups.names.size(), 0), ssum(groups.names.size(), 0);
  std::vector<int> cnt(groups.names.size(), 0);
  for (size_t j = 0; j < res.recovery.rows.size(); ++j) {
    const size_t row = res.recovery.rows[j], k = owner.at(row);
    auto& ev = res.identities[k];
    if (!ev.recovered_row) {
      ev.recovered_row = row;
      ev.recovered_index = int64_t(j);
    }
    msum[k] += mse[j];
    ssum[k] += (ds.emb[int64_t(row_pos.at(row))] * res.recovery.recon_emb[int64_t(j)]).sum().item<double>();
    ++cnt[k];
  }
  for (size_t k = 0; k < groups.names.size(); ++k)
    if (cnt[k]) {
      auto& ev = res.identities[k];
      ev.recovery_error = msum[k] / cnt[k];
      ev.recon_similarity = ssum[k] / cnt[k];
      ev.recovery_z = (med - *ev.recovery_error) / mad;
      ++res.recovered_identities;
    }

  // 6. ranking and ground truth
  std::sort(res.identities.begin(), res.identities.end(), [](const IdentityEvidence& a, const IdentityEvidence& b) {
    if (a.leaks != b.leaks) return a.leaks;
    return a.nn_similarity > b.nn_similarity;
  });
  GroundTruth t;
  std::vector<double> s_nn, s_rec;
  std::vector<int> lab, lab_rec;
  for (const auto& ev : res.identities) {
    res.leaking += ev.leaks;
    if (ev.member < 0) continue;
    (ev.member ? t.members : t.nonmembers) += 1;
    t.members_flagged += ev.member && ev.leaks;
    t.nonmembers_flagged += !ev.member && ev.leaks;
    s_nn.push_back(ev.nn_similarity);
    lab.push_back(ev.member);
    if (ev.recovery_z) {
      s_rec.push_back(*ev.recovery_z);
      lab_rec.push_back(ev.member);
    }
  }
  if (t.members > 0 && t.nonmembers > 0) {
    t.auc_identity_nn = mia::roc_auc(s_nn, lab);
    t.auc_recovery = mia::roc_auc(s_rec, lab_rec);
    t.recovery_identities = int64_t(s_rec.size());
    res.truth = t;
  }
  return res;
}

}  // namespace rw::audit
