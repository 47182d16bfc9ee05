// rewind compare: both directions (GAN outputs and split activations) on the same people
// (a thin shell over rw::audit::run_compare).
#include <filesystem>
#include <iostream>

#include "cli.h"
#include "rewind/audit/compare.h"
#include "rewind/audit/demo.h"
#include "rewind/core/error.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"
#include "rewind/models/native.h"

namespace rw::cli {

namespace {

struct ComparePaths {
  RecoveryLoss rloss;  ///< --recovery-loss --feature-net --feature-layer
  std::string generator, classifier, dataset, embedder, reference, out = "out/compare";
};

void bind(po::options_description& desc, ComparePaths& p, audit::CompareOptions& o) {
  desc.add_options()
      ("generator", po::value(&p.generator), "the GAN trained on the people (omit all model/data options for the demo)")
      ("classifier", po::value(&p.classifier), "the split classifier used by the same people")
      ("dataset", po::value(&p.dataset), "the people's images: manifest or folder (identity = person)")
      ("embedder", po::value(&p.embedder), "identity embedder")
      ("reference", po::value(&p.reference), "images of people not in the GAN's training set (GAN verdict threshold)")
      ("out", opt(&p.out), "output folder: report.html, report.json, report.csv, run.json")
      ("splits", opt(&o.splits), "split stages attacked (comma list, or all)")
      ("defense", opt(&o.defenses), "defences compared on the split side (comma list: none, noise=S, quant=B, dropout=P)")
      ("samples", opt(&o.samples), "generated samples searched (GAN side)")
      ("crop", opt(&o.crop), kPipelineCropHelp)
      ("far", opt(&o.far), "family-wise false-exposure rate of each direction (as audit --far)")
      ("wb-steps", opt(&o.wb_steps), "white-box inversion: optimiser steps per split")
      ("embed-batch", opt(&o.embed_batch), "images per embedder pass")
      ("pictures", opt(&o.pictures), "identities shown with pictures in report.html")
      ("seed", opt(&o.seed), "seed")
      ("resume", po::bool_switch(&o.resume), "continue the stages an interrupted run left in --out (same options)");
  add_recovery_flags(desc, o.invert, p.rloss);
}

std::vector<std::string> class_names_of(const std::string& classifier) {
  if (!models::is_native(classifier)) return {};
  auto arch = models::read_native_arch(classifier);
  return arch.contains("class_names") ? arch["class_names"].get<std::vector<std::string>>() : std::vector<std::string>{};
}

int compare_cmd(const Args& args) {
  CommonOptions common;
  ComparePaths p;
  audit::CompareOptions o;
  po::options_description desc("compare options");
  bind(desc, p, o);
  if (!parse_command("rewind compare [--generator G --classifier C --dataset M --embedder E [--reference M]] [options]\n"
                     "  with no model/data options: the embedded demo (synthetic identities, shipped demo models)",
                     args, desc, common))
    return 0;
  const bool demo = p.generator.empty() && p.classifier.empty() && p.dataset.empty();
  RW_CHECK(demo || (!p.generator.empty() && !p.classifier.empty() && !p.dataset.empty() && !p.embedder.empty()), Usage,
           "compare needs --generator, --classifier, --dataset and --embedder together (or none for the embedded demo)");
  o.invert.seed = o.seed;
  apply_recovery_loss(p.rloss, o.invert);
  o.stage_dir = p.out + "/.stages";
  io::ensure_dir(p.out);
  io::RunRecord record(demo ? "compare (embedded demo)" : "compare");
  record.set_seed(o.seed);
  std::vector<std::string> summary;
  run_and_record(record, p.out + "/run.json", [&] {
    if (demo) {
      auto d = audit::prepare_demo(demo_dir(), p.out + "/demo-data", progress_fn());
      progress_done();
      p.generator = d.generator, p.embedder = d.embedder, p.dataset = d.dataset, p.reference = d.reference;
      p.classifier = d.classifier;
    }
    record.options() = {{"generator", p.generator}, {"classifier", p.classifier}, {"dataset", p.dataset},
                        {"embedder", p.embedder}, {"reference", p.reference}, {"splits", o.splits},
                        {"defense", o.defenses}, {"samples", o.samples}, {"far", o.far}, {"wb_steps", o.wb_steps},
                        {"embed_batch", o.embed_batch}, {"seed", o.seed}, {"demo", demo}};
    record.options().update(recovery_options(p.rloss, o.invert));
    record.options()["crop"] = o.crop;
    // --resume on a finished compare (its stages are gone) would start over and replace it
    if (o.resume) refuse_finished_with_other_options(p.out, demo ? "compare (embedded demo)" : "compare", record.options(), ".stages");
    auto g = models::load_generator(p.generator);
    auto e = models::load_embedder(p.embedder);
    auto c = models::load_classifier(p.classifier);
    auto dataset = data::open_data(p.dataset);
    io::Manifest reference;
    if (!p.reference.empty()) reference = data::open_data(p.reference);
    auto r = audit::run_compare(*g, *e, *c, dataset, p.reference.empty() ? nullptr : &reference, class_names_of(p.classifier),
                                o, progress_fn(), &record);
    progress_done();
    summary = audit::write_compare_report(p.out, r, o, *g, dataset, record.options());
    record.results()["gan"] = {{"identities", r.identities.size()}, {"leaking", r.gan_leaking}, {"threshold", r.gan_threshold.value}};
    for (const auto& cl : r.cells)
      record.results()["split"].push_back({{"split", cl.split}, {"defense", cl.defense}, {"exposed", cl.exposed}, {"control", cl.control}});
  });
  std::error_code ec;
  std::filesystem::remove_all(o.stage_dir, ec);  // finished: the stages are not needed any more
  for (const auto& l : summary) std::cout << l << "\n";
  std::cout << "report: " << p.out << "/report.html (also report.json, report.csv)\n";
  return 0;
}

}  // namespace

int cmd_compare(const Args& args) { return compare_cmd(args); }

}  // namespace rw::cli
