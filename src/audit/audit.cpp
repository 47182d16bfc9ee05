#include "rewind/audit/audit.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <filesystem>
#include <random>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"
#include "rewind/io/atomic_file.h"
#include "rewind/identity/calibration.h"
#include "rewind/mia/metrics.h"
#include "rewind/report/html.h"

namespace rw::audit {


namespace {

void check_options(const AuditOptions& o) {
  RW_CHECK(o.samples >= 1, Usage, "--samples must be >= 1 (AuditOptions::samples), got ", o.samples);
  RW_CHECK(o.far > 0 && o.far < 1, Usage, "--far must be in (0, 1) (AuditOptions::far), got ", o.far);
  RW_CHECK(o.fit_max_auc > 0.5 && o.fit_max_auc <= 1, Usage, "AuditOptions::fit_max_auc must be in (0.5, 1], got ", o.fit_max_auc);
  RW_CHECK(o.per_identity >= 1, Usage, "--per-identity must be >= 1 (AuditOptions::per_identity), got ", o.per_identity);
  RW_CHECK(o.recover_control >= 0, Usage, "--recover-control must be >= 0 (AuditOptions::recover_control), got ", o.recover_control);
  RW_CHECK(o.embed_batch >= 1, Usage, "--embed-batch must be >= 1 (AuditOptions::embed_batch), got ", o.embed_batch);
  RW_CHECK(o.top >= 0, Usage, "--top must be >= 0 (AuditOptions::top), got ", o.top);
  RW_CHECK(o.invert.restarts >= 1, Usage, "--restarts must be >= 1 (AuditOptions::invert.restarts), got ", o.invert.restarts);
  RW_CHECK(o.invert.loop.steps >= 1, Usage, "--steps must be >= 1 (AuditOptions::invert.loop.steps), got ", o.invert.loop.steps);
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

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kLeaks: return "leaks";
    case Verdict::kInconclusive: return "inconclusive";
    default: return "no-evidence";
  }
}

Verdict verdict_for(double similarity, const Threshold& t) {
  if (!(similarity > t.value)) return Verdict::kNoEvidence;
  return t.resolved ? Verdict::kLeaks : Verdict::kInconclusive;
}

Certified certified_threshold(const at::Tensor& null, double per_test) {
  Certified c;
  const int64_t n = null.numel();
  RW_CHECK(n > 0, Internal, "certified_threshold: empty null");
  c.k = mia::max_exceedances(n, per_test);
  c.resolved = c.k >= 0;
  c.value = identity::threshold_for_far(null.reshape({-1}).to(torch::kFloat64),
                                        (double(std::max<int64_t>(c.k, 0)) + 0.5) / double(n));
  return c;
}

Threshold verdict_threshold(const std::vector<double>* reference_scores, const at::Tensor& emb,
                            const std::vector<int64_t>& labels, double far, int64_t samples, int64_t tests) {
  RW_CHECK(far > 0 && far < 1, Usage, "the verdict's FAR must be in (0, 1), got ", far);
  RW_CHECK(samples >= 1 && tests >= 1, Usage, "verdict_threshold: samples and tests must be >= 1");
  Threshold t;
  t.far = far;
  t.tests = tests;
  const bool ref = reference_scores && !reference_scores->empty();
  t.per_test = ref ? far / double(tests) : far / (double(tests) * double(samples));
  t.null_needed = mia::null_scores_needed(t.per_test);
  const std::string fw = "family-wise FAR " + report::fmt_g(far, 3) + " (the chance that any of the " +
                         std::to_string(tests) + " images tested is wrongly matched)";
  if (ref) {
    t.reference_scores = *reference_scores;
    t.null_scores = int64_t(reference_scores->size());
    const auto c = certified_threshold(torch::tensor(*reference_scores, torch::kFloat64), t.per_test);
    const int64_t k = c.k;
    t.resolved = c.resolved;
    t.value = c.value;  // at most k of the references above it (their maximum when unresolved)
    t.method = fw + ": each image is held to FAR " + report::fmt_g(t.per_test, 3) + ", certified (95%) by " +
               std::to_string(t.null_scores) + " reference images (people not in the training set): at most " +
               std::to_string(std::max<int64_t>(k, 0)) + " of them have a generated sample above it";
    if (!t.resolved)
      t.reason = std::to_string(t.null_scores) + " reference images cannot certify FAR " + report::fmt_g(t.per_test, 3) +
                 " per image (" + report::fmt_g(far, 3) + " / " + std::to_string(tests) + " images); it needs at least " +
                 std::to_string(t.null_needed) + ": add strangers' images to --reference (same domain), or raise --far";
    return t;
  }
  // the dataset's own impostor pairs: one comparison of an image with another person's. First
  // their maximum and count; a second pass only when the count certifies some exceedances.
  const auto lab = torch::tensor(labels, torch::kLong);
  auto c = identity::calibrate(emb, lab, {1e-12});
  t.null_scores = c.impostor_pairs;
  const int64_t k = mia::max_exceedances(t.null_scores, t.per_test);
  t.resolved = k >= 0;
  if (k > 0) c = identity::calibrate(emb, lab, {(double(k) + 0.5) / double(t.null_scores)});
  t.value = c.points[0].threshold;
  t.method = fw + ": each image-sample comparison is held to FAR " + report::fmt_g(t.per_test, 3) + " (" +
             report::fmt_g(far, 3) + " / (" + std::to_string(tests) + " images x " + std::to_string(samples) +
             " samples)), from " + std::to_string(t.null_scores) + " impostor pairs of the dataset's own identities";
  if (!t.resolved)
    t.reason = std::to_string(t.null_scores) + " impostor pairs cannot certify FAR " + report::fmt_g(t.per_test, 3) +
               " per comparison; it needs at least " + std::to_string(t.null_needed) +
               ". Give --reference with at least " + std::to_string(mia::null_scores_needed(far / double(tests))) +
               " images of people certainly not in the training set (same domain), or raise --far";
  return t;
}

namespace {

/// Everything up to the latent recovery: the embedded stages, identity-nn, the threshold, the
/// per-identity evidence, and the rows chosen for recovery (the same in every shard).
struct Prepared {
  AuditResult res;
  Embedded ds;
  Groups groups;
  std::vector<size_t> inv_rows;      ///< ascending manifest rows
  std::map<size_t, size_t> owner;    ///< manifest row -> identity
  std::vector<double> own_disc;      ///< the dataset images' discriminator logits, as ds.rows (with both)
  std::vector<double> ref_disc;      ///< the reference images' non-NaN discriminator logits, ascending (with both)
};

Prepared prepare(models::Generator& g, models::Embedder& e, const io::Manifest& dataset, const io::Manifest* reference,
                 const AuditOptions& o, const StageCache& cache, const ProgressFn& progress, io::RunRecord* record) {
  const auto shape = g.output_shape();
  auto mark = [&](const char* stage) { if (record) record->mark(stage); };
  Prepared pr;
  AuditResult& res = pr.res;
  Embedded& ds = pr.ds;
  res.generator = g.describe();
  res.embedder = e.describe();

  // 0. a reference that holds the owner's own images (a path mistake) would make every test say "not used"
  if (reference) {
    std::set<std::string> own_paths, own_ids;
    for (size_t i = 0; i < dataset.entries.size(); ++i) {
      own_paths.insert(std::filesystem::path(dataset.resolve(i)).lexically_normal().string());
      own_ids.insert(dataset.entries[i].identity);
    }
    int64_t same_ids = 0;
    std::set<std::string> seen_ids;
    for (size_t i = 0; i < reference->entries.size(); ++i) {
      const std::string path = std::filesystem::path(reference->resolve(i)).lexically_normal().string();
      RW_CHECK(!own_paths.count(path), Usage, "the reference holds your own image ", path,
               ": --reference must be images of people certainly not in the training set, and not yours");
      const auto& id = reference->entries[i].identity;
      same_ids += own_ids.count(id) && seen_ids.insert(id).second;
    }
    if (same_ids > 0)
      log_warn(same_ids, " identities of the reference have the same names as yours (first: ", *seen_ids.begin(),
               "): if they are the same people, the reference is not a set of strangers and the tests lose their meaning");
  }

  // 1. the owner's images, embedded
  ds = kept_embedded(cache, "dataset", [&] {
    return embed_manifest(e, dataset, shape, "embed dataset", progress, o.embed_batch, {}, o.crop, o.discriminator.get());
  });
  record_skips(record, ds.skipped);
  res.skipped = ds.skipped;
  RW_CHECK(!ds.rows.empty(), Input, "no image of the dataset could be loaded",
           ds.skipped.empty() ? std::string() : " (first problem: " + ds.skipped.front().reason + ")");
  if (!ds.skipped.empty())
    log_warn(ds.skipped.size(), " dataset images skipped (listed in run.json); first: ", ds.skipped.front().reason);
  res.images = int64_t(ds.rows.size());
  pr.groups = group_rows(dataset, ds.rows);
  const Groups& groups = pr.groups;
  log_info("auditing ", groups.names.size(), " identities (", res.images, " images) against ", g.describe());
  mark("embed dataset");

  // 2. samples and identity nearest neighbours
  auto bank = kept_sample_bank(cache, g, e, o.samples, o.seed, progress);
  std::vector<double> nn_sim;
  std::vector<int64_t> nn_sample;
  bank->nearest(ds.emb, &nn_sim, &nn_sample);
  mark("identity-nn");
  res.fit = domain_fit(bank->embeddings(), ds.emb, o.seed);
  res.domain_mismatch = res.fit.probe.ran && res.fit.probe.m.auc.lo > o.fit_max_auc;
  if (res.domain_mismatch)
    log_warn("the generator's samples and your images do not look like one domain to the embedder (probe AUC ",
             res.fit.probe.m.auc.value, "): every verdict is inconclusive");

  // 3. the verdict threshold
  std::vector<double> ref_scores;
  if (reference) {
    const Embedded ref = kept_embedded(cache, "reference", [&] {
      return embed_manifest(e, *reference, shape, "embed reference", progress, o.embed_batch, {}, o.crop,
                            o.discriminator.get());
    });
    record_skips(record, ref.skipped);
    RW_CHECK(!ref.rows.empty(), Input, "no image of the reference set could be loaded",
             ref.skipped.empty() ? std::string() : " (first problem: " + ref.skipped.front().reason + ")");
    std::vector<int64_t> rsample;
    bank->nearest(ref.emb, &ref_scores, &rsample);
    // 3b. the dataset-level test: one score per identity on each side (its first image), so that
    // identities with many images do not weigh more and the scores stay independent
    std::vector<double> own, strangers;
    for (const auto& pos : groups.pos) own.push_back(nn_sim[pos.front()]);
    const Groups ref_groups = group_rows(*reference, ref.rows);
    for (const auto& pos : ref_groups.pos) strangers.push_back(ref_scores[pos.front()]);
    res.set_test = mia::set_test(own, strangers);
    // without identity labels each image is its own "identity": repeated photos of a person would be
    // counted as independent people, and the p-value would come out too small
    const bool flat_own = groups.names.size() == ds.rows.size() && ds.rows.size() > 1;
    const bool flat_ref = ref_groups.names.size() == ref.rows.size() && ref.rows.size() > 1;
    if ((flat_own || flat_ref) && res.set_test.ran) {
      const std::string own_n = "your " + std::to_string(ds.rows.size()) + " images",
                        ref_n = "the reference's " + std::to_string(ref.rows.size()) + " images";
      res.set_test_caveat = "Each of " + (flat_own && flat_ref ? own_n + " and of " + ref_n : flat_own ? own_n : ref_n) +
                            " has its own identity label, as a folder without one subfolder per person imports: "
                            "if a person has several photos there, they count as several people and the p-value is too "
                            "small. Import one folder per person (rewind data import --layout folder) to be sure.";
      log_warn(res.set_test_caveat);
    }
    if (!res.set_test.ran)
      res.set_test.reason = "n/a: needs >= 20 of your identities and >= 20 reference identities (has " +
                            std::to_string(res.set_test.owner) + " and " + std::to_string(res.set_test.reference) + ")";
    if (res.domain_mismatch && res.set_test.ran) {
      res.set_test.ran = false;
      res.set_test.reason = "inconclusive: the generator's samples and your images are not one domain to the embedder";
    }
    if (o.discriminator) {  // the same test on the discriminator's logits, one per identity (its first image)
      RW_CHECK(ds.disc.defined() && ref.disc.defined(), Input, "audit: the kept embeddings in ", o.stage_dir,
               " have no discriminator scores; remove the folder and run again");
      check_discriminator_logits(ds.disc, "images of yours");
      check_discriminator_logits(ref.disc, "reference images");
      pr.own_disc = to_vector(ds.disc);
      const auto all_ref = to_vector(ref.disc);
      std::vector<double> own_d, ref_d;
      for (const auto& pos : groups.pos) own_d.push_back(pr.own_disc[pos.front()]);
      for (const auto& pos : ref_groups.pos) ref_d.push_back(all_ref[pos.front()]);
      res.disc_test = mia::set_test(own_d, ref_d);  // NaN logits are dropped there
      if (!res.disc_test.ran)
        res.disc_test.reason = "n/a: needs >= 20 of your identities and >= 20 reference identities with a finite "
                               "discriminator logit (has " + std::to_string(res.disc_test.owner) + " and " +
                               std::to_string(res.disc_test.reference) + ")";
      for (double v : all_ref)
        if (!std::isnan(v)) pr.ref_disc.push_back(v);
      std::sort(pr.ref_disc.begin(), pr.ref_disc.end());
      if (res.set_test.ran && res.disc_test.ran) res.combined_pvalue = mia::combine_pvalues({res.set_test.pvalue, res.disc_test.pvalue});
    }
  } else {
    res.set_test.owner = int64_t(groups.names.size());
    res.set_test.reason = "n/a: needs --reference (images of people certainly not in the training set)";
  }
  if (!o.discriminator) res.disc_test.reason = "not run: no --discriminator (the GAN's discriminator, when it is released)";
  else if (!reference) res.disc_test.reason = res.set_test.reason;
  res.threshold = verdict_threshold(reference ? &ref_scores : nullptr, ds.emb, groups.label, o.far, o.samples, res.images);
  if (!res.threshold.resolved) log_warn("verdicts inconclusive: ", res.threshold.reason);
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
    if (!pr.ref_disc.empty()) {
      double best = NAN;
      for (size_t i : groups.pos[k]) {
        const double v = pr.own_disc[i];
        if (!std::isnan(v) && !(v <= best)) best = v;
      }
      // ties count half, as in the AUC: a discriminator that scores everything alike gives 0.5, not 0
      const auto lo = std::lower_bound(pr.ref_disc.begin(), pr.ref_disc.end(), best);
      const auto hi = std::upper_bound(pr.ref_disc.begin(), pr.ref_disc.end(), best);
      if (!std::isnan(best))
        ev.disc_percentile = (double(lo - pr.ref_disc.begin()) + 0.5 * double(hi - lo)) / double(pr.ref_disc.size());
    }
    ev.verdict = verdict_for(ev.nn_similarity, res.threshold);
    if (res.domain_mismatch && ev.verdict == Verdict::kLeaks) ev.verdict = Verdict::kInconclusive;
    ev.leaks = ev.verdict == Verdict::kLeaks;
    res.identities.push_back(ev);
  }

