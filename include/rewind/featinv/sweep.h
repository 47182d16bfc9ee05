// The split x defence x attack sweep (`rewind split-attack`) as a library call.
//
// For every split point s, every defence d and every attack a: the targets' activations head(x, s)
// are defended with d, attacked with a, and the reconstructions scored against the originals
// (PSNR, SSIM, relative feature loss and, with an embedder, the identity cosine of original vs
// rebuilt). Beside the attack quality, each cell carries the classifier's accuracy through the
// defended split (the utility side of the trade-off) when labelled evaluation images are given.
//
// Shapes:
//   targets, aux, eval images   [N, C, H, W] float32 in [-1, 1], the classifier's input shape
//   target_identities, labels   [N] int64
//   per-target cell tensors     [N] float (id_cos undefined without an embedder)
//
// Memory: a cell's reconstructions [N, C, H, W] live only until the per-cell callback returns
// (write them there); the cell then keeps its first SweepOptions::keep_recon rows for pictures.
// Torch-only (no OpenCV, no FAISS).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rewind/core/progress.h"
#include "rewind/featinv/featinv.h"
#include "rewind/models/models.h"

namespace rw::featinv {

/// The attacks a sweep knows, in their canonical order: white-box, inverse-net, gan-prior.
const std::vector<std::string>& sweep_attacks();

struct SweepOptions {
  std::vector<std::string> splits;           ///< split points (stage names); default {} = every split point
                                             ///< of the classifier, shallow to deep
  std::vector<Defense> defenses = {Defense{}};  ///< defences on the activations, one row each; default
                                             ///< {none}; an empty list means {none}
  std::vector<std::string> attacks = {"white-box"};  ///< any of sweep_attacks(); default {white-box}.
                                             ///< inverse-net needs SweepInputs::aux, gan-prior a generator
  WhiteBoxOptions white_box;                 ///< white-box attack (defaults: 1 restart, Adam 500 steps, lr 0.05)
  InverseNetOptions inverse_net;             ///< inverse network (defaults: 10 epochs, width 32, lr 1e-3)
  GanPriorOptions gan_prior;                 ///< GAN prior (defaults: 4 restarts, 300 steps, no refinement)
  uint64_t seed = 1;                         ///< default 1: seeds everything: white_box.seed, inverse_net.seed,
                                             ///< gan_prior.seed and gan_prior.refine.seed are overwritten with
                                             ///< it, and the defences' noise draws from it
  double match_threshold = 0;                ///< default 0 = calibrate: cosine above which a rebuilt image is
                                             ///< the same person; must be in [0, 1)
  double match_far = 1e-3;                   ///< default 1e-3: false-accept rate of the calibrated threshold,
                                             ///< on the impostor pairs of the target originals; in (0, 1)
  int64_t keep_recon = 16;                   ///< default 16: reconstructions of the first this many targets each
                                             ///< cell keeps after its callback (pairs pictures); 0 = none
};

/// What the sweep runs on. The classifier is passed to run_sweep; everything here but `targets` is
/// optional (undefined tensor / null pointer) and only needed by the features that use it.
struct SweepInputs {
  at::Tensor targets;                 ///< [N,C,H,W] images whose activations are attacked
  at::Tensor target_identities;       ///< [N] int64 identity ids of the targets; needed to calibrate the
                                      ///< match threshold (embedder given, match_threshold 0)
  at::Tensor aux;                     ///< [M,C,H,W] the attacker's own images (inverse-net), disjoint from targets
  models::Generator* generator = nullptr;  ///< gan-prior
  models::Embedder* embedder = nullptr;    ///< identity match of original vs rebuilt
  at::Tensor eval_images;             ///< [E,C,H,W] for the accuracy; undefined = the targets
  at::Tensor eval_labels;             ///< [E] int64 classes; undefined = no accuracy (NaN)
};

/// The identity-match threshold used for id_match (how it was obtained).
struct MatchThreshold {
  double threshold = 0;        ///< cosine above which original and rebuilt are called the same person
  bool calibrated = false;     ///< false: SweepOptions::match_threshold was given
  double far = 0;              ///< requested false-accept rate (calibrated only)
  double far_actual = 0;       ///< measured FAR of the impostor pairs at the threshold (calibrated only)
  int64_t impostor_pairs = 0;  ///< pairs of target originals of different identities (calibrated only)
  bool far_resolved = true;    ///< impostor_pairs * far >= 1: enough pairs to resolve the FAR
  std::string reason;          ///< why not resolved (empty when resolved)
};

/// One (split, defence, attack) configuration.
struct SweepCell {
  std::string split;           ///< stage name
  int64_t depth = 0;           ///< index of the stage in classifier.split_points()
  Defense defense;
  std::string attack;
  double accuracy = 0;         ///< top-1 accuracy through the defended split; NaN when not measurable
  double seconds = 0;          ///< wall time of the attack
  at::Tensor psnr, ssim, feature_loss;  ///< [N] per target
  at::Tensor id_cos;           ///< [N] cosine of the embeddings of original and rebuilt; undefined without embedder
  at::Tensor id_match;         ///< [N] bool id_cos > SweepResult::match.threshold; undefined without embedder
  at::Tensor recon;            ///< [N,C,H,W] inside the callback; afterwards the first keep_recon rows
  // aggregates over targets (medians average the middle pair: mia::median)
  double psnr_mean = 0, psnr_median = 0, ssim_mean = 0, ssim_median = 0, feature_loss_median = 0;
  double id_cos_mean = 0, id_match_rate = 0;  ///< NaN without embedder
};

struct SweepResult {
  std::vector<std::string> splits;  ///< resolved split points, in sweep order
  int64_t targets = 0;
  bool identity = false;            ///< an embedder was given: id_cos / id_match are measured
  MatchThreshold match;             ///< meaningful when `identity`
  std::vector<SweepCell> cells;     ///< split-major, then defence, then attack
};

/// Called once per finished cell, with its full reconstructions (write them here).
using SweepCellFn = std::function<void(const SweepCell&)>;

/// Runs the sweep. Throws Error{kUsage} naming the SweepOptions / SweepInputs field for bad options
/// (unknown attack or split, a missing input an attack needs, a threshold out of range), and
/// Error{kCancelled} when `progress` returns false (cells already passed to `on_cell` are done).
SweepResult run_sweep(models::SplitClassifier& classifier, const SweepInputs& inputs, const SweepOptions& o,
                      const ProgressFn& progress = {}, const SweepCellFn& on_cell = {});

}  // namespace rw::featinv
