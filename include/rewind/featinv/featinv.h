// Feature inversion on split classifiers (split computing: the phone runs head(x, split) and sends
// the activations to the cloud). Given the activations, rebuild the input image:
//   white_box   optimise x so that head(x) matches the activations (He et al., ACSAC 2019, rMLE),
//               with total-variation, L2 and DeepInversion BatchNorm-statistics priors;
//   InverseNet  a decoder activations -> image trained on auxiliary data the attacker owns
//               (He et al.'s black-box attack), one forward pass per target;
//   gan_prior   search a generator's latent space so that head(G(z)) matches, then optionally
//               refine the pixels with white_box.
// Defences applied to the activations before the attacker sees them (and before the tail): Gaussian
// noise, k-bit quantisation, random channel dropout. Torch-only (no OpenCV, no FAISS).
//
// Shapes, once for the whole module:
//   images       [N, C, H, W] float32 in [-1, 1], the classifier's input shape (models::ImageShape)
//   activations  [N, ...]     whatever head(x, split) emits ([N, C', H', W'] or [N, F])
//   per-target   [N]          losses, PSNR (dB, on the [0,1] scale), SSIM
// Everything is per item: a target's result never depends on the other targets in its batch
// (per-item seeds from (seed, index), per-item losses and priors).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rewind/core/progress.h"
#include "rewind/models/models.h"
#include "rewind/optim/loop.h"

namespace rw::featinv {

// ------------------------------------------------------------------------------------------------
// Defences

/// A defence on the activations. Text form (CLI `--defense`): "none", "noise=SIGMA",
/// "quant=BITS", "dropout=P".
struct Defense {
  std::string kind = "none";  ///< none | noise | quant | dropout
  double value = 0;           ///< noise: sigma in units of each item's activation RMS;
                              ///< quant: bits per value (1..16), uniform over each item's [min, max];
                              ///< dropout: probability that a channel (dim 1) is zeroed; kept
                              ///< channels are scaled by 1/(1-p)
  std::string str() const;    ///< "noise=0.5" (round-trips through parse)
  /// Throws Error{kUsage} naming the spec and the valid forms.
  static Defense parse(const std::string& spec);
};

/// Applies `d` to activations [N, ...]. Item i draws its randomness from (seed, first_index + i),
/// so results do not depend on batching. "none" returns `acts` unchanged.
at::Tensor defend(const at::Tensor& acts, const Defense& d, uint64_t seed = 1, int64_t first_index = 0);

/// Top-1 accuracy of tail(defend(head(x))) on labelled images [N,C,H,W] / labels [N] int64, batched,
/// no grad. The utility side of the trade-off.
double accuracy_through_split(models::SplitClassifier& c, const std::string& split, const at::Tensor& images,
                              const at::Tensor& labels, const Defense& d, uint64_t seed = 1, int64_t batch = 256);

/// head(x, split) for a batch of images, batched, no grad.
at::Tensor activations(models::SplitClassifier& c, const std::string& split, const at::Tensor& images,
                       int64_t batch = 256);

// ------------------------------------------------------------------------------------------------
// Attacks

/// Result of an attack on N targets.
struct AttackResult {
  at::Tensor recon;          ///< [N, C, H, W] in [-1, 1]
  at::Tensor feature_loss;   ///< [N] relative feature error |head(recon) - a|^2 / |a|^2 of the kept restart
  at::Tensor restart;        ///< [N] int64 winning restart (zeros for one-shot attacks)
  int64_t steps = 0;         ///< optimiser steps per chunk (max); 0 for the inverse network
  int64_t nan_resets = 0;
  double seconds = 0;        ///< wall time
};

struct WhiteBoxOptions {
  int64_t restarts = 1;      ///< starts per target, best feature loss kept: restart 0 is He et al.'s
                             ///< grey start (0.5 on [0,1]); the others add N(0, 0.25^2) noise to it
  optim::LoopOptions loop = default_loop();  ///< Adam, 500 steps, lr 0.05, cosine (He et al. rMLE)
  double w_tv = 1e-4;        ///< total variation (mean |neighbour difference|); DeepInversion's tv weight
  double w_l2 = 1e-5;        ///< mean x^2; DeepInversion's l2 weight
  double w_bn = 0;           ///< DeepInversion's BatchNorm prior (their r_feature is 0.05): per-item
                             ///< channel mean/var of each BatchNorm input up to the split vs the stored
                             ///< running statistics (2-norms of the differences, summed over layers);
                             ///< ignored for models without BatchNorm. Off by default: one image's
                             ///< statistics are not the population's, and on a Fashion-MNIST cnn28 the
                             ///< prior at 0.05 pulled relu1 inversions from 99 dB down to 20 dB
                             ///< (experiments/results/e3-split-depth.md)
  double first_bn_multiplier = 10;  ///< DeepInversion's extra weight on the first BatchNorm layer
  int64_t batch = 0;         ///< max targets x restarts optimised at once; 0 = auto (optim::auto_chunk_rows:
                             ///< 64 on the CPU; on CUDA the most that fit the free memory, by a trial step)
  uint64_t seed = 1;         ///< restart r of target i starts from a seed of (seed, i, r)
  bool cuda_graph = true;    ///< on CUDA, capture one Adam step in a CUDA graph and replay it (eager when
                             ///< the objective cannot be captured, said once); no effect on the CPU
  std::string precision = "fp32";  ///< the classifier's arithmetic during the search: fp32 | bf16 | fp16 (CUDA
                                   ///< only), SplitClassifier::set_precision; pixels, optimiser state and the
                                   ///< reported feature error stay fp32