  // 5. latent recovery of the chosen identities' first images
  auto& inv_rows = pr.inv_rows;
  auto& owner = pr.owner;
  for (size_t k : recovery_identities(res.identities, o))
    for (size_t j = 0; j < groups.pos[k].size() && int64_t(j) < o.per_identity; ++j) {
      inv_rows.push_back(ds.rows[groups.pos[k][j]]);
      owner[inv_rows.back()] = k;
    }
  std::sort(inv_rows.begin(), inv_rows.end());
  return pr;
}

}  // namespace

nlohmann::json audit_fingerprint(const models::Generator& g, const models::Embedder& e, const io::Manifest& dataset,
                                 const io::Manifest* reference, const AuditOptions& o) {
  return {{"samples", o.samples}, {"seed", o.seed}, {"per_identity", o.per_identity},
          {"recover_top", o.recover_top}, {"recover_control", o.recover_control}, {"embed_batch", o.embed_batch},
          {"recovery", recovery_fingerprint(o.invert)}, {"crop", o.crop}, {"generator", g.id()}, {"embedder", e.id()},
          {"dataset", manifest_hash(dataset)}, {"reference", reference ? manifest_hash(*reference) : ""},
          {"discriminator", o.discriminator ? o.discriminator->id() : ""}};
}

AuditResult run(models::Generator& g, models::Embedder& e, const io::Manifest& dataset, const io::Manifest* reference,
                const AuditOptions& o, const ProgressFn& progress, io::RunRecord* record) {
  check_options(o);
  ganinv::check_options(g, o.invert, true);
  StageCache cache(o.stage_dir, audit_fingerprint(g, e, dataset, reference, o), o.resume);
  cache.guard_files({{"dataset", &dataset}, {"reference", reference}});
  auto mark = [&](const char* stage) { if (record) record->mark(stage); };
  Prepared pr = prepare(g, e, dataset, reference, o, cache, progress, record);
  AuditResult& res = pr.res;
  const Embedded& ds = pr.ds;
  const Groups& groups = pr.groups;
  const auto& inv_rows = pr.inv_rows;
  const auto& owner = pr.owner;
  res.recovery = recover_rows(g, dataset, inv_rows, o.invert, &e, progress, "invert", &cache, 0, {}, o.crop);
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
    if (a.verdict != b.verdict) return a.verdict > b.verdict;
    return a.nn_similarity > b.nn_similarity;
  });
  GroundTruth t;
  std::vector<double> s_nn, s_rec;
  std::vector<int> lab, lab_rec;
  for (const auto& ev : res.identities) {
    res.leaking += ev.leaks;
    res.inconclusive += ev.verdict == Verdict::kInconclusive;
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
    t.identity_nn = mia::evaluate(s_nn, lab, mia::default_fprs(), 1000, o.seed);
    t.auc_identity_nn = t.identity_nn.auc.value;
    t.auc_recovery = mia::roc_auc(s_rec, lab_rec);
    const auto members_rec = std::count(lab_rec.begin(), lab_rec.end(), 1);
    if (members_rec > 0 && members_rec < int64_t(lab_rec.size()))
      t.recovery = mia::evaluate(s_rec, lab_rec, mia::default_fprs(), 1000, o.seed);
    t.recovery_identities = int64_t(s_rec.size());
    res.truth = t;
  }
  return res;
}


