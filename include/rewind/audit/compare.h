// Both directions on the same people: is a person exposed through the GAN's outputs (identity
// nearest neighbour among generated samples, as the audit) and through a split classifier's
// activations (the photo rebuilt by white-box inversion is recognised as the same person)?
//
// One photo per identity (its first loadable image) goes through both attacks. The split side is
// swept over `splits` x `defenses`; "exposed" there means the rebuilt photo's identity similarity
// to the original is above the 1:1 pair threshold at `far` on the dataset's own impostor pairs.
// The GAN side's verdict is the audit's (family-wise `gan_far`, "leaks" only when resolved).
// Memory: embeddings of the dataset, one photo per identity, and the rebuilt photos of one cell
// at a time (plus the first `pictures` of each undefended cell for the report).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rewind/audit/audit.h"
#include "rewind/featinv/featinv.h"

namespace rw::audit {

struct CompareOptions {
  std::string splits = "relu1,pool1,relu2,pool2,relu3,fc1";  ///< split stages attacked (comma list, or "all")
  std::string defenses = "none,noise=1";                       ///< defences on the activations (comma list)
  int64_t samples = 1000;   ///< generated samples (GAN side)
  double far = 1e-3;        ///< split side: false-accept rate of the 1:1 "same person" threshold, in (0, 1)
  double gan_far = 0.05;    ///< GAN side: family-wise false-accusation rate, as AuditOptions::far, in (0, 1)
  int64_t wb_steps = 200;   ///< white-box inversion steps per split
  int64_t pictures = 16;    ///< identities shown with pictures in the report
  int64_t batch = 128;      ///< images per embedder pass
  uint64_t seed = 1;        ///< samples, restarts, defences
  ganinv::InvertOptions invert = recovery_defaults(100);  ///< GAN-side latent recovery (2 restarts x 100 steps)

};

/// One split x defence cell of the split side.
struct SplitCell {
  std::string split, defense;
  double accuracy = -1;            ///< through the (defended) split on images of classes the classifier knows; -1 = n/a
  at::Tensor psnr, ssim, cos;      ///< [n_ids] per identity's photo
  int64_t exposed = 0;             ///< identities whose rebuilt photo passes the pair threshold
  at::Tensor recon_shown;          ///< [min(pictures, n), C, H, W] rebuilt photos of the first identities (at the GAN's shape)
};

struct CompareIdentity {
  std::string identity;
  int member = -1;
  size_t photo_row = 0;        ///< the photo both attacks use
  double nn_similarity = -2;   ///< best over all of its images
  size_t nn_row = 0;
  int64_t nn_sample = -1;
  Verdict gan_verdict = Verdict::kNoEvidence;
  bool gan_leaks = false;  ///< gan_verdict == kLeaks
  double recovery_mse = 0;     ///< of the photo
};

struct CompareResult {
  std::vector<CompareIdentity> identities;  ///< first-appearance order
  Threshold gan_threshold;
  double pair_threshold = 0;               ///< split side's "same person" (1:1 at far)
  int64_t pair_impostors = 0;
  std::vector<SplitCell> cells;
  int64_t gan_leaking = 0, members = 0, members_leaking = 0;
  Recovery recovery;                       ///< of the photos (latents re-render the reconstructions)
  std::vector<data::Skipped> skipped;
};

/// `class_names` (may be empty) names the classifier's classes; images of identities among them
/// measure the accuracy through the split.
CompareResult run_compare(models::Generator& g, models::Embedder& e, models::SplitClassifier& c, const io::Manifest& dataset,
                          const io::Manifest* reference, const std::vector<std::string>& class_names,
                          const CompareOptions& o, const ProgressFn& progress = {}, io::RunRecord* record = nullptr);

/// report.csv, report.json, report.html; returns the summary lines.
std::vector<std::string> write_compare_report(const std::string& out, const CompareResult& r, const CompareOptions& o,
                                              models::Generator& g, const io::Manifest& dataset,
                                              const nlohmann::json& options_json);

}  // namespace rw::audit
