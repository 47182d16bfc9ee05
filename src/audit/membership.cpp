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

namespace rw::audit {

namespace {

std::set<std::string> parse_attacks(const std::string& s) {
  static const std::set<std::string> known = {"recovery", "calibrated", "identity-nn", "recon-identity"};
  std::set<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');) {
    if (t.empty()) continue;
    RW_CHECK(known.count(t), Usage, "MembershipOptions::attacks: unknown attack '", t,
             "' (recovery, calibrated, identity-nn, recon-identity)");
    out.insert(t);
  }
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

/// What one class's streamed pass keeps: which rows loaded, their identity-nn similarity, and the
/// embeddings of the rows drawn for recovery (for recon-identity). Nothing else per image.
struct ClassScan {
  std::vector<size_t> rows;
  std::vector<data::Skipped> skipped;
  std::vector<double> nn;   ///< per row; empty without a sample bank
  Embedded kept;            ///< embeddings of the loaded rows among `keep`
  at::Tensor stats;         ///< [rows, F] image statistics (image_statistics) for the blind baseline
};

ClassScan scan(data::ImageStream& s, models::Embedder* e, const SampleBank* bank, const std::vector<size_t>& keep) {
  torch::NoGradGuard ng;
  ClassScan out;
  std::set<size_t> want(keep.begin(), keep.end());
  at::Tensor buf = e ? torch::empty({int64_t(want.size()), e->dim()}) : at::Tensor();
  int64_t n = 0;
  data::Batch b;
  out.rows.reserve(size_t(s.total()));
  std::vector<at::Tensor> stats;
  while (s.next(&b)) {
    out.rows.insert(out.rows.end(), b.rows.begin(), b.rows.end());
    stats.push_back(image_statistics(b.images));
    if (!e || (!bank && want.empty())) continue;
    auto emb = e->embed(b.images);
    if (bank) {
      std::vector<double> sim;
      std::vector<int64_t> k;
      bank->nearest(emb, &sim, &k);
      out.nn.insert(out.nn.end(), sim.begin(), sim.end());
    }
    for (size_t j = 0; j < b.rows.size(); ++j)
      if (want.count(b.rows[j])) {
        buf[n++].copy_(emb[int64_t(j)]);
        out.kept.rows.push_back(b.rows[j]);
      }
  }
  out.kept.emb = buf.defined() ? buf.slice(0, 0, n).clone() : torch::empty({0, 0});
  out.stats = stats.empty() ? torch::empty({0, 0}, torch::kFloat64) : torch::cat(stats);
  out.skipped = s.skipped();
  return out;
}

bool load_scan(const StageCache& c, const std::string& name, ClassScan* out) {
  nlohmann::json meta;
  at::Tensor rows, nn;
  // the json is written last: its presence marks the stage complete
  if (!c.load_json(name + "-scan", &meta) || !c.load(name + "-scan-rows", &rows) || !c.load(name + "-scan-nn", &nn) ||
      !c.load(name + "-scan-stats", &out->stats) || !load_embedded(c, name + "-kept", &out->kept))
    return false;
  out->rows = rows_from(rows);
  out->skipped = skipped_from(meta.at("skipped"));
  auto d = nn.to(torch::kFloat64).contiguous();
  out->nn.assign(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  return true;
}

void save_scan(const StageCache& c, const std::string& name, const ClassScan& s) {
  if (!c.enabled()) return;
  save_embedded(c, name + "-kept", s.kept);
  c.save(name + "-scan-rows", rows_tensor(s.rows));
  c.save(name + "-scan-nn", torch::tensor(s.nn, torch::kFloat64));
  c.save(name + "-scan-stats", s.stats);
  c.save_json(name + "-scan", {{"skipped", skipped_json(s.skipped)}});
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
      const auto& sc = img ? r.score[k] : r.identity_score[k];
      for (size_t i = 0; i < sc.size(); ++i) {
        if (std::isnan(sc[i])) continue;
        const int l = img ? r.rows[i].label : r.identity_rows[i].label;
        s.push_back(sc[i]);
        lab.push_back(l);
        if (img) (l ? raw_m : raw_n).push_back(r.raw[k][i]);
      }
      AttackMetrics am;
      am.attack = k;
      am.level = level;
      am.m = mia::evaluate(s, lab, mia::default_fprs(), o.boot, o.seed);
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

}  // namespace

MembershipResult run_membership(models::Generator& g, models::Generator* gref, models::Embedder* e,
                                const io::Manifest& members, const io::Manifest& nonmembers, const MembershipOptions& o,
                                const ProgressFn& progress, io::RunRecord* record) {
  auto want = parse_attacks(o.attacks);
  RW_CHECK(o.samples >= 1, Usage, "MembershipOptions::samples must be >= 1, got ", o.samples);
  RW_CHECK(o.recover_max >= 0, Usage, "MembershipOptions::recover_max must be >= 0, got ", o.recover_max);
  RW_CHECK(o.boot >= 0, Usage, "MembershipOptions::boot must be >= 0, got ", o.boot);
  const bool need_recovery = want.count("recovery") || want.count("recon-identity") || (want.count("calibrated") && gref);
  std::set<std::string> run;
  std::map<std::string, std::string> not_run;
  for (const auto& a : want) {
    if (a == "calibrated" && !gref)
      not_run[a] = "no reference generator given (GAN-Leaks' calibrated attack needs a generator trained on other data: "
                   "--reference-generator)";
    else if ((a == "identity-nn" || a == "recon-identity") && !e)
      not_run[a] = "no embedder given (--embedder)";
    else
      run.insert(a);
  }
  RW_CHECK(!run.empty(), Usage, "no attack could run: MembershipOptions::attacks '", o.attacks,
           "' needs an embedder for identity-nn / recon-identity and a reference generator for calibrated");
  nlohmann::json fp = {{"attacks", o.attacks}, {"samples", o.samples}, {"per_identity", o.per_identity},
                       {"recover_max", o.recover_max}, {"seed", o.seed}, {"restarts", o.invert.restarts},
                       {"steps", o.invert.loop.steps}, {"lr", o.invert.loop.lr}, {"generator", g.describe()},
                       {"reference_generator", gref ? gref->describe() : ""}, {"embedder", e ? e->id() : ""},
                       {"members", manifest_hash(members)}, {"nonmembers", manifest_hash(nonmembers)}};
  StageCache cache(o.stage_dir, fp, o.resume);
  MembershipResult r;
  r.attacks.assign(run.begin(), run.end());
  r.skipped_attacks = not_run;
  for (const auto& [a, why] : not_run) log_warn("attack ", a, " skipped: ", why);
  const io::Manifest* sets[2] = {&nonmembers, &members};
  const auto shape = g.output_shape();
  // per class: embeddings of the chosen rows (this also finds the rows that load)
  std::unique_ptr<SampleBank> bank;
  if (run.count("identity-nn")) {
    bank = std::make_unique<SampleBank>(g, *e, o.samples, o.seed, progress);
    if (record) record->mark("samples");
  }
  int64_t position = 0;  // restart seeds: members first, then non-members, as one list
  std::vector<std::vector<double>> stats;  // per row of r.rows: image statistics (blind baseline)
  for (int lab : {1, 0}) {
    const auto& m = *sets[lab];
    const std::string cls = lab ? "members" : "nonmembers";
    auto chosen = first_per_identity(m, o.per_identity);
    // the rows drawn for recovery are drawn from those chosen (a row that then fails to load is skipped)
    auto inv = need_recovery ? draw(chosen, o.recover_max, mix_seed(o.seed, 0xD4A7ull, uint64_t(lab))) : std::vector<size_t>{};
    ClassScan sc;
    if (!load_scan(cache, cls, &sc)) {
      data::StreamOptions so;
      so.batch = o.batch;
      so.stage = "load " + cls;
      data::ImageStream s(m, chosen, data::image_loader({shape.channels, shape.height, io::ResizeMode::kCenterCrop}), so,
                          progress);
      sc = scan(s, e, bank.get(), run.count("recon-identity") ? inv : std::vector<size_t>{});
      save_scan(cache, cls, sc);
    }
    record_skips(record, sc.skipped);
    r.skipped.insert(r.skipped.end(), sc.skipped.begin(), sc.skipped.end());
    if (!sc.skipped.empty()) log_warn(sc.skipped.size(), " ", cls, " images skipped (run.json); first: ", sc.skipped.front().reason);
    RW_CHECK(!sc.rows.empty(), Input, "no ", cls, " image could be loaded",
             sc.skipped.empty() ? std::string() : " (first problem: " + sc.skipped.front().reason + ")");
    (lab ? r.members : r.nonmembers) = int64_t(sc.rows.size());
    const size_t base = r.rows.size();
    for (size_t row : sc.rows) r.rows.push_back({lab, row});
    for (const auto& a : r.attacks) {
      r.raw[a].resize(r.rows.size(), NAN);
      r.score[a].resize(r.rows.size(), NAN);
    }
    if (run.count("identity-nn"))
      for (size_t i = 0; i < sc.rows.size(); ++i) r.raw["identity-nn"][base + i] = r.score["identity-nn"][base + i] = sc.nn[i];
    sc.nn = {};
    if (sc.stats.size(0) == int64_t(sc.rows.size()))
      for (int64_t i = 0; i < sc.stats.size(0); ++i) stats.push_back(to_vector(sc.stats[i]));
    if (!need_recovery) continue;
    std::vector<size_t> loaded;  // drawn rows that loaded for the scan
    std::set<size_t> ok(sc.rows.begin(), sc.rows.end());
    for (size_t row : inv)
      if (ok.count(row)) loaded.push_back(row);
    auto rc = recover_rows(g, m, loaded, o.invert, e && run.count("recon-identity") ? e : nullptr, progress,
                           "invert " + cls, &cache, position);
    Recovery rc_ref;
    if (run.count("calibrated"))
      rc_ref = recover_rows(*gref, m, loaded, o.invert, nullptr, progress, "invert " + cls + " (reference)", &cache, position);
    position += int64_t(loaded.size());
    std::map<size_t, size_t> at, kept_at;  // manifest row -> index among the scanned rows / the kept embeddings
    for (size_t i = 0; i < sc.rows.size(); ++i) at[sc.rows[i]] = i;
    for (size_t i = 0; i < sc.kept.rows.size(); ++i) kept_at[sc.kept.rows[i]] = i;
    auto mse = to_vector(rc.mse), mse_ref = to_vector(rc_ref.mse);
    for (size_t j = 0; j < rc.rows.size(); ++j) {
      auto it = at.find(rc.rows[j]);
      if (it == at.end()) continue;
      const size_t i = base + it->second;
      if (run.count("recovery")) r.raw["recovery"][i] = mse[j], r.score["recovery"][i] = -mse[j];
      if (run.count("calibrated") && j < mse_ref.size())
        r.raw["calibrated"][i] = mse[j] - mse_ref[j], r.score["calibrated"][i] = -(mse[j] - mse_ref[j]);
      auto k = kept_at.find(rc.rows[j]);
      if (run.count("recon-identity") && rc.recon_emb.defined() && k != kept_at.end()) {
        const double c = (sc.kept.emb[int64_t(k->second)] * rc.recon_emb[int64_t(j)]).sum().item<double>();
        r.raw["recon-identity"][i] = r.score["recon-identity"][i] = c;
      }
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
    r.blind = mia::blind_baseline(stats, lab, 5, o.boot, o.seed);
    thin(r.blind.m.roc);
    if (r.blind.biased)
      log_warn("the member / non-member split looks biased: image statistics alone separate it (blind baseline AUC ",
               r.blind.m.auc.value, ", 95% CI ", r.blind.m.auc.lo, "-", r.blind.m.auc.hi, ")");
  }
  return r;
}

}  // namespace rw::audit