// ------------------------------------------------------------------------------------------------
// sharded audits

namespace {

}  // namespace

int64_t audit_next_round(const std::string& stage_dir) { return next_round(stage_dir, 2); }

int64_t run_shard(models::Generator& g, models::Embedder& e, const io::Manifest& dataset, const io::Manifest* reference,
                  const AuditOptions& o, const data::Shard& shard, const std::string& part_stage_dir,
                  const ProgressFn& progress, io::RunRecord* record) {
  check_options(o);
  ganinv::check_options(g, o.invert, true);
  RW_CHECK(!shard.whole(), Internal, "run_shard needs a shard of more than one");
  const auto fp = audit_fingerprint(g, e, dataset, reference, o);
  const int64_t round = audit_next_round(o.stage_dir);
  RW_CHECK(round > 0, Usage, "every round of this sharded audit is merged already: run it with --merge to write the report");
  StageCache part(part_stage_dir, part_fingerprint(fp, shard, round), o.resume);
  part.guard_files({{"dataset", &dataset}, {"reference", reference}});
  const auto shape = g.output_shape();
  if (round == 1) {
    const Embedded ds = kept_embedded(part, "dataset", [&] {
      return embed_manifest(e, dataset, shape, "embed dataset", progress, o.embed_batch, shard, o.crop, o.discriminator.get());
    });
    record_skips(record, ds.skipped);
    if (reference) {
      const Embedded ref = kept_embedded(part, "reference", [&] {
        return embed_manifest(e, *reference, shape, "embed reference", progress, o.embed_batch, shard, o.crop,
                              o.discriminator.get());
      });
      record_skips(record, ref.skipped);
    }
    at::Tensor s;
    if (!part.load("samples", &s)) part.save("samples", SampleBank(g, e, o.samples, o.seed, progress, kSampleBatch, shard).embeddings());
  } else {
    StageCache merged(o.stage_dir, fp, true, kShardedRunAdvice);
    Prepared pr = prepare(g, e, dataset, reference, o, merged, progress, nullptr);
    auto rec = recover_rows(g, dataset, pr.inv_rows, o.invert, &e, progress, "invert", &part, 0, shard, o.crop);
    record_skips(record, rec.skipped);
  }
  part.save_json("done", {{"round", round}, {"shard", shard.str()}});
  return round;
}

