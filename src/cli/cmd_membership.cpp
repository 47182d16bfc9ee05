// rewind membership: membership scores and ROC metrics (a thin shell over rw::audit::run_membership).
#include <filesystem>
#include <iostream>

#include "cli.h"
#include "rewind/audit/membership.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"
#include "rewind/report/html.h"

namespace rw::cli {

namespace {

struct MembershipPaths {
  RecoveryLoss rloss;  ///< --recovery-loss --feature-net --feature-layer
  std::string generator, members, nonmembers, out, embedder, discriminator;
  std::vector<std::string> reference_generators;
  bool resume = false;
};

void bind(po::options_description& desc, MembershipPaths& p, audit::MembershipOptions& o) {
  desc.add_options()
      ("generator", po::value(&p.generator)->required(), "the GAN under attack")
      ("members", po::value(&p.members)->required(), "images known to be in its training set (manifest or folder)")
      ("nonmembers", po::value(&p.nonmembers)->required(), "images known not to be (manifest or folder)")
      ("out", po::value(&p.out)->required(), "output folder: scores.csv, identity_scores.csv, report.json, report.html, run.json")
      ("embedder", po::value(&p.embedder), "identity embedder (identity-nn, recon-identity and the identity-calibrated, -lira attacks)")
      ("reference-generator", po::value(&p.reference_generators)->composing(),
       "a GAN trained on data without these images; give it once per GAN (K >= 1: calibrated, lira, rmia, "
       "identity-calibrated, identity-lira, recon-identity-lira)")
      ("discriminator", po::value(&p.discriminator),
       "the GAN's discriminator (the discriminator attack): train gan's GENERATOR.disc, or TorchScript returning N logits")
      ("attacks", opt(&o.attacks), "which attacks (those whose models are missing are skipped)")
      ("samples", opt(&o.samples), "generated samples searched by identity-nn")
      ("crop", opt(&o.crop), kPipelineCropHelp)
      ("per-identity", opt(&o.per_identity), "images per identity used (0 = all)")
      ("recover-max", opt(&o.recover_max), "images per class that get latent recovery (seeded draw; 0 = all)")
      ("bootstrap", opt(&o.boot), "bootstrap resamples for the 95% intervals: 0 (none) or >= 50")
      ("embed-batch", opt(&o.embed_batch), "images per embedder pass")
      ("seed", opt(&o.seed), "seed (samples, restarts, draws, bootstrap)")
      ("resume", po::bool_switch(&p.resume), "continue the stages an interrupted run left in --out (same options)");
  add_recovery_flags(desc, o.invert, p.rloss);
}

struct Models {
  std::unique_ptr<models::Generator> g;
  std::vector<std::unique_ptr<models::Generator>> refs;
  audit::References ref_ptrs() const {
    audit::References out;
    for (const auto& r : refs) out.push_back(r.get());
    return out;
  }
  std::unique_ptr<models::Embedder> e;
  std::shared_ptr<models::Discriminator> d;
  io::Manifest members, nonmembers;
  /// `o` with the loaded discriminator.
  audit::MembershipOptions with(audit::MembershipOptions o) const {
    o.discriminator = d;
    return o;
  }
};
Models load(const MembershipPaths& p) {
  Models m;
  m.g = models::load_generator(p.generator);
  if (!p.embedder.empty()) m.e = models::load_embedder(p.embedder);
  if (!p.discriminator.empty()) m.d = models::load_discriminator(p.discriminator, m.g->output_shape());
  for (const auto& r : p.reference_generators) m.refs.push_back(models::load_generator(r));
  m.members = data::open_data(p.members);
  m.nonmembers = data::open_data(p.nonmembers);
  return m;
}

/// The whole analysis in this process (or its last step after a sharded run: every stage kept).
void membership_whole(const MembershipPaths& p, const audit::MembershipOptions& o, io::RunRecord& record) {
  audit::MembershipResult r;
  if (p.resume) refuse_finished_with_other_options(p.out, "membership", record.options(), ".stages");
  run_and_record(record, p.out + "/run.json", [&] {
    auto m = load(p);
    r = audit::run_membership(*m.g, m.ref_ptrs(), m.e.get(), m.members, m.nonmembers, m.with(o), progress_fn(), &record);
    progress_done();
    audit::write_membership_report(p.out, r, m.members, m.nonmembers, o, p.generator, record.options());
    nlohmann::json j;
    for (const auto& a : r.metrics) j[a.level][a.attack] = {{"auc", a.m.auc.value}, {"members", a.m.members}, {"nonmembers", a.m.nonmembers}};
    record.results()["metrics"] = j;
    record.results()["skipped_attacks"] = r.skipped_attacks;
    record.results()["blind_baseline"] = {{"ran", r.blind.ran}, {"biased", r.blind.biased}, {"auc", r.blind.m.auc.value}};
    std::error_code ec;
    std::filesystem::remove_all(o.stage_dir, ec);  // finished: the stages are not needed any more
    std::filesystem::remove_all(p.out + "/.rounds", ec);
  });
  for (const auto& line : audit::membership_summary(r)) std::cout << line << "\n";
  std::cout << "wrote " << p.out << "/report.html, scores.csv, identity_scores.csv, report.json\n";
}

int membership_cmd(const Args& args) {
  CommonOptions common;
  MembershipPaths p;
  audit::MembershipOptions o;
  ShardFlags sf;
  po::options_description desc("membership options");
  bind(desc, p, o);
  add_shard_flags(desc, sf);
  if (!parse_command("rewind membership --generator G --members M --nonmembers M --out DIR [options]", args, desc, common))
    return 0;
  o.attacks = audit::canonical_attacks(o.attacks);  // one spelling in run.json: the order given is not a change
  o.invert.seed = o.seed;
  apply_recovery_loss(p.rloss, o.invert);
  o.stage_dir = p.out + "/.stages";
  o.resume = p.resume;
  io::RunRecord record("membership");
  record.set_seed(o.seed);
  record.options() = {{"generator", p.generator}, {"members", p.members}, {"nonmembers", p.nonmembers},
                      {"embedder", p.embedder}, {"reference_generators", p.reference_generators}, {"discriminator", p.discriminator}, {"attacks", o.attacks},
                      {"samples", o.samples}, {"per_identity", o.per_identity}, {"recover_max", o.recover_max},
                      {"embed_batch", o.embed_batch}, {"bootstrap", o.boot}, {"seed", o.seed}};
  record.options().update(recovery_options(p.rloss, o.invert));
  record.options()["crop"] = o.crop;
  io::ensure_dir(p.out);
  if (!sharded(sf)) {
    membership_whole(p, o, record);
    return 0;
  }
  // sharded: two rounds (membership.h); the merge of round 2 writes the report
  run_rounds(sf, {"membership", p.out, &record, 2, [&] { return audit::membership_next_round(o.stage_dir); },
                  [&](const dist::Shard& s, const std::string& stages, int64_t) {
                    auto m = load(p);
                    audit::run_membership_shard(*m.g, m.ref_ptrs(), m.e.get(), m.members, m.nonmembers, m.with(o), s, stages,
                                                progress_fn(), &record);
                  },
                  [&](const std::vector<std::string>& dirs, int64_t) {
                    auto m = load(p);
                    audit::merge_membership_shards(*m.g, m.ref_ptrs(), m.e.get(), m.members, m.nonmembers, m.with(o), dirs);
                  },
                  [&](io::RunRecord& merged) {
                    o.resume = true;
                    membership_whole(p, o, merged);
                  }});
  return 0;
}

}  // namespace

int cmd_membership(const Args& args) { return membership_cmd(args); }

}  // namespace rw::cli
