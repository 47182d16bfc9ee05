// The dataset owner's audit: which of my identities does this GAN reproduce?
//
//   1. samples: `samples` images are drawn from the generator, embedded and dropped (SampleBank);
//   2. identity-nn: each of the owner's images is searched against them; an identity's evidence is
//      its best similarity to any sample;
//   3. threshold: `far` is family-wise, for the whole run: the chance that ANY identity not in
//      the training set is called "leaks". Each of the owner's images is one test (its best
//      similarity over all samples), so each test gets far / images (Bonferroni). The threshold
//      is taken from a null distribution: with reference images (people certainly not trained
//      on), their own best similarity to a sample; else the owner's impostor pairs, one
//      comparison each, at far / (images x samples). It is "resolved" only when the null has
//      enough scores to certify that rate with 95% confidence (about 3 / rate of them, the
//      rule of three; mia::max_exceedances);
//   4. latent recovery (supporting evidence, the expensive part): the `recover_top` identities
//      ranked highest by identity-nn plus a seeded random `recover_control` of the others
//      (the calibration sample of the robust z), `per_identity` images each; recover_top < 0 = all.
//
// The verdict for an identity above the threshold is "leaks" only when the threshold is
// resolved; otherwise "inconclusive", with the reason and what to add. Below it: "no evidence".
// Memory: embeddings of the dataset, the reference and the samples, and per-identity rows.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rewind/audit/stages.h"
#include "rewind/core/progress.h"
#include "rewind/ganinv/invert.h"
#include "rewind/io/manifest.h"
#include "rewind/io/run_record.h"
#include "rewind/mia/metrics.h"
#include "rewind/models/models.h"

