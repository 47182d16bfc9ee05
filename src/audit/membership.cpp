#include "rewind/audit/membership.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"
#include "rewind/report/html.h"

namespace rw::audit {

namespace {

constexpr int kMinBootstrap = 50;  // fewest resamples whose 2.5th and 97.5th percentiles are not the extreme ones

std::set<std::string> parse_attacks(const std::string& s) {
  static const std::set<std::string> known = {"recovery", "calibrated", "lira", "rmia", "identity-nn", "recon-identity",
                                              "identity-calibrated", "identity-lira", "recon-identity-lira",
                                              "discriminator"};
  std::set<std::string> out;
  std::stringstream ss(s);
  const std::string names = "recovery, calibrated, lira, rmia, identity-nn, recon-identity, identity-calibrated, "
                            "identity-lira, recon-identity-lira, discriminator";
  for (std::string t; std::getline(ss, t, ',');) {
    const auto a = t.find_first_not_of(" \t"), b = t.find_last_not_of(" \t");
    t = a == std::string::npos ? "" : t.substr(a, b - a + 1);  // "lira, rmia" as "lira,rmia"
    if (t.empty()) continue;
    RW_CHECK(known.count(t), Usage, "--attacks: unknown attack '", t, "' (", names, "; MembershipOptions::attacks)");
    out.insert(t);
  }
  RW_CHECK(!out.empty(), Usage, "--attacks names no attack ('", s, "'): give a comma list of ", names,
           " (MembershipOptions::attacks)");
  return out;
}

/// The first `k` rows of each identity (k <= 0: all), in manifest order.
std::vector<size_t> first_per_identity(const io::Manifest& m, int64_t k) {
  std::vector<size_t> out;
  for (const auto& [id, rows] : m.by_identity())
    for (size_t j = 0; j < rows.size() && (k <= 0 || int64_t(j) < k); ++j) out.push_back(rows[j]);
  std::sort(out.begin(), out.end());
  return out;
}

/// A seeded draw of at most `k` of `rows` (k <= 0: all), kept in order.
std::vector<size_t> draw(const std::vector<size_t>& rows, int64_t k, uint64_t seed) {
  if (k <= 0 || int64_t(rows.size()) <= k) return rows;
  auto pick = rows;
  std::mt19937_64 rng(seed);
  std::shuffle(pick.begin(), pick.end(), rng);
  pick.resize(size_t(k));
  std::sort(pick.begin(), pick.end());
  return pick;
}

void aggregate_identities(MembershipResult& r, const io::Manifest* const sets[2]) {
  std::map<std::pair<int, std::string>, size_t> where;
  std::vector<std::vector<size_t>> members;
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& identity = sets[r.rows[i].label]->entries[r.rows[i].row].identity;
    auto [it, fresh] = where.emplace(std::make_pair(r.rows[i].label, identity), r.identity_rows.size());
    r.rows[i].identity = int64_t(it->second);
    if (fresh) {
      r.identity_rows.push_back({identity, r.rows[i].label, 0});
      members.emplace_back();
    }
    r.identity_rows[it->second].images += 1;
    members[it->second].push_back(i);
  }
  for (const auto& k : r.attacks) {
    auto& out = r.identity_score[k];
    for (const auto& ix : members) {
      // identity-nn: the best image; the others: the mean over the images that were measured
      double v = k == "identity-nn" ? -1e9 : 0;
      int n = 0;
      for (size_t i : ix) {
        const double s = r.score[k][i];
        if (std::isnan(s)) continue;
        v = k == "identity-nn" ? std::max(v, s) : v + s;
        ++n;
      }
      out.push_back(n == 0 ? NAN : k == "identity-nn" ? v : v / n);
    }
  }
}

/// What one class's streamed pass keeps: which rows loaded, their embeddings and image
/// statistics. Nothing else per image; identity-nn is scored from the embeddings afterwards.
struct ClassScan {
  std::vector<size_t> rows;
  std::vector<data::Skipped> skipped;
  Embedded kept;            ///< embeddings of the loaded rows (with an embedder)
  at::Tensor stats;         ///< [rows, F] image statistics (image_statistics) for the blind baseline
  at::Tensor disc;          ///< [rows] float64 discriminator logits (with a discriminator), else undefined
};

ClassScan scan(data::ImageStream& s, models::Embedder* e, models::Discriminator* d) {
  torch::NoGradGuard ng;
  ClassScan out;
  data::Batch b;
  out.rows.reserve(size_t(s.total()));
  std::vector<at::Tensor> stats, embs, disc;
  while (s.next(&b)) {
    out.rows.insert(out.rows.end(), b.rows.begin(), b.rows.end());
    stats.push_back(image_statistics(b.images));
    if (d) disc.push_back(d->score(b.images).to(torch::kCPU, torch::kFloat64));
    if (!e) continue;
    embs.push_back(e->embed(b.images));
    out.kept.rows.insert(out.kept.rows.end(), b.rows.begin(), b.rows.end());
  }
  out.kept.emb = embs.empty() ? torch::empty({0, e ? e->dim() : 0}) : torch::cat(embs);
  out.stats = stats.empty() ? torch::empty({0, 0}, torch::kFloat64) : torch::cat(stats);
  if (d) out.disc = disc.empty() ? torch::empty({0}, torch::kFloat64) : torch::cat(disc);
  out.skipped = s.skipped();
  return out;
}

/// identity-nn of each kept row: its best similarity to a sample, in chunks of a fixed size (the
/// same arithmetic whether the embeddings came from one process or from shards).
std::vector<double> nearest_samples(const SampleBank& bank, const at::Tensor& emb) {
  std::vector<double> out, sim;
  std::vector<int64_t> k;
  for (int64_t a = 0; a < emb.size(0); a += 1024) {
    bank.nearest(emb.slice(0, a, std::min(emb.size(0), a + 1024)), &sim, &k);
    out.insert(out.end(), sim.begin(), sim.end());
  }
  return out;
}

bool load_scan(const StageCache& c, const std::string& name, ClassScan* out) {
  nlohmann::json meta;
  at::Tensor rows;
  // the json is written last: its presence marks the stage complete
  if (!c.load_json(name + "-scan", &meta) || !c.load(name + "-scan-rows", &rows) ||
      !c.load(name + "-scan-stats", &out->stats) || !load_embedded(c, name + "-kept", &out->kept))
    return false;
  out->rows = rows_from(rows);
  out->skipped = skipped_from(meta.at("skipped"));
  if (meta.value("discriminator", false) && !c.load(name + "-scan-disc", &out->disc)) return false;
  return true;
}

void save_scan(const StageCache& c, const std::string& name, const ClassScan& s) {
  if (!c.enabled()) return;
  save_embedded(c, name + "-kept", s.kept);
  c.save(name + "-scan-rows", rows_tensor(s.rows));
  c.save(name + "-scan-stats", s.stats);
  if (s.disc.defined()) c.save(name + "-scan-disc", s.disc);
  c.save_json(name + "-scan", {{"skipped", skipped_json(s.skipped)}, {"discriminator", s.disc.defined()}});
}

/// The scans of a class's shards, in row order (one process's scan).
ClassScan merge_scans(const std::vector<ClassScan>& parts) {
  ClassScan out;
  std::vector<std::pair<size_t, std::pair<size_t, int64_t>>> order;  // row -> (part, position)
  std::vector<Embedded> kept;
  for (size_t p = 0; p < parts.size(); ++p) {
    RW_CHECK(parts[p].stats.size(0) == int64_t(parts[p].rows.size()), Input, "merge: a part holds ", parts[p].stats.size(0),
             " image statistics for ", parts[p].rows.size(), " rows; rerun that shard");
    for (size_t i = 0; i < parts[p].rows.size(); ++i) order.push_back({parts[p].rows[i], {p, int64_t(i)}});
    out.skipped.insert(out.skipped.end(), parts[p].skipped.begin(), parts[p].skipped.end());
    kept.push_back(parts[p].kept);
  }
  std::sort(order.begin(), order.end());
  std::vector<at::Tensor> st, disc;
  const bool with_disc = !parts.empty() && parts[0].disc.defined();
  for (const auto& p : parts)
    RW_CHECK(p.disc.defined() == with_disc && (!with_disc || p.disc.size(0) == int64_t(p.rows.size())), Input,
             "merge: the parts disagree on the discriminator's scores; rerun the shards with the same options");
  for (const auto& [row, at] : order) {
    out.rows.push_back(row);
    st.push_back(parts[at.first].stats[at.second]);
    if (with_disc) disc.push_back(parts[at.first].disc[at.second]);
  }
  if (with_disc) out.disc = disc.empty() ? torch::empty({0}, torch::kFloat64) : torch::stack(disc);
  std::sort(out.skipped.begin(), out.skipped.end(), [](const data::Skipped& a, const data::Skipped& b) { return a.row < b.row; });
  out.stats = st.empty() ? torch::empty({0, 0}, torch::kFloat64) : torch::stack(st);
  out.kept = merge_embedded(kept);
  out.kept.skipped.clear();
  return out;
}

/// Keeps at most ~2000 points of a ROC curve (first and last kept): the plots look the same and
/// the result does not hold 3 doubles per image per attack.
void thin(mia::Roc& r) {
  const size_t n = r.fpr.size(), step = std::max<size_t>(1, n / 2000);
  if (step == 1) return;
  mia::Roc t;
  for (size_t i = 0; i < n; i += step) t.fpr.push_back(r.fpr[i]), t.tpr.push_back(r.tpr[i]), t.threshold.push_back(r.threshold[i]);
  if ((n - 1) % step != 0) t.fpr.push_back(r.fpr[n - 1]), t.tpr.push_back(r.tpr[n - 1]), t.threshold.push_back(r.threshold[n - 1]);
  r = std::move(t);
}

void evaluate(MembershipResult& r, const MembershipOptions& o) {
  for (const char* level : {"image", "identity"}) {
    const bool img = std::string(level) == "image";
    for (const auto& k : r.attacks) {
      std::vector<double> s, raw_m, raw_n;
      std::vector<int> lab;
      std::vector<int64_t> groups;  // image level: the identities, resampled whole
      const auto& sc = img ? r.score[k] : r.identity_score[k];
      for (size_t i = 0; i < sc.size(); ++i) {
        if (std::isnan(sc[i])) continue;
        const int l = img ? r.rows[i].label : r.identity_rows[i].label;
        s.push_back(sc[i]);
        lab.push_back(l);
        if (img) groups.push_back(r.rows[i].identity);
        if (img) (l ? raw_m : raw_n).push_back(r.raw[k][i]);
      }
      AttackMetrics am;
      am.attack = k;
      am.level = level;
      am.m = mia::evaluate(s, lab, mia::default_fprs(), o.boot, o.seed, img ? groups : std::vector<int64_t>{});
      thin(am.m.roc);
      if (img && (k == "recovery" || k == "calibrated")) {
        am.median_member = mia::median(raw_m);
        am.median_nonmember = mia::median(raw_n);
        if (k == "recovery") am.mre_gap = mia::mre_gap(raw_m, raw_n);
      }
      r.metrics.push_back(std::move(am));
    }
  }
}

/// Which attacks run (and why the others do not), and the stage fingerprint of the run.
struct Plan {
  std::set<std::string> run;
  std::map<std::string, std::string> not_run;
  bool need_recovery = false;
  bool use_refs = false;  ///< a reference-calibrated attack runs: the references recover the same rows
  nlohmann::json fp;
};

/// The attacks that compare the target's recovery error with the references'.
bool is_reference_attack(const std::string& a) { return a == "calibrated" || a == "lira" || a == "rmia"; }
/// The attacks that compare an image's closest-sample similarity with its similarity to the references' samples.
bool is_identity_reference_attack(const std::string& a) { return a == "identity-calibrated" || a == "identity-lira"; }
/// Whether the target's reconstructions are embedded (recon-identity, recon-identity-lira).
bool embeds_recon(const std::set<std::string>& run) { return run.count("recon-identity") || run.count("recon-identity-lira"); }
/// Whether an identity reference attack runs (the references' sample banks are then made).
bool uses_identity_refs(const std::set<std::string>& run) {
  return std::any_of(run.begin(), run.end(), is_identity_reference_attack);
}
/// Whether the attacks need the target's sample bank (identity-nn and the identity reference attacks).
bool needs_samples(const std::set<std::string>& run) { return run.count("identity-nn") || uses_identity_refs(run); }
/// Whether the attacks need the images' embeddings (those on the sample bank, and recon-identity).
bool needs_embeddings(const std::set<std::string>& run) { return needs_samples(run) || embeds_recon(run); }
/// Errors (or distances) of the target and of K references for rows gathered over both classes, then
/// calibrated together (mia::calibrated_scores).
struct Calibration {
  explicit Calibration(size_t k) : ref(k) {}
  std::vector<size_t> at;                ///< index into MembershipResult::rows
  std::vector<double> target;
  std::vector<std::vector<double>> ref;  ///< [K][j]
  void add(size_t i, double t) { at.push_back(i), target.push_back(t); }
  mia::CalibratedScores scores() const { return mia::calibrated_scores(target, ref); }
};

/// Stage name of reference k's sample bank.
std::string reference_samples(size_t k) { return "samples (reference " + std::to_string(k + 1) + ")"; }

/// Stage name of reference k's recovery of a class (the first keeps the name of one-reference runs).
std::string reference_stage(const std::string& cls, size_t k) {
  return "invert " + cls + " (reference" + (k ? " " + std::to_string(k + 1) : std::string()) + ")";
}

/// Whether two generators compute one function: the same latent size and, on four seeded latents,
/// the same images (within 1e-6): one GAN saved twice, as bytes that differ.
bool same_function(models::Generator& a, models::Generator& b) {
  if (a.latent_dim() != b.latent_dim()) return false;
  torch::NoGradGuard ng;
  const auto z = torch::randn({4, a.latent_dim()}, at::detail::createCPUGenerator(0x5A3Eull));
  const auto x = a.generate(z.to(a.device())).to(torch::kCPU), y = b.generate(z.to(b.device())).to(torch::kCPU);
  return x.sizes() == y.sizes() && (x - y).abs().max().item<double>() < 1e-6;
}

Plan plan(models::Generator& g, const References& refs, models::Embedder* e, const io::Manifest& members,
          const io::Manifest& nonmembers, const MembershipOptions& o) {
  Plan p;
  auto want = parse_attacks(o.attacks);
  RW_CHECK(o.samples >= 1, Usage, "--samples must be >= 1 (MembershipOptions::samples), got ", o.samples);
  RW_CHECK(o.embed_batch >= 1, Usage, "--embed-batch must be >= 1 (MembershipOptions::embed_batch), got ", o.embed_batch);
  RW_CHECK(o.recover_max >= 0, Usage, "--recover-max must be >= 0 (0 = all; MembershipOptions::recover_max), got ", o.recover_max);
  RW_CHECK(o.boot == 0 || o.boot >= kMinBootstrap, Usage, "--bootstrap must be 0 (no intervals) or at least ",
           kMinBootstrap, ", got ", o.boot, ": a 95% interval's ends are its 2.5th and 97.5th percentiles, which "
           "fewer resamples put on the most extreme resamples (the default is 1000)");
  RW_CHECK(o.per_identity >= 0, Usage, "--per-identity must be >= 0 (0 = every image of each identity), got ",
           o.per_identity);
  ganinv::check_options(g, o.invert, false);
  std::set<std::string> seen = {g.id()};
  for (auto* r : refs) {
    RW_CHECK(r, Internal, "membership: a null reference generator");
    RW_CHECK(r->id() != g.id(), Usage, "the reference generator ", r->describe(),
             " is the generator under attack (the same file contents): a reference must be a GAN trained without the targets");
    RW_CHECK(seen.insert(r->id()).second, Usage, "the reference generator ", r->describe(),
             " is given twice: each reference must be another GAN (K copies of one GAN measure nothing)");
    const auto a = g.output_shape(), b = r->output_shape();
    RW_CHECK(a.channels == b.channels && a.height == b.height && a.width == b.width, Usage, "the reference generator ",
             r->describe(), " makes ", b.channels, "x", b.height, "x", b.width, " images, the generator under attack ",
             a.channels, "x", a.height, "x", a.width, ": errors must be measured on the same images");
    // the same weights in another file (a re-saved copy): every calibrated score would be empty or 0
    RW_CHECK(!same_function(g, *r), Usage, "the reference generator ", r->describe(), " makes the same images as the "
             "generator under attack (the same weights in another file): a reference must be a GAN trained without the "
             "targets");
    ganinv::check_options(*r, o.invert, false);
  }
  p.need_recovery = want.count("recovery") || want.count("recon-identity") ||
                    (!refs.empty() && (want.count("calibrated") || want.count("lira") || want.count("rmia") ||
                                       (e && want.count("recon-identity-lira"))));
  auto& run = p.run;
  auto& not_run = p.not_run;
  for (const auto& a : want) {
    if (is_reference_attack(a) && refs.empty())
      not_run[a] = "no reference generator given (calibrated, lira and rmia compare each image's error with its errors "
                   "under GANs trained without it: --reference-generator, once per GAN; `train gan --exclude` makes them)";
    else if (is_identity_reference_attack(a) && (refs.empty() || !e))
      not_run[a] = refs.empty() ? "no reference generator given (identity-calibrated and identity-lira compare each "
                                  "image's closest-sample similarity with its similarity to the samples of GANs trained "
                                  "without it: --reference-generator)"
                                : "no embedder given (--embedder)";
    else if (a == "recon-identity-lira" && (refs.empty() || !e))
      not_run[a] = refs.empty() ? "no reference generator given (recon-identity-lira compares each image's identity "
                                  "similarity to its own reconstruction with the same under GANs trained without it: "
                                  "--reference-generator)"
                                : "no embedder given (--embedder)";
    else if ((a == "identity-nn" || a == "recon-identity") && !e)
      not_run[a] = "no embedder given (--embedder)";
    else if (a == "discriminator" && !o.discriminator)
      not_run[a] = "no discriminator given (--discriminator FILE: train gan writes GENERATOR.disc; released StyleGAN "
                   "pickles hold D too)";
    else
      run.insert(a);
  }
  if (o.discriminator && !want.count("discriminator"))
    log_warn("a discriminator was given but the discriminator attack is not in --attacks ('", o.attacks, "'): it is not used");
  p.use_refs = std::any_of(run.begin(), run.end(), is_reference_attack) || run.count("recon-identity-lira");
  if (run.empty()) {  // every attack asked for lacks a model: say which, per attack
    std::string why;
    for (const auto& [a, reason] : not_run) why += (why.empty() ? "" : "; ") + a + ": " + reason;
    RW_FAIL(Usage, "no attack of --attacks '", o.attacks, "' could run (", why, ")");
  }
  nlohmann::json ref_names = nlohmann::json::array();
  for (auto* r : refs) ref_names.push_back(r->id());
  p.fp = {{"attacks", canonical_attacks(o.attacks)}, {"samples", o.samples}, {"per_identity", o.per_identity},
          {"recover_max", o.recover_max}, {"seed", o.seed}, {"recovery", recovery_fingerprint(o.invert)}, {"crop", o.crop},
          {"generator", g.id()},
          {"reference_generators", ref_names}, {"embedder", e ? e->id() : ""},
          {"discriminator", o.discriminator && run.count("discriminator") ? o.discriminator->id() : ""},
          {"members", manifest_hash(members)}, {"nonmembers", manifest_hash(nonmembers)}, {"embed_batch", o.embed_batch}};
  return p;
}

/// The rows of a class that are scanned (the first per_identity of each identity).
std::vector<size_t> chosen_rows(const io::Manifest& m, const MembershipOptions& o) {
  return first_per_identity(m, o.per_identity);
}

/// The rows of class `lab` that get latent recovery: a seeded draw of the chosen rows, those that loaded.
std::vector<size_t> recovery_rows_of(const std::vector<size_t>& chosen, const ClassScan& sc, const MembershipOptions& o,
                                     int lab) {
  auto inv = draw(chosen, o.recover_max, mix_seed(o.seed, 0xD4A7ull, uint64_t(lab)));
  std::set<size_t> ok(sc.rows.begin(), sc.rows.end());
  std::vector<size_t> loaded;
  for (size_t row : inv)
    if (ok.count(row)) loaded.push_back(row);
  return loaded;
}

/// The scan of class `cls` (the chosen rows of `m`): kept in `cache`, else streamed at the
/// generator's size and saved there. With a shard, only its blocks of the chosen rows (positions
/// dealt in blocks of the batch, so each batch is one a single process makes).
ClassScan scan_class(const StageCache& cache, const io::Manifest& m, const std::string& cls, const Plan& pl,
                     models::Embedder* e, const models::ImageShape& shape, const MembershipOptions& o,
                     const data::Shard& shard, const ProgressFn& progress) {
  ClassScan sc;
  if (load_scan(cache, cls, &sc)) return sc;
  const auto rows = chosen_rows(m, o);
  std::vector<size_t> mine;
  const auto sh = shard.blocks_of(o.embed_batch);
  for (size_t k = 0; k < rows.size(); ++k)
    if (sh.contains(int64_t(k))) mine.push_back(rows[k]);
  data::StreamOptions so;
  so.batch = o.embed_batch;
  so.stage = "load " + cls;
  data::ImageStream s(m, std::move(mine), pipeline_loader(shape, o.crop), so, progress);
  // the embedder only when an attack uses the embeddings (identity-nn, recon-identity)
  sc = scan(s, needs_embeddings(pl.run) ? e : nullptr, pl.run.count("discriminator") ? o.discriminator.get() : nullptr);
  save_scan(cache, cls, sc);
  return sc;
}

}  // namespace