int64_t merge_shards(models::Generator& g, models::Embedder& e, const io::Manifest& dataset, const io::Manifest* reference,
                     const AuditOptions& o, const std::vector<std::string>& part_stage_dirs, const ProgressFn& progress) {
  check_options(o);
  ganinv::check_options(g, o.invert, true);
  const auto fp = audit_fingerprint(g, e, dataset, reference, o);
  const int64_t round = audit_next_round(o.stage_dir), n = int64_t(part_stage_dirs.size());
  RW_CHECK(round > 0, Usage, "every round of this sharded audit is merged already");
  const auto parts = open_finished_parts(part_stage_dirs, fp, round);
  StageCache run(o.stage_dir, fp, true, kShardedRunAdvice);
  if (round == 1) {
    for (const char* name : {"dataset", "reference"}) {
      if (std::string(name) == "reference" && !reference) continue;
      std::vector<Embedded> es(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        RW_CHECK(load_embedded(parts[size_t(i)], name, &es[size_t(i)]), Input, "merge: ", part_stage_dirs[size_t(i)],
                 " has no '", name, "' stage; rerun that shard");
      save_embedded(run, name, merge_embedded(es));
    }
    run.save("samples", merge_sample_parts(parts, part_stage_dirs, o.samples));
  } else {
    merge_recovery_parts(parts, run, "invert", o.invert);
  }
  run.save_json("round-" + std::to_string(round), {{"shards", n}});
  report_progress(progress, {"merge", round, 2, ""});
  return round;
}

}  // namespace rw::audit
