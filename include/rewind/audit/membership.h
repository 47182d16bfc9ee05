// Membership analysis with ground truth: members (images in the GAN's training set) against
// non-members, per image and per identity, for each attack:
//   recovery        -MSE of the best latent-only reconstruction (Webster et al. 2019)
//   calibrated      mean MSE under K reference GANs trained on other data - MSE under the target GAN (GAN-Leaks)
//   lira            offline LiRA on log recovery errors against the K references (Carlini et al. 2022)
//   rmia            RMIA's likelihood ratio of the target GAN to the references (Zarifzadeh et al. 2024)
//                   (the three: mia::calibrated_scores)
//   identity-nn     best identity similarity to `samples` generated samples (Webster et al. 2021)
//   recon-identity  identity similarity of the target to its own reconstruction
//   identity-calibrated  closest-sample similarity under the target GAN minus its mean under the K
//                   references' samples (the same count, the same seeds): how much closer this GAN
//                   comes to the person than GANs that never saw them
//   identity-lira   offline LiRA on the closest-sample distances (1 - similarity) against the references
//                   (the two: mia::calibrated_scores on distances; no latent recovery needed)
//   recon-identity-lira  offline LiRA on the reconstruction's identity distance (1 - recon-identity
//                   similarity) against the same image's under each reference's reconstruction
//   discriminator   the GAN's own discriminator's logit for the image (Hayes et al. 2019, LOGAN white-box):
//                   a discriminator trained on a small set learns to call its training images real; needs
//                   the discriminator (train gan writes GENERATOR.disc; released StyleGAN pickles hold D)
// A score is "higher = more likely a member". Latent recovery is the expensive part: at most
// `recover_max` images per class get it (a seeded draw; 0 = all); the recovery-based attacks are
// evaluated on those images only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rewind/audit/stages.h"
#include "rewind/models/discriminator.h"
#include "rewind/mia/metrics.h"

namespace rw::report {
class HtmlReport;
}