MembershipResult run_membership(models::Generator& g, const References& refs, models::Embedder* e,
                                const io::Manifest& members, const io::Manifest& nonmembers, const MembershipOptions& o,
                                const ProgressFn& progress, io::RunRecord* record) {
  const Plan pl = plan(g, refs, e, members, nonmembers, o);
  const bool use_refs = pl.use_refs;
  const auto& run = pl.run;
  const auto& not_run = pl.not_run;
  const bool need_recovery = pl.need_recovery;
  StageCache cache(o.stage_dir, pl.fp, o.resume);
  cache.guard_files({{"members", &members}, {"nonmembers", &nonmembers}});
  MembershipResult r;
  r.attacks.assign(run.begin(), run.end());
  r.skipped_attacks = not_run;
  std::map<std::string, std::string> by_reason;  // one line per reason: "attacks calibrated, lira, rmia skipped: ..."
  for (const auto& [a, why] : not_run) by_reason[why] += (by_reason[why].empty() ? "" : ", ") + a;
  for (const auto& [why, names] : by_reason)
    log_warn(names.find(',') == std::string::npos ? "attack " : "attacks ", names, " skipped: ", why);
  const io::Manifest* sets[2] = {&nonmembers, &members};
  const auto shape = g.output_shape();
  // per class: embeddings of the chosen rows (this also finds the rows that load)
  std::unique_ptr<SampleBank> bank;
  std::vector<std::unique_ptr<SampleBank>> ref_banks;  // the references' samples (identity-calibrated, identity-lira)
  const bool identity_refs = uses_identity_refs(run);
  if (needs_samples(run)) {
    bank = kept_sample_bank(cache, g, *e, o.samples, o.seed, progress);
    for (size_t k = 0; identity_refs && k < refs.size(); ++k)
      ref_banks.push_back(kept_sample_bank(cache, *refs[k], *e, o.samples, o.seed, progress, reference_samples(k)));
    if (record) record->mark("samples");
  }
  // the reference-calibrated scores pool over images of both classes (LiRA's variance, RMIA's scale): a
  // score must not know its image's label, so they are computed after both classes, over all of them
  Calibration rec_cal(refs.size()), id_cal(ref_banks.size());
  const bool recon_refs = run.count("recon-identity-lira") > 0;  // the references' reconstructions are embedded too
  Calibration recon_cal(recon_refs ? refs.size() : 0);
  int64_t position = 0;  // restart seeds: members first, then non-members, as one list
  std::vector<std::vector<double>> stats;  // per row of r.rows: image statistics (blind baseline)
  for (int lab : {1, 0}) {
    const auto& m = *sets[lab];
    const std::string cls = lab ? "members" : "nonmembers";
    const auto chosen = chosen_rows(m, o);
    const ClassScan sc = scan_class(cache, m, cls, pl, e, shape, o, {}, progress);
    record_skips(record, sc.skipped);
    r.skipped.insert(r.skipped.end(), sc.skipped.begin(), sc.skipped.end());
    if (!sc.skipped.empty())
      log_warn(sc.skipped.size(), lab ? " member" : " non-member", sc.skipped.size() == 1 ? " image" : " images",
               " skipped (run.json); first: ", sc.skipped.front().reason);
    RW_CHECK(!sc.rows.empty(), Input, "no ", cls, " image could be loaded",
             sc.skipped.empty() ? std::string() : " (first problem: " + sc.skipped.front().reason + ")");
    (lab ? r.members : r.nonmembers) = int64_t(sc.rows.size());
    const size_t base = r.rows.size();
    for (size_t row : sc.rows) r.rows.push_back({lab, row, -1});
    for (const auto& a : r.attacks) {
      r.raw[a].resize(r.rows.size(), NAN);
      r.score[a].resize(r.rows.size(), NAN);
    }
    if (needs_samples(run)) {
      RW_CHECK(sc.kept.rows == sc.rows, Input, "membership: the kept ", cls, " scan in ", o.stage_dir,
               " lost embeddings; remove the folder and run again");
      const auto nn = nearest_samples(*bank, sc.kept.emb);
      if (run.count("identity-nn"))
        for (size_t i = 0; i < sc.rows.size(); ++i) r.raw["identity-nn"][base + i] = r.score["identity-nn"][base + i] = nn[i];
      if (identity_refs) {  // as the recovery attacks, on a distance: 1 - closest-sample similarity
        for (size_t i = 0; i < nn.size(); ++i) id_cal.add(base + i, 1.0 - nn[i]);
        for (size_t k = 0; k < ref_banks.size(); ++k) {
          const auto s = nearest_samples(*ref_banks[k], sc.kept.emb);
          for (double v : s) id_cal.ref[k].push_back(1.0 - v);
        }
      }
    }
    if (run.count("discriminator")) {
      RW_CHECK(sc.disc.defined() && sc.disc.size(0) == int64_t(sc.rows.size()), Input, "membership: the kept ", cls,
               " scan in ", o.stage_dir, " has no discriminator scores; remove the folder and run again");
      check_discriminator_logits(sc.disc, cls + " images");
      const auto d = to_vector(sc.disc);
      for (size_t i = 0; i < d.size(); ++i) r.raw["discriminator"][base + i] = r.score["discriminator"][base + i] = d[i];
    }
    if (sc.stats.size(0) == int64_t(sc.rows.size()))
      for (int64_t i = 0; i < sc.stats.size(0); ++i) stats.push_back(to_vector(sc.stats[i]));
    if (!need_recovery) continue;
    // the rows drawn for recovery are drawn from those chosen (a row that did not load is skipped)
    const auto loaded = recovery_rows_of(chosen, sc, o, lab);
    auto rc = recover_rows(g, m, loaded, o.invert, embeds_recon(run) ? e : nullptr, progress, "invert " + cls, &cache,
                           position, {}, o.crop);
    std::vector<std::vector<double>> mse_ref;  // [K][j]: reference k's error on recovered row j
    std::vector<at::Tensor> remb_ref;          // [K]: reference k's reconstructions' embeddings (recon-identity-lira)
    for (size_t k = 0; use_refs && k < refs.size(); ++k) {
      auto rk = recover_rows(*refs[k], m, loaded, o.invert, recon_refs ? e : nullptr, progress, reference_stage(cls, k),
                             &cache, position, {}, o.crop);
      RW_CHECK(rk.rows == rc.rows, Internal, "membership: reference ", k + 1, " recovered other rows than the target");
      mse_ref.push_back(to_vector(rk.mse));
      if (recon_refs) remb_ref.push_back(rk.recon_emb);
    }
    position += int64_t(loaded.size());
    std::map<size_t, size_t> at, kept_at;  // manifest row -> index among the scanned rows / the kept embeddings
    for (size_t i = 0; i < sc.rows.size(); ++i) at[sc.rows[i]] = i;
    for (size_t i = 0; i < sc.kept.rows.size(); ++i) kept_at[sc.kept.rows[i]] = i;
    auto mse = to_vector(rc.mse);
    for (size_t j = 0; j < rc.rows.size(); ++j) {
      auto it = at.find(rc.rows[j]);
      if (it == at.end()) continue;
      const size_t i = base + it->second;
      if (run.count("recovery")) r.raw["recovery"][i] = mse[j], r.score["recovery"][i] = -mse[j];
      if (use_refs) {
        rec_cal.add(i, mse[j]);
        for (size_t k = 0; k < mse_ref.size(); ++k) rec_cal.ref[k].push_back(mse_ref[k][j]);
      }
      auto k = kept_at.find(rc.rows[j]);
      if (!rc.recon_emb.defined() || k == kept_at.end()) continue;
      const auto emb = sc.kept.emb[int64_t(k->second)];
      const double c = (emb * rc.recon_emb[int64_t(j)]).sum().item<double>();
      if (run.count("recon-identity")) r.raw["recon-identity"][i] = r.score["recon-identity"][i] = c;
      if (recon_refs) {  // as the recovery attacks, on a distance: 1 - similarity to the reconstruction
        recon_cal.add(i, 1.0 - c);
        for (size_t q = 0; q < remb_ref.size(); ++q)
          recon_cal.ref[q].push_back(1.0 - (emb * remb_ref[q][int64_t(j)]).sum().item<double>());
      }
    }
  }
  if (use_refs) {
    const auto cal = rec_cal.scores();
    for (size_t j = 0; j < rec_cal.at.size(); ++j) {
      const size_t i = rec_cal.at[j];
      if (run.count("calibrated")) r.raw["calibrated"][i] = -cal.calibrated[j], r.score["calibrated"][i] = cal.calibrated[j];
      if (run.count("lira")) r.raw["lira"][i] = r.score["lira"][i] = cal.lira[j];
      if (run.count("rmia")) r.raw["rmia"][i] = r.score["rmia"][i] = cal.rmia[j];
    }
  }
  if (identity_refs) {
    const auto cal = id_cal.scores();
    for (size_t j = 0; j < id_cal.at.size(); ++j) {
      const size_t i = id_cal.at[j];
      if (run.count("identity-calibrated")) r.raw["identity-calibrated"][i] = r.score["identity-calibrated"][i] = cal.calibrated[j];
      if (run.count("identity-lira")) r.raw["identity-lira"][i] = r.score["identity-lira"][i] = cal.lira[j];
    }
  }
  if (recon_refs) {
    const auto cal = recon_cal.scores();
    for (size_t j = 0; j < recon_cal.at.size(); ++j) {
      const size_t i = recon_cal.at[j];
      r.raw["recon-identity-lira"][i] = r.score["recon-identity-lira"][i] = cal.lira[j];
    }
  }
  if (record) record->mark("load + invert");
  log_info(r.rows.size(), " targets (", r.members, " members, ", r.nonmembers, " non-members)");
  aggregate_identities(r, sets);
  r.one_image_per_identity = std::all_of(r.identity_rows.begin(), r.identity_rows.end(),
                                         [](const MembershipResult::IdentityRow& i) { return i.images == 1; });
  evaluate(r, o);
  if (stats.size() == r.rows.size()) {
    std::vector<int> lab;
    for (const auto& row : r.rows) lab.push_back(row.label);
    std::vector<int64_t> groups;  // folds by identity: no person on both sides of a fold
    for (const auto& row : r.rows) groups.push_back(row.identity);
    r.blind = mia::blind_baseline(stats, lab, 5, o.boot, o.seed, groups);
    thin(r.blind.m.roc);
    if (r.blind.biased)
      log_warn("the member / non-member split looks biased: image statistics alone separate it (blind baseline AUC ",
               report::fmt_interval(r.blind.m.auc.value, r.blind.m.auc.lo, r.blind.m.auc.hi), ")");
  }
  return r;
}

