// The building blocks the pipelines (membership, audit, compare) share: embedding a stream, a bank
// of generated samples embedded chunk by chunk, latent recovery of chosen manifest rows, and the
// stage cache that makes a pipeline resumable.
//
// Memory: embeddings [N, d], per-row scores and latents [N, D] stay; images live one batch at a
// time. The few pictures a report shows are reloaded by row (targets), regenerated from the sample
// seed and index (samples) or re-rendered from the recovered latent (reconstructions).
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rewind/core/progress.h"
#include "rewind/data/image_stream.h"
#include "rewind/ganinv/invert.h"
#include "rewind/io/manifest.h"
#include "rewind/mia/metrics.h"
#include "rewind/io/run_record.h"
#include "rewind/models/discriminator.h"
#include "rewind/models/models.h"

namespace rw::identity {
class IdentityIndex;
}

namespace rw::audit {

/// Embeddings of a streamed image set.
struct Embedded {
  at::Tensor emb;                     ///< [N_ok, d] L2-normalised
  std::vector<size_t> rows;           ///< manifest row of each embedding
  std::vector<data::Skipped> skipped; ///< items that could not be loaded
  at::Tensor disc;                    ///< [N_ok] float64 logits of a discriminator, scored in the same pass
                                      ///< (undefined when none was given)
};

/// Embeds every image of `stream` (batches as the stream delivers them); with `d`, also scores
/// each batch with it (Embedded::disc), so that the images are decoded once.
Embedded embed_stream(models::Embedder& e, data::ImageStream& stream, models::Discriminator* d = nullptr);

/// How the pipelines load an owner's image at the generator's size `shape` (their --crop):
/// "center" (a centred square, resized: prepared face crops; the default), "none" (the whole
/// image, resized), "detect" (OpenCV Haar) or "dlib" / "align" (dlib's detector and alignment) for
/// photos: the largest face; a photo without one is an Error{kInput} (a skipped item). Error{kUsage}
/// for another value.
data::Loader pipeline_loader(const models::ImageShape& shape, const std::string& crop);

/// Opens `manifest` as a stream at the generator's image size (pipeline_loader(shape, crop)),
/// batch `batch`, and embeds it. `stage` names the progress stage.
Embedded embed_manifest(models::Embedder& e, const io::Manifest& m, const models::ImageShape& shape,
                        const std::string& stage, const ProgressFn& progress, int64_t batch = 128,
                        const data::Shard& shard = {}, const std::string& crop = "center",
                        models::Discriminator* d = nullptr);
/// Counts the images a discriminator gave NaN (their logits are left out, said once as a warning
/// naming `what`); every logit NaN is Error{kModel}: the discriminator is damaged or not this GAN's.
void check_discriminator_logits(const at::Tensor& disc, const std::string& what);
/// Embedded parts of one image set (each from a shard) in manifest-row order.
Embedded merge_embedded(const std::vector<Embedded>& parts);

/// Generated samples, embedded in chunks; the images are dropped. Sample i is G(z_i) with z_i from
/// models::sample_latents(n, d, seed) (the samples of `rewind generate`).
class SampleBank {
 public:
  /// With a shard, only the samples i of `count` with shard.contains(i) (ascending): a part of
  /// the bank, which merge_shards interleaves back into the whole one.
  SampleBank(models::Generator& g, models::Embedder& e, int64_t count, uint64_t seed, const ProgressFn& progress,
             int64_t batch = 256, const data::Shard& shard = {});
  /// From embeddings made earlier (a resumed stage).
  SampleBank(at::Tensor embeddings, uint64_t seed);
  ~SampleBank();
  SampleBank(SampleBank&&) noexcept;

  int64_t count() const;
  uint64_t seed() const { return seed_; }
  const at::Tensor& embeddings() const { return emb_; }  ///< [count, d]
  /// Best sample per query [q, d]: similarity and sample index.
  void nearest(const at::Tensor& queries, std::vector<double>* sim, std::vector<int64_t>* sample) const;
  /// The images of samples `ids`, regenerated: [k, C, H, W].
  static at::Tensor images(models::Generator& g, uint64_t seed, const std::vector<int64_t>& ids);

