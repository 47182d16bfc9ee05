// rewind audit: the dataset owner's report (a thin shell over rw::audit::run).
#include <filesystem>
#include <iostream>

#include "cli.h"
#include "rewind/audit/audit.h"
#include "rewind/audit/demo.h"
#include "rewind/core/error.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"
#include "rewind/report/html.h"

namespace rw::cli {

namespace {

struct AuditPaths {
  RecoveryLoss rloss;  ///< --recovery-loss --feature-net --feature-layer
  std::string generator, dataset, out = "out/audit", embedder, reference, discriminator;
  bool resume = false;
};

void bind(po::options_description& desc, AuditPaths& p, audit::AuditOptions& o) {
  desc.add_options()
      ("generator", po::value(&p.generator), "the released GAN (omit all data options for the embedded demo)")
      ("dataset", po::value(&p.dataset), "the owner's images: manifest or folder (identity = person)")
      ("embedder", po::value(&p.embedder), "identity embedder (required with --generator)")
      ("reference", po::value(&p.reference),
       "images of people certainly NOT in the training set (same domain); sets the verdict threshold at --far. "
       "Without it the threshold comes from impostor pairs in --dataset, which resolve a family-wise FAR only for very large datasets")
      ("discriminator", po::value(&p.discriminator),
       "the GAN's discriminator, when released with it (train gan's GENERATOR.disc, or TorchScript returning N logits): "
       "a second dataset-level test and per-identity evidence; needs --reference")
      ("out", opt(&p.out), "output folder: report.html, report.json, report.csv, samples.png, top.png (your image | closest sample | reconstruction), run.json")
      ("samples", opt(&o.samples), "generated samples searched for each identity")
      ("crop", opt(&o.crop), kPipelineCropHelp)
      ("far", opt(&o.far), "family-wise false-accusation rate: the chance that any identity not in the training set is called 'leaks'")
      ("per-identity", opt(&o.per_identity), "images per identity to invert (latent recovery evidence)")
      ("recover-top", opt(&o.recover_top), "identities (highest identity-nn first) that get latent recovery; -1 = all")
      ("recover-control", opt(&o.recover_control), "further identities drawn at random from the rest for latent recovery (the z's calibration)")
      ("top", opt(&o.top), "identities shown with pictures in report.html")
      ("embed-batch", opt(&o.embed_batch), "images per embedder pass")
      ("seed", opt(&o.seed), "seed (samples, restarts, control draw)")
      ("resume", po::bool_switch(&p.resume), "continue the stages an interrupted run left in --out (same options)");
  add_recovery_flags(desc, o.invert, p.rloss);
}

nlohmann::json options_json(const AuditPaths& p, const audit::AuditOptions& o, bool demo) {
  nlohmann::json j = {{"generator", p.generator}, {"dataset", p.dataset}, {"embedder", p.embedder}, {"reference", p.reference},
          {"discriminator", p.discriminator}, {"samples", o.samples}, {"far", o.far}, {"per_identity", o.per_identity}, {"recover_top", o.recover_top},
          {"recover_control", o.recover_control}, {"embed_batch", o.embed_batch}, {"seed", o.seed}, {"demo", demo}};
  j.update(recovery_options(p.rloss, o.invert));
  j["crop"] = o.crop;
  return j;
}

/// The whole audit in this process (or its last step after a sharded run: every stage kept).
void audit_whole(AuditPaths& p, audit::AuditOptions& o, io::RunRecord& record, bool demo, audit::AuditResult& r) {
  if (p.resume && !demo) refuse_finished_with_other_options(p.out, "audit", record.options(), ".stages");
  run_and_record(record, p.out + "/run.json", [&] {
    if (demo) {
      auto d = audit::prepare_demo(demo_dir(), p.out + "/demo-data", progress_fn());
      progress_done();
      p.generator = d.generator, p.embedder = d.embedder, p.dataset = d.dataset, p.reference = d.reference;
      record.mark("demo data");
      record.options() = options_json(p, o, demo);
    }
    auto g = models::load_generator(p.generator);
    auto e = models::load_embedder(p.embedder);
    if (!p.discriminator.empty()) o.discriminator = models::load_discriminator(p.discriminator, g->output_shape());
    auto dataset = data::open_data(p.dataset);
    io::Manifest reference;
    if (!p.reference.empty()) reference = data::open_data(p.reference);
    r = audit::run(*g, *e, dataset, p.reference.empty() ? nullptr : &reference, o, progress_fn(), &record);
    progress_done();
    audit::write_audit_report(p.out, r, o, *g, dataset, p.dataset, record.options());
    record.results()["summary"] = {{"identities", r.identities.size()}, {"leaking", r.leaking}, {"inconclusive", r.inconclusive},
                                   {"threshold", r.threshold.value}, {"threshold_resolved", r.threshold.resolved},
                                   {"threshold_reason", r.threshold.reason},
                                   {"recovered_identities", r.recovered_identities}};
    if (r.truth) record.results()["ground_truth"] = {{"members_flagged", r.truth->members_flagged},
                                                     {"nonmembers_flagged", r.truth->nonmembers_flagged},
                                                     {"auc_identity_nn", r.truth->auc_identity_nn},
                                                     {"auc_recovery", r.truth->auc_recovery}};
    std::error_code ec;
    std::filesystem::remove_all(o.stage_dir, ec);  // finished: the stages are not needed any more
    std::filesystem::remove_all(p.out + "/.rounds", ec);
  });
  std::cout << audit::audit_headline(r, o) << "\n";
  if (r.domain_mismatch) std::cout << audit::fit_line(r, o) << "\n";
  std::cout << audit::set_test_line(r) << "\n";
  std::cout << "report: " << p.out << "/report.html (also report.json, report.csv)\n";
}

/// The sharded audit: two rounds (audit.h), the merge of round 2 writes the report.
void audit_rounds(const ShardFlags& sf, AuditPaths& p, audit::AuditOptions& o, io::RunRecord& record) {
  struct Loaded {
    std::unique_ptr<models::Generator> g;
    std::unique_ptr<models::Embedder> e;
    io::Manifest dataset, reference;
  };
  auto load = [&] {
    Loaded l{models::load_generator(p.generator), models::load_embedder(p.embedder), data::open_data(p.dataset), {}};
    if (!p.reference.empty()) l.reference = data::open_data(p.reference);
    if (!p.discriminator.empty()) o.discriminator = models::load_discriminator(p.discriminator, l.g->output_shape());
    return l;
  };
  run_rounds(sf, {"audit", p.out, &record, 2, [&] { return audit::audit_next_round(o.stage_dir); },
                  [&](const dist::Shard& s, const std::string& stages, int64_t) {
                    auto l = load();
                    audit::run_shard(*l.g, *l.e, l.dataset, p.reference.empty() ? nullptr : &l.reference, o, s, stages,
                                     progress_fn(), &record);
                  },
                  [&](const std::vector<std::string>& dirs, int64_t) {
                    auto l = load();
                    audit::merge_shards(*l.g, *l.e, l.dataset, p.reference.empty() ? nullptr : &l.reference, o, dirs);
                  },
                  [&](io::RunRecord& merged) {
                    o.resume = true;
                    audit::AuditResult r;
                    audit_whole(p, o, merged, false, r);
                  }});
}

int audit_cmd(const Args& args) {
  CommonOptions common;
  AuditPaths p;
  audit::AuditOptions o;
  ShardFlags sf;
  po::options_description desc("audit options");
  bind(desc, p, o);
  add_shard_flags(desc, sf);
  if (!parse_command("rewind audit [--generator G --dataset M --embedder E [--reference M]] [options]\n"
                     "  with no data options: the embedded demo (synthetic identities, shipped demo GAN)",
                     args, desc, common))
    return 0;
  const bool demo = p.generator.empty() && p.dataset.empty();
  RW_CHECK(demo || (!p.generator.empty() && !p.dataset.empty() && !p.embedder.empty()), Usage,
           "audit needs --generator, --dataset and --embedder together (or none of them for the embedded demo)");
  o.invert.seed = o.seed;
  apply_recovery_loss(p.rloss, o.invert);
  o.stage_dir = p.out + "/.stages";
  o.resume = p.resume;
  io::ensure_dir(p.out);
  io::RunRecord record(demo ? "audit (embedded demo)" : "audit");
  record.set_seed(o.seed);
  record.options() = options_json(p, o, demo);
  if (!sharded(sf)) {
    audit::AuditResult r;
    audit_whole(p, o, record, demo, r);
    return 0;
  }
  RW_CHECK(!demo, Usage, "the embedded demo runs in one process: shard the audit of your own data (--generator, --dataset, "
           "--embedder), or give --shard 0/1");
  audit_rounds(sf, p, o, record);
  return 0;
}

}  // namespace

int cmd_audit(const Args& args) { return audit_cmd(args); }

}  // namespace rw::cli