namespace rw::audit {

struct AuditOptions {
  int64_t samples = 1000;        ///< generated samples searched for each identity
  std::string crop = "center";   ///< how images are cut to the generator's size: center | none | detect | dlib
                                 ///< (audit::pipeline_loader; dlib for real photos)
  double far = 0.05;             ///< family-wise false-accusation rate of the run (any identity wrongly "leaks"), in (0, 1)
  int64_t per_identity = 1;      ///< images per identity that get latent recovery
  int64_t recover_top = 256;     ///< identities (highest identity-nn first) that get latent recovery; < 0 = all
  int64_t recover_control = 64;  ///< further identities drawn at random (seeded) from the rest: the recovery z's calibration
  int64_t top = 24;              ///< identities shown with pictures in the report
  int64_t embed_batch = 128;     ///< images per embedder pass (also the stream's batch)
  uint64_t seed = 1;             ///< samples, restarts and the control draw
  ganinv::InvertOptions invert;  ///< latent recovery (its defaults: 2 restarts x 200 Adam steps)
  double fit_max_auc = 0.95;     ///< domain fit: a linear probe telling samples from the owner's images with AUC
                                 ///< above this (95% interval's lower end) is a mismatch: verdicts turn inconclusive
  std::string stage_dir;         ///< where finished stages are kept ("" = no cache); the CLI uses OUT/.stages
  bool resume = false;           ///< continue the stages kept in stage_dir (same options and inputs)
  /// The GAN's discriminator, when released with it (null: not used). Its logits for your images and
  /// the reference's, scored in the embedding pass, give a second dataset-level test and per-identity
  /// supporting evidence (Hayes et al. 2019); verdicts stay identity-nn's.
  std::shared_ptr<models::Discriminator> discriminator;

};

/// How the verdict threshold was set.
struct Threshold {
  double value = 0;
  bool resolved = true;              ///< false when the null cannot certify the per-test rate (value is then its maximum)
  std::string method;                ///< one sentence for the report
  std::string reason;                ///< when not resolved: why, and what to add
  double far = 0;                    ///< family-wise rate asked for
  double per_test = 0;               ///< the rate each null score is held to (far / tests [/ samples])
  int64_t tests = 0;                 ///< images tested (each: best similarity over the samples)
  int64_t null_scores = 0;           ///< reference images, or impostor pairs without a reference
  int64_t null_needed = 0;           ///< the fewest null scores that resolve per_test
  std::vector<double> reference_scores;  ///< per reference image: best similarity to a sample (empty without reference)
};

/// An identity's verdict.
enum class Verdict { kNoEvidence, kInconclusive, kLeaks };
const char* verdict_name(Verdict v);  ///< "no-evidence" | "inconclusive" | "leaks"
/// How the reports show a verdict to people: "LEAKS" | "inconclusive" | "no evidence" (labelled
/// pictures colour lines by these words), and the same as coloured HTML.
const char* verdict_label(Verdict v);
std::string verdict_html(Verdict v);

struct IdentityEvidence {
  std::string identity;
  int member = -1;                   ///< ground truth when the manifest has it (1 / 0), else -1
  double nn_similarity = -2;         ///< best similarity of any of its images to any sample
  size_t nn_row = 0;                 ///< manifest row of that image
  int64_t nn_sample = -1;            ///< index of that sample (regenerate with SampleBank::images)
  std::optional<double> recovery_error;    ///< mean latent-recovery MSE over its recovered images
  std::optional<double> recovery_z;        ///< robust z of that error among all recovered images (higher = better rebuilt)
  std::optional<double> recon_similarity;  ///< identity similarity of the reconstruction to the image
  std::optional<size_t> recovered_row;     ///< first recovered image (its reconstruction is shown)
  /// With a discriminator and a reference: the share of reference images whose logit is below the
  /// best logit of this identity's images (near 1 = the discriminator calls it real as it calls its
  /// training images; supporting evidence, not a verdict).
  std::optional<double> disc_percentile;
  int64_t recovered_index = -1;      ///< position in AuditResult::recovery
  Verdict verdict = Verdict::kNoEvidence;
  bool leaks = false;                ///< verdict == kLeaks
};

struct GroundTruth {
  int64_t members = 0, nonmembers = 0, members_flagged = 0, nonmembers_flagged = 0;
  double auc_identity_nn = 0, auc_recovery = 0;  ///< recovery AUC over identities with recovery evidence
  int64_t recovery_identities = 0;
  mia::MiaMetrics identity_nn, recovery;  ///< member vs non-member identities: ROC, its band, intervals (recovery:
                                          ///< those with recovery evidence; empty when a class has none)
};

struct AuditResult {
  std::vector<IdentityEvidence> identities;  ///< ranked: leaking first, then by nn_similarity
  Threshold threshold;
  int64_t images = 0;                        ///< dataset images loaded
  int64_t leaking = 0;                       ///< verdict "leaks"
  int64_t inconclusive = 0;                  ///< above an unresolved threshold, or above it under a domain mismatch
  DomainFit fit;                             ///< do the samples and the owner's images look like one domain?
  bool domain_mismatch = false;              ///< fit.probe ran and its AUC's lower end > fit_max_auc
  int64_t recovered_identities = 0;          ///< identities with recovery evidence
  std::optional<GroundTruth> truth;          ///< when the manifest has member labels for both classes
  /// The dataset-level test (with --reference): is the first image of each of your identities closer
  /// to the generator's samples than the first image of each reference identity? One-sided
  /// Mann-Whitney U on identity-nn similarity (mia::set_test); not run without a reference, with
  /// fewer than 20 identities on either side, or under a domain mismatch (reason said).
  mia::SetTest set_test;
  /// Said after the test's result when a side has no identity labels (every image its own name, as a
  /// flat folder imports): several photos of one person there would count as independent people.
  std::string set_test_caveat;
  /// The same test on the discriminator's logits (with a discriminator and a reference; else not
  /// run, reason said), and both tests combined (Bonferroni over the two, valid under dependence;
  /// NaN unless both ran).
  mia::SetTest disc_test;
  double combined_pvalue = std::numeric_limits<double>::quiet_NaN();
  Recovery recovery;                         ///< latents of the recovered rows (pictures, resume)
  std::vector<data::Skipped> skipped;
  std::string generator, embedder;           ///< describe() of each
};

/// The dataset-level test in one sentence: its p-value and effect size, or why it did not run.
std::string set_test_line(const AuditResult& r);

/// Runs the audit. `reference` may be null (threshold from impostor pairs). Skipped images are
/// also added to `record` when given. Throws Error{kUsage} naming the AuditOptions field for bad
/// options, Error{kInput} when no image of the dataset loads, Error{kCancelled} when progress
/// returns false (finished stages are kept in stage_dir).
AuditResult run(models::Generator& g, models::Embedder& e, const io::Manifest& dataset, const io::Manifest* reference,
                const AuditOptions& o, const ProgressFn& progress = {}, io::RunRecord* record = nullptr);

/// What the stages are keyed by: options, generator, embedder and the manifests' hashes.
nlohmann::json audit_fingerprint(const models::Generator& g, const models::Embedder& e, const io::Manifest& dataset,
                                 const io::Manifest* reference, const AuditOptions& o);

/// Sharded audits (several processes or machines) work in two rounds, each run as N shards and
/// then merged into o.stage_dir:
///  1. the shard's dataset rows and reference rows (row % N == I), and its samples (index % N
///     == I), embedded;
///  2. with round 1 merged, the latent recovery of the shard's rows among those chosen for
///     recovery (the choice follows from the merged round 1, so it is the same in every shard;
///     each target keeps the seed of its position in that list).
/// Once round 2 is merged, run() with resume = true finds every stage done and gives the result
/// of a one-process run (see the README for where the arithmetic allows byte equality).
/// The round o.stage_dir calls for: 1, 2, or 0 when both are merged.
int64_t audit_next_round(const std::string& stage_dir);
/// Runs `shard`'s part of the next round into part_stage_dir (its own stage cache, resumable with
/// o.resume). Returns the round it ran.
int64_t run_shard(models::Generator& g, models::Embedder& e, const io::Manifest& dataset, const io::Manifest* reference,
                  const AuditOptions& o, const data::Shard& shard, const std::string& part_stage_dir,
                  const ProgressFn& progress = {}, io::RunRecord* record = nullptr);
/// Merges the next round's parts (their stage folders, shard I at position I) into o.stage_dir.
/// A part missing a stage, unfinished, or made with other options is Error{kInput} naming it.
int64_t merge_shards(models::Generator& g, models::Embedder& e, const io::Manifest& dataset, const io::Manifest* reference,
                     const AuditOptions& o, const std::vector<std::string>& part_stage_dirs, const ProgressFn& progress = {});

/// The verdict threshold from identity-nn similarities (exposed for tests), for `tests` images
/// each searched against `samples` samples, family-wise rate `far`:
///  - with reference images (`reference_scores`: each one's best similarity to a sample): the
///    value at most k of them exceed, k the most exceedances that still certify far / tests;
///  - without: the same on the dataset's own impostor pairs (`emb`, `labels`) at
///    far / (tests x samples) per pair.
Threshold verdict_threshold(const std::vector<double>* reference_scores, const at::Tensor& emb,
                            const std::vector<int64_t>& labels, double far, int64_t samples, int64_t tests);

/// The value at most k of `null` (1-D scores of tests known to be negative) exceed, k the most
/// exceedances that still certify `per_test` with 95% confidence; unresolved (k = -1, value = the
/// null's maximum) when there are too few of them.
struct Certified {
  double value = 0;
  bool resolved = false;
  int64_t k = -1;
};
Certified certified_threshold(const at::Tensor& null, double per_test);

/// The verdict for one best similarity under `t`.
Verdict verdict_for(double similarity, const Threshold& t);

/// The report's first line: what was tested, against what, at what error rate, and the verdict
/// ("N of M identities LEAK", or "INCONCLUSIVE" with the reason and what to add).
std::string audit_headline(const AuditResult& r, const AuditOptions& o);
/// The domain-fit line: the warning when the samples and the owner's images are different
/// domains to the embedder, else the measured fit.
std::string fit_line(const AuditResult& r, const AuditOptions& o);

/// Writes report.json, report.csv, report.html, samples.png and top.png into `out` (pictures are
/// reloaded from the manifest rows, regenerated from the sample indices and re-rendered from the
/// recovered latents). `options_json` is the run's resolved options.
void write_audit_report(const std::string& out, const AuditResult& r, const AuditOptions& o, models::Generator& g,
                        const io::Manifest& dataset, const std::string& dataset_name,
                        const nlohmann::json& options_json);

}  // namespace rw::audit