 private:
  void build_index();
  at::Tensor emb_;
  uint64_t seed_ = 1;
  std::unique_ptr<identity::IdentityIndex> index_;
};

/// Best-restart latent recovery of some manifest rows (latent-only reconstructions).
struct Recovery {
  std::vector<size_t> rows;   ///< manifest rows recovered (those that loaded), in recovery order
  at::Tensor mse;             ///< [n] per-target MSE of G(latent) to the target (the recovery error)
  at::Tensor latents;         ///< [n, D]: the options' latent space, flattened (ganinv::render takes it)
  at::Tensor recon_emb;       ///< [n, d] embedding of G(latent); undefined without an embedder
  std::vector<data::Skipped> skipped;
  int64_t nan_resets = 0;
};

/// The advice of a StageCache holding a sharded run's merged stages: they are opened with resume
/// always, so "without --resume" would not help.
inline constexpr const char* kShardedRunAdvice =
    "every round of a sharded run and each --merge take the options and inputs of its round 1: rerun with those, or "
    "start the sharded run over in a new --out";

/// Where a pipeline keeps the finished work of its stages (OUT/.stages by default), so that a run
/// with resume = true continues instead of starting over. The fingerprint (options, model and
/// manifest hashes) must match; a different one is an error naming the folder, the first
/// differing option (as its flag) and `advice` (default: rerun with the same options, or without
/// --resume). dir "" = off.
class StageCache {
 public:
  StageCache(std::string dir, nlohmann::json fingerprint, bool resume, const std::string& advice = "");
  bool enabled() const { return !dir_.empty(); }
  /// Loads stage `name` (a tensor); false when it is not there.
  bool load(const std::string& name, at::Tensor* t) const;
  void save(const std::string& name, const at::Tensor& t) const;
  bool load_json(const std::string& name, nlohmann::json* j) const;
  void save_json(const std::string& name, const nlohmann::json& j) const;
  /// Removes the folder (after the pipeline wrote its final outputs).
  void clear() const;
  /// Keeps a stamp of the files each manifest lists (their sizes and modification times, by stat,
  /// no reads) beside the stages; when one is kept already (a resume), a different stamp is an
  /// Error{kUsage} naming the manifest whose images changed, so that a resume never mixes results
  /// of an image's old and new contents. Local only: it is not part of the fingerprint, since a
  /// copy of the same data on another machine (a shard's) has other times. Call after construction.
  void guard_files(const std::vector<std::pair<std::string, const io::Manifest*>>& manifests) const;

