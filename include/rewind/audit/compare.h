// Both directions on the same people: is a person exposed through the GAN's outputs (identity
// nearest neighbour among generated samples, as the audit) and through a split classifier's
// activations (the photo rebuilt by white-box inversion is recognised as the same person)?
//
// One photo per identity (its first loadable image) goes through both attacks. The split side is
// swept over `splits` x `defenses`. One definition of "exposed" for both directions (audit::exposure):
// the probe (the generated sample closest to the person; the photo rebuilt from the activations)
// matches the person's own photo at rank 1 among all the people's photos AND above a threshold
// resolved at the family-wise `far`, with a control beside it (probes above the threshold against
// OTHER people's photos). Thresholds: GAN side as the audit (reference images, else impostor pairs,
// per image x sample); split side from the dataset's impostor pairs, each rebuild one test.
// Memory: embeddings of the dataset, one photo per identity, and the rebuilt photos of one cell
// at a time (plus, per undefended cell, the rebuilds of the `pictures` people the GAN exposes most).
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
  std::string crop = "center";   ///< how images are cut to the generator's size: center | none | detect | dlib
                                 ///< (audit::pipeline_loader; dlib for real photos)
  double far = 0.05;        ///< family-wise false-exposure rate of each direction's verdicts (as AuditOptions::far), in (0, 1)
  int64_t wb_steps = featinv::WhiteBoxOptions::default_loop().steps;  ///< white-box inversion steps per split (500)
  int64_t pictures = 16;    ///< identities shown with pictures in the report
  int64_t embed_batch = 128;  ///< images per embedder pass
  uint64_t seed = 1;        ///< samples, restarts, defences
  ganinv::InvertOptions invert;  ///< latent recovery (its defaults: 2 restarts x 200 Adam steps)
  std::string stage_dir;    ///< where finished stages are kept (embeddings, samples, recovery chunks, each
                            ///< split x defence cell); "" = not kept. The CLI uses OUT/.stages
  bool resume = false;      ///< continue the stages kept in stage_dir (same options and inputs, else an error)
};

/// One split x defence cell of the split side.
struct SplitCell {
  std::string split, defense;
  double accuracy = -1;            ///< through the (defended) split on images of classes the classifier knows; -1 = n/a
  at::Tensor psnr, ssim, cos;      ///< [n_ids] per identity's photo
  Threshold threshold;             ///< this cell's: the higher of split_threshold and the rebuild-specific null (below)
  Exposure exposure;               ///< per identity: exposed (rank 1 and above the threshold) and the control
  int64_t exposed = 0;             ///< exposure.n_exposed; a claim only when `threshold` is resolved
  int64_t control = 0;             ///< exposure.n_control (bounded by the certification: the threshold holds off these pairs)
  int64_t control_impostor = 0;    ///< the control at split_threshold alone (what real impostors would have let through)
  at::Tensor recon_shown;          ///< [shown.size(), C, H, W] rebuilt photos of CompareResult::shown (at the GAN's shape)
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
  Threshold gan_threshold;                 ///< GAN side (as the audit)
  Threshold split_threshold;               ///< split side, from the dataset's impostor pairs (one test per rebuilt photo);
                                           ///< each cell also certifies against its rebuilds x other people's photos
  Exposure gan_exposure;                   ///< GAN side: the closest sample of each person as the probe
  std::vector<SplitCell> cells;
  int64_t gan_leaking = 0, members = 0, members_leaking = 0;
  Recovery recovery;                       ///< of the photos (latents re-render the reconstructions)
  std::vector<size_t> shown;               ///< the identities pictured (CompareOptions::pictures of them): those the
                                           ///< GAN exposes most (leaks, then inconclusive, then by closest-sample
                                           ///< similarity), chosen before the split side, which keeps their rebuilds
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