// ------------------------------------------------------------------------------------------------
// sharded membership: round 1 scans (and samples), round 2 latent recovery

int64_t membership_next_round(const std::string& stage_dir) { return next_round(stage_dir, 2); }

std::string canonical_attacks(const std::string& attacks) {
  std::string out;
  for (const auto& a : parse_attacks(attacks)) out += (out.empty() ? "" : ",") + a;
  return out;
}

int64_t run_membership_shard(models::Generator& g, const References& refs, models::Embedder* e,
                             const io::Manifest& members, const io::Manifest& nonmembers, const MembershipOptions& o,
                             const data::Shard& shard, const std::string& part_stage_dir, const ProgressFn& progress,
                             io::RunRecord* record) {
  RW_CHECK(!shard.whole(), Internal, "run_membership_shard needs a shard of more than one");
  const Plan pl = plan(g, refs, e, members, nonmembers, o);
  const bool use_refs = pl.use_refs;
  const int64_t round = membership_next_round(o.stage_dir);
  RW_CHECK(round > 0, Usage, "every round of this sharded membership run is merged already: run it with --merge to "
           "write the report");
  StageCache part(part_stage_dir, part_fingerprint(pl.fp, shard, round), o.resume);
  part.guard_files({{"members", &members}, {"nonmembers", &nonmembers}});
  const io::Manifest* sets[2] = {&nonmembers, &members};
  if (round == 1) {
    at::Tensor smp;
    if (needs_samples(pl.run) && !part.load("samples", &smp))
      part.save("samples", SampleBank(g, *e, o.samples, o.seed, progress, kSampleBatch, shard).embeddings());
    for (size_t k = 0; uses_identity_refs(pl.run) && k < refs.size(); ++k)
      if (!part.load(reference_samples(k), &smp))
        part.save(reference_samples(k), SampleBank(*refs[k], *e, o.samples, o.seed, progress, kSampleBatch, shard).embeddings());
    for (int lab : {1, 0}) {
      const std::string cls = lab ? "members" : "nonmembers";
      record_skips(record, scan_class(part, *sets[lab], cls, pl, e, g.output_shape(), o, shard, progress).skipped);
    }
  } else if (pl.need_recovery) {
    StageCache merged(o.stage_dir, pl.fp, true, kShardedRunAdvice);
    int64_t position = 0;  // as run_membership: members first, then non-members
    for (int lab : {1, 0}) {
      const auto& m = *sets[lab];
      const std::string cls = lab ? "members" : "nonmembers";
      ClassScan sc;
      RW_CHECK(load_scan(merged, cls, &sc), Input, o.stage_dir, " lacks the merged ", cls,
               " scan of round 1: merge round 1 (--merge) before round 2");
      const auto loaded = recovery_rows_of(chosen_rows(m, o), sc, o, lab);
      auto rc = recover_rows(g, m, loaded, o.invert, embeds_recon(pl.run) ? e : nullptr, progress, "invert " + cls, &part,
                             position, shard, o.crop);
      record_skips(record, rc.skipped);
      for (size_t k = 0; use_refs && k < refs.size(); ++k)
        recover_rows(*refs[k], m, loaded, o.invert, pl.run.count("recon-identity-lira") ? e : nullptr, progress,
                     reference_stage(cls, k), &part, position, shard, o.crop);
      position += int64_t(loaded.size());
    }
  }
  part.save_json("done", {{"round", round}, {"shard", shard.str()}});
  return round;
}