namespace rw::audit {

struct MembershipOptions {
  std::string attacks = "recovery,calibrated,lira,rmia,identity-nn,recon-identity,identity-calibrated,identity-lira,recon-identity-lira,discriminator";  ///< comma list; attacks whose models are missing are skipped
  int64_t samples = 1000;      ///< generated samples searched by identity-nn
  std::string crop = "center";   ///< how images are cut to the generator's size: center | none | detect | dlib
                                 ///< (audit::pipeline_loader; dlib for real photos)
  int64_t per_identity = 0;    ///< images per identity used (first ones in manifest order); 0 = all
  int64_t recover_max = 0;     ///< images per class that get latent recovery (seeded draw); 0 = all
  int boot = 1000;             ///< bootstrap resamples for the confidence intervals: 0 (none) or >= 50
  int64_t embed_batch = 128;   ///< images per embedder pass
  uint64_t seed = 1;           ///< samples, restarts, draws, bootstrap
  ganinv::InvertOptions invert;  ///< latent recovery (its defaults: 2 restarts x 200 Adam steps)
  std::string stage_dir;       ///< where finished stages are kept ("" = no cache)
  bool resume = false;         ///< continue the stages kept in stage_dir
  /// The GAN's discriminator for the discriminator attack (null: that attack is skipped, the reason said).
  std::shared_ptr<models::Discriminator> discriminator;

};

/// One image of either set (its path and identity are the manifest's: members.entries[row] or
/// nonmembers.entries[row]; per-image strings are not copied, they are most of the memory at 10^5 images).
struct MembershipRow {
  int label = 0;          ///< 1 member, 0 non-member
  size_t row = 0;         ///< row in its manifest
  int64_t identity = -1;  ///< its MembershipResult::identity_rows index: image-level intervals resample
                          ///< identities (a cluster bootstrap), the blind baseline's folds keep them whole
};

struct AttackMetrics {
  std::string attack, level;   ///< level: image | identity
  mia::MiaMetrics m;
  double median_member = NAN, median_nonmember = NAN, mre_gap = NAN;  ///< error attacks, image level
};

struct MembershipResult {
  std::vector<MembershipRow> rows;
  std::vector<std::string> attacks;                       ///< attacks that ran, sorted
  std::map<std::string, std::vector<double>> raw, score;  ///< attack -> per row (NaN: not measured for that row)
  struct IdentityRow { std::string identity; int label = 0; int64_t images = 0; };
  std::vector<IdentityRow> identity_rows;
  std::map<std::string, std::vector<double>> identity_score;  ///< attack -> per identity row
  std::vector<AttackMetrics> metrics;
  std::map<std::string, std::string> skipped_attacks;      ///< requested attack -> why it did not run
  bool one_image_per_identity = false;                     ///< the identity level then repeats the image level
  mia::BlindBaseline blind;  ///< validity guard: image statistics alone (no GAN) separating the two sets
  std::vector<data::Skipped> skipped;
  int64_t members = 0, nonmembers = 0;
};

/// Reference generators: GANs trained on data without the targets (K >= 0; calibrated, lira and rmia
/// need K >= 1 and are skipped without).
using References = std::vector<models::Generator*>;

/// MembershipOptions::attacks checked (an unknown name: Error{kUsage}) and written one way: each name
/// once, sorted, so that "lira,recovery" and "recovery,lira" are the same run to --resume.
std::string canonical_attacks(const std::string& attacks);

/// `references` may be empty and `embedder` null (their attacks are then skipped). Memory: the
/// images are streamed; each scanned image keeps its embedding (d floats) and image statistics,
/// from which identity-nn is scored against the sample bank in chunks.
MembershipResult run_membership(models::Generator& g, const References& references, models::Embedder* embedder,
                                const io::Manifest& members, const io::Manifest& nonmembers, const MembershipOptions& o,
                                const ProgressFn& progress = {}, io::RunRecord* record = nullptr);

/// Sharded membership runs (several processes or machines) work in two rounds, as audits do
/// (audit.h), each run as N shards and merged into o.stage_dir:
///  1. the shard's blocks of each class's chosen rows (positions dealt in blocks of o.embed_batch): image
///     statistics and embeddings; its blocks of the samples (index dealt in blocks of kSampleBatch);
///  2. with round 1 merged, the latent recovery of the shard's blocks of the rows drawn for it
///     (seeded by their position in the whole list, as one process seeds them).
/// Then run_membership with o.resume = true on o.stage_dir computes the scores, the metrics and
/// the report from the kept stages; what it writes equals a one-process run when every process
/// runs the same number of threads.
int64_t membership_next_round(const std::string& stage_dir);
/// Runs `shard`'s part of the next round into part_stage_dir (resumable with o.resume). Returns the round.
int64_t run_membership_shard(models::Generator& g, const References& references, models::Embedder* embedder,
                             const io::Manifest& members, const io::Manifest& nonmembers, const MembershipOptions& o,
                             const data::Shard& shard, const std::string& part_stage_dir, const ProgressFn& progress = {},
                             io::RunRecord* record = nullptr);
/// Merges the next round's parts (their stage folders, shard I at position I) into o.stage_dir.
int64_t merge_membership_shards(models::Generator& g, const References& references, models::Embedder* embedder,
                                const io::Manifest& members, const io::Manifest& nonmembers,
                                const MembershipOptions& o, const std::vector<std::string>& part_stage_dirs,
                                const ProgressFn& progress = {});

/// One line per image-level attack (AUC with interval and p-value, TPR at the lowest FPR the
/// non-members resolve, n members / non-members) and one per attack that did not run, with why.
std::vector<std::string> membership_summary(const MembershipResult& r);

/// scores.csv (written as it is formatted, not held), identity_scores.csv, report.json, report.html.
/// `members` / `nonmembers` are the manifests `r` was computed from.
void write_membership_report(const std::string& out, const MembershipResult& r, const io::Manifest& members,
                             const io::Manifest& nonmembers, const MembershipOptions& o,
                             const std::string& generator_name, const nlohmann::json& options_json);

/// The ROC and log-log ROC plots (Vega, with the static SVG fallback) of named metrics, each curve
/// with its bootstrap band; used by the membership and the audit reports.
void roc_plots(report::HtmlReport& html, const std::vector<std::pair<std::string, const mia::MiaMetrics*>>& rocs);

}  // namespace rw::audit