 private:
  std::string dir_;
};

/// Saves / restores an Embedded stage (embeddings, rows, skipped) in the cache.
bool load_embedded(const StageCache& c, const std::string& name, Embedded* out);
void save_embedded(const StageCache& c, const std::string& name, const Embedded& e);

/// Stage `name` of `cache` when it is kept there, else make() kept under that name (the pipelines'
/// embedded image sets: a resumed run does not embed them again).
Embedded kept_embedded(const StageCache& cache, const std::string& name, const std::function<Embedded()>& make);
/// The sample bank kept in `cache` as stage `name`, else generated (SampleBank(g, e, count,
/// seed, progress)) and kept: a resumed or merged run does not generate it again.
std::unique_ptr<SampleBank> kept_sample_bank(const StageCache& cache, models::Generator& g, models::Embedder& e,
                                             int64_t count, uint64_t seed, const ProgressFn& progress,
                                             const std::string& name = "samples");

/// The pieces stages are saved as: manifest rows as a [n] int64 tensor, skipped items as json.
at::Tensor rows_tensor(const std::vector<size_t>& rows);
std::vector<size_t> rows_from(const at::Tensor& t);
nlohmann::json skipped_json(const std::vector<data::Skipped>& s);
std::vector<data::Skipped> skipped_from(const nlohmann::json& j);

/// What a latent recovery's results depend on (for stage fingerprints): steps, lr, optimiser,
/// restarts, latent space and start, loss weights, feature net and scales.
nlohmann::json recovery_fingerprint(const ganinv::InvertOptions& o);

/// Recovers `rows` of `m` (in that order); targets are streamed in chunks of the invert batch.
/// Restart r of rows[k] is seeded by (o.seed, first_index + k, r), as `rewind invert` seeds its
/// k-th target. With a shard, only the rows the shard contains are recovered (with the same
/// seeds), so the shards' recoveries put together equal the whole one. With a cache, each
/// finished chunk is saved as it completes (segments `stage`-seg-K: [n, 2 + D (+ d)] float64 of
/// row, mse, latent, recon embedding) and a resumed call skips the chunks already done.
Recovery recover_rows(models::Generator& g, const io::Manifest& m, const std::vector<size_t>& rows,
                      const ganinv::InvertOptions& o, models::Embedder* embedder, const ProgressFn& progress,
                      const std::string& stage, const StageCache* cache = nullptr, int64_t first_index = 0,
                      const data::Shard& shard = {}, const std::string& crop = "center");
/// Targets per saved segment of recover_rows (the stream's batch for these options).
int64_t recovery_segment_size(const ganinv::InvertOptions& o);

// --- sharded pipelines (audit, membership): rounds of N shards, each round merged into the
// pipeline's stage cache, after which the pipeline runs as one process on the kept stages

/// SampleBank's batch in sharded pipelines: the blocks samples are dealt in.
constexpr int64_t kSampleBatch = 256;
/// The first round of 1..rounds not yet merged into `stage_dir` (round-R.json), 0 when all are.
int64_t next_round(const std::string& stage_dir, int64_t rounds);
/// A part's cache fingerprint: the run's, plus its shard and round.
nlohmann::json part_fingerprint(nlohmann::json fp, const data::Shard& shard, int64_t round);
/// A part's stage folder, checked to be the one this run's options make (never created here):
/// Error{kInput} naming it and the shard to rerun otherwise.
StageCache open_part(const std::string& dir, const nlohmann::json& fp, const data::Shard& shard, int64_t round);
/// The parts of `round` (stage folders, shard i of n at position i), each opened with open_part
/// and checked to have finished the round (Error{kInput} naming the shard to run again).
std::vector<StageCache> open_finished_parts(const std::vector<std::string>& dirs, const nlohmann::json& fp, int64_t round);
/// The sample embeddings of the parts (each SampleBank(..., kSampleBatch, shard i of n)) in sample order.
at::Tensor merge_sample_parts(const std::vector<StageCache>& parts, const std::vector<std::string>& dirs, int64_t samples,
                              const std::string& name = "samples");
/// The recovery segments of `stage` in the parts, saved into `run` as one process saves them
/// (segments of recovery_segment_size, in row order).
void merge_recovery_parts(const std::vector<StageCache>& parts, const StageCache& run, const std::string& stage,
                          const ganinv::InvertOptions& o);

/// A short stable hash of a manifest's rows (paths, identities, member labels): a resumed stage
/// refuses a manifest whose rows changed.
std::string manifest_hash(const io::Manifest& m);

/// Records skipped items in the run record (and returns how many there were).
size_t record_skips(io::RunRecord* record, const std::vector<data::Skipped>& skipped);

/// Maps a ProgressFn to one that reports under another stage name.
ProgressFn staged(const ProgressFn& progress, const std::string& stage);

/// Median and 1.4826 x median absolute deviation of `values` (the robust z of v is
/// (median - v) / scale: higher = lower error than typical).
std::pair<double, double> robust_scale(const std::vector<double>& values);

std::vector<double> to_vector(const at::Tensor& t);

/// The one definition of "exposed" (compare, both directions). Probe i (a rebuilt photo, or the
/// generated sample closest to person i) is exposed when the gallery photo it matches best is
/// person i's own (rank 1 among all the people's photos) AND that similarity is above `threshold`.
/// The control: probes whose best match among OTHER people's photos is above `threshold` (how
/// often the same rule would "recognise" the wrong person). probes, gallery: [n, d] L2-normalised,
/// row i = person i.
struct Exposure {
  std::vector<bool> exposed, control;   ///< per person
  std::vector<double> own;              ///< similarity of probe i to photo i
  int64_t n_exposed = 0, n_control = 0;
};
Exposure exposure(const at::Tensor& probes, const at::Tensor& gallery, double threshold);
/// The same from the similarities already computed: sim [n, n], sim[i][j] = probe i . photo j.
Exposure exposure_of(const at::Tensor& sim, double threshold);

/// Do the generator's samples and the owner's images look like one domain to the embedder?
///  - probe: a linear probe (mia::blind_baseline on the embeddings) telling samples from the
///    owner's images; AUC near 1 = the embedder keeps them apart;
///  - spread: median best similarity of a sample to another sample, and of an owner image to a
///    sample (an image of the generator's domain sits as close to the samples as they sit to each other).
/// At most `cap` of each side are used (seeded draw).
struct DomainFit {
  mia::BlindBaseline probe;
  double sample_to_sample = NAN, image_to_sample = NAN;
  int64_t samples = 0, images = 0;
};
DomainFit domain_fit(const at::Tensor& sample_emb, const at::Tensor& image_emb, uint64_t seed, int64_t cap = 1000);

/// Image statistics for the blind baseline (mia::blind_baseline), no model involved: per channel
/// mean and standard deviation, mean |horizontal| and |vertical| gradient, mean |Laplacian|, the
/// fraction of saturated pixels (|v| > 0.98) and the high-frequency share of the variance.
/// images [N, C, H, W] in [-1, 1] -> [N, 2C + 5] float64.
at::Tensor image_statistics(const at::Tensor& images);

}  // namespace rw::audit
