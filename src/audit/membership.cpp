#include "rewind/audit/membership.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
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

void aggregate_identities(MembershipResult& r) {
  std::map<std::pair<int, std::string>, size_t> where;
  std::vector<std::vector<size_t>> members;
  for (size_t i = 0; i < r.rows.size(); ++i) {
    auto [it, fresh] = where.emplace(std::make_pair(r.rows[i].label, r.rows[i].identity), r.identity_rows.size());
    if (fresh) {
      r.identity_rows.push_back({r.rows[i].identity, r.rows[i].label, 0});
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
      am.m = mia::evaluate(s, lab, {1e-3, 1e-2, 1e-1}, o.boot, o.seed);
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
  for (const auto& a : want)
    if ((a == "recovery") || (a == "calibrated" && gref) || ((a == "identity-nn" || a == "recon-identity") && e)) run.insert(a);
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
  const io::Manifest* sets[2] = {&nonmembers, &members};
  const auto shape = g.output_shape();
  // per class: embeddings of the chosen rows (this also finds the rows that load)
  std::vector<Embedded> emb(2);
  std::vector<Recovery> rec(2), rec_ref(2);
  int64_t position = 0;  // restart seeds: members first, then non-members, as one list
  for (int lab : {1, 0}) {
    const auto& m = *sets[lab];
    const std::string cls = lab ? "members" : "nonmembers";
    auto chosen = first_per_identity(m, o.per_identity);
    Embedded& em = emb[size_t(lab)];
    if (!load_embedded(cache, cls, &em)) {
      data::StreamOptions so;
      so.batch = o.batch;
      so.stage = "load " + cls;
      data::ImageStream s(m, chosen, data::image_loader({shape.channels, shape.height, io::ResizeMode::kCenterCrop}), so,
                          progress);
      if (e) em = embed_stream(*e, s);
      else {  // no embedder: just find which rows load
        data::Batch b;
        while (s.next(&b)) em.rows.insert(em.rows.end(), b.rows.begin(), b.rows.end());
        em.skipped = s.skipped();
      }
      save_embedded(cache, cls, em);
    }
    record_skips(record, em.skipped);
    r.skipped.insert(r.skipped.end(), em.skipped.begin(), em.skipped.end());
    if (!em.skipped.empty()) log_warn(em.skipped.size(), " ", cls, " images skipped (run.json); first: ", em.skipped.front().reason);
    RW_CHECK(!em.rows.empty(), Input, "no ", cls, " image could be loaded",
             em.skipped.empty() ? std::string() : " (first problem: " + em.skipped.front().reason + ")");
    for (size_t row : em.rows) r.rows.push_back({lab, row, m.entries[row].path, m.entries[row].identity});
    (lab ? r.members : r.nonmembers) = int64_t(em.rows.size());
    if (need_recovery) {
      auto inv = draw(em.rows, o.recover_max, mix_seed(o.seed, 0xD4A7ull, uint64_t(lab)));
      rec[size_t(lab)] = recover_rows(g, m, inv, o.invert, e && run.count("recon-identity") ? e : nullptr, progress,
                                      "invert " + cls, &cache, position);
      if (run.count("calibrated"))
        rec_ref[size_t(lab)] = recover_rows(*gref, m, inv, o.invert, nullptr, progress, "invert " + cls + " (reference)",
                                            &cache, position);
      position += int64_t(inv.size());
    }
  }
  if (record) record->mark("load + invert");
  log_info(r.rows.size(), " targets (", r.members, " members, ", r.nonmembers, " non-members)");
  for (const auto& a : r.attacks) r.raw[a] = r.score[a] = std::vector<double>(r.rows.size(), NAN);
  std::vector<double> nn_sim;
  if (run.count("identity-nn")) {
    SampleBank bank(g, *e, o.samples, o.seed, progress);
    for (int lab : {1, 0}) {  // members first, as the rows (no concatenated copy of the embeddings)
      std::vector<double> s;
      std::vector<int64_t> k;
      bank.nearest(emb[size_t(lab)].emb, &s, &k);
      nn_sim.insert(nn_sim.end(), s.begin(), s.end());
    }
    if (record) record->mark("identity-nn");
  }
  size_t base = 0;
  for (int lab : {1, 0}) {
    const auto& em = emb[size_t(lab)];
    std::map<size_t, size_t> at;  // manifest row -> index among this class's embedded rows
    for (size_t i = 0; i < em.rows.size(); ++i) at[em.rows[i]] = i;
    const auto& rc = rec[size_t(lab)];
    auto mse = to_vector(rc.mse), mse_ref = to_vector(rec_ref[size_t(lab)].mse);
    for (size_t j = 0; j < rc.rows.size(); ++j) {
      auto it = at.find(rc.rows[j]);
      if (it == at.end()) continue;  // loaded for embedding but not for recovery (file changed)
      const size_t i = base + it->second;
      if (run.count("recovery")) r.raw["recovery"][i] = mse[j], r.score["recovery"][i] = -mse[j];
      if (run.count("calibrated") && j < mse_ref.size())
        r.raw["calibrated"][i] = mse[j] - mse_ref[j], r.score["calibrated"][i] = -(mse[j] - mse_ref[j]);
      if (run.count("recon-identity") && rc.recon_emb.defined()) {
        const double c = (em.emb[int64_t(it->second)] * rc.recon_emb[int64_t(j)]).sum().item<double>();
        r.raw["recon-identity"][i] = r.score["recon-identity"][i] = c;
      }
    }
    if (run.count("identity-nn"))
      for (size_t i = 0; i < em.rows.size(); ++i) r.raw["identity-nn"][base + i] = r.score["identity-nn"][base + i] = nn_sim[base + i];
    base += em.rows.size();
  }
  aggregate_identities(r);
  evaluate(r, o);
  return r;
}

}  // namespace rw::audit