int64_t merge_membership_shards(models::Generator& g, const References& refs, models::Embedder* e,
                                const io::Manifest& members, const io::Manifest& nonmembers,
                                const MembershipOptions& o, const std::vector<std::string>& part_stage_dirs,
                                const ProgressFn& progress) {
  const Plan pl = plan(g, refs, e, members, nonmembers, o);
  const int64_t round = membership_next_round(o.stage_dir), n = int64_t(part_stage_dirs.size());
  RW_CHECK(round > 0, Usage, "every round of this sharded membership run is merged already");
  const auto parts = open_finished_parts(part_stage_dirs, pl.fp, round);
  StageCache run(o.stage_dir, pl.fp, true, kShardedRunAdvice);
  for (const char* cls : {"members", "nonmembers"}) {
    if (round == 1) {
      std::vector<ClassScan> scans(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        RW_CHECK(load_scan(parts[size_t(i)], cls, &scans[size_t(i)]), Input, "merge: ", part_stage_dirs[size_t(i)],
                 " has no ", cls, " scan; rerun that shard");
      save_scan(run, cls, merge_scans(scans));
    } else {
      merge_recovery_parts(parts, run, std::string("invert ") + cls, o.invert);
      for (size_t k = 0; k < refs.size(); ++k) merge_recovery_parts(parts, run, reference_stage(cls, k), o.invert);
    }
  }
  if (round == 1 && needs_samples(pl.run)) run.save("samples", merge_sample_parts(parts, part_stage_dirs, o.samples));
  for (size_t k = 0; round == 1 && uses_identity_refs(pl.run) && k < refs.size(); ++k)
    run.save(reference_samples(k), merge_sample_parts(parts, part_stage_dirs, o.samples, reference_samples(k)));
  run.save_json("round-" + std::to_string(round), {{"shards", n}});
  report_progress(progress, {"merge", round, 2, ""});
  return round;
}

}  // namespace rw::audit