  static optim::LoopOptions default_loop() {
    optim::LoopOptions l;
    l.steps = 500;
    l.lr = 0.05;
    return l;
  }
};

/// Rebuilds images from activations `acts` ([N, ...] as head(x, split) emits) by optimising the
/// pixels. `init` ([N,C,H,W], optional) replaces the grey start (GAN-prior refinement). `first_index`
/// offsets the per-target seeds. Progress stage "white-box"; cancellable.
AttackResult white_box(models::SplitClassifier& c, const std::string& split, const at::Tensor& acts,
                       const WhiteBoxOptions& o, const ProgressFn& progress = {}, const at::Tensor& init = {},
                       int64_t first_index = 0);

struct InverseNetOptions {
  int64_t epochs = 10;       ///< passes over the auxiliary images
  int64_t batch = 64;        ///< images per training step
  double lr = 1e-3;          ///< Adam, cosine decay to 0
  int64_t width = 32;        ///< channels of the decoder's hidden convolutions (cost grows with width^2)
  uint64_t seed = 1;         ///< weights, shuffling and (defended training) the defence's noise
};

/// He et al.'s inverse network: a decoder from activations to images. Activations [N,C',H',W'] go
/// through conv 3x3 + ReLU, then (x2 upsampling + conv 3x3 + BN + ReLU) until the image size (the
/// last step resizes exactly), then conv 3x3 + tanh; flat activations [N,F] first go through a linear
/// layer to [width, H/4, W/4]. Trained with pixel MSE.
class InverseNet {
 public:
  /// `act_shape`: one item's activation shape (without N).
  InverseNet(const std::vector<int64_t>& act_shape, const models::ImageShape& image, int64_t width, uint64_t seed);
  ~InverseNet();
  InverseNet(InverseNet&&) noexcept;
  InverseNet& operator=(InverseNet&&) noexcept;

  /// Trains on (activations, images) pairs: aux_acts [M, ...], aux_images [M,C,H,W]. Returns the mean
  /// training MSE of each epoch. Progress stage "inverse-net"; cancellable.
  std::vector<double> train(const at::Tensor& aux_acts, const at::Tensor& aux_images, const InverseNetOptions& o,
                            const ProgressFn& progress = {});
  /// Decodes activations [N, ...] -> images [N,C,H,W] (eval, no grad, batched).
  at::Tensor decode(const at::Tensor& acts, int64_t batch = 256);
  int64_t parameters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Trains an inverse network for `split` on the attacker's auxiliary images (the activations are
/// computed, and defended with `d` using seed o.seed, as the deployed pipeline would), then decodes
/// `acts`. `epoch_losses` (optional) receives the training curve.
AttackResult inverse_network(models::SplitClassifier& c, const std::string& split, const at::Tensor& acts,
                             const at::Tensor& aux_images, const Defense& d, const InverseNetOptions& o,
                             const ProgressFn& progress = {}, std::vector<double>* epoch_losses = nullptr);

struct GanPriorOptions {
  int64_t restarts = 2;      ///< random latent starts per target (z ~ N(0, I)); best feature loss kept
  optim::LoopOptions loop = optim::latent_recovery_loop();  ///< Adam, 200 steps, lr 0.05, cosine
  double w_prior = 1e-3;     ///< GAN-Leaks latent prior ((|z|^2 - D) / D)^2
  int64_t refine_steps = 0;  ///< then white_box from G(z) for this many steps (0 = latent only)
  WhiteBoxOptions refine;    ///< priors and lr of the refinement (its loop.steps is refine_steps)
  int64_t batch = 0;         ///< max targets x restarts at once; 0 = auto (optim::auto_chunk_rows)
  std::string precision = "fp32";  ///< the generator's arithmetic during the search: fp32 | bf16 | fp16 (CUDA
                                   ///< only); refused before any work when the generator cannot run in it;
                                   ///< the classifier, the pictures and the reported errors stay fp32
  uint64_t seed = 1;
};

/// Searches the generator's latent space so that head(G(z)) matches `acts`. Generator images are
/// converted to the classifier's input shape (channel mean / repeat, bilinear resize) when they differ.
/// Progress stages "gan-prior" and (refinement) "white-box"; cancellable.
AttackResult gan_prior(models::Generator& g, models::SplitClassifier& c, const std::string& split,
                       const at::Tensor& acts, const GanPriorOptions& o, const ProgressFn& progress = {},
                       int64_t first_index = 0);

// ------------------------------------------------------------------------------------------------
// Quality

/// Per-target reconstruction quality: PSNR (dB, [0,1] scale, capped at 100 for identical images)
/// and SSIM, both [N].
struct Quality {
  at::Tensor psnr, ssim;
};
Quality quality(const at::Tensor& originals, const at::Tensor& recon);

/// Converts images to `shape` (channel mean or repeat; bilinear resize). No-op when they match.
at::Tensor to_shape(const at::Tensor& images, const models::ImageShape& shape);

}  // namespace rw::featinv
