// GAN rewinding: target images -> the latent codes whose generated images reproduce them best
// (Webster et al. CVPR 2019; GAN-Leaks CCS 2020). All targets x restarts are optimised as one
// batch (chunked to a memory budget); the best restart per target is kept. Torch-only.
//
// Shapes: targets [N, C, H, W] in [-1, 1] with the generator's C, H, W; latents [N, latent_dim]
// (z), [N, w_dim] (w) or [N, num_ws, w_dim] (w+: one style per synthesis layer, Abdal et al.'s
// Image2StyleGAN); reconstructions [N, C, H, W].
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rewind/core/progress.h"
#include "rewind/models/models.h"
#include "rewind/optim/loop.h"

namespace rw::ganinv {

/// Names of the loss terms, in the column order of InvertResult::terms.
const std::vector<std::string>& term_names();  // mse, l1, dssim, identity, prior, feature

struct InvertOptions {
  int64_t restarts = 2;       ///< random starts per target; the best is kept
  optim::LoopOptions loop = optim::latent_recovery_loop();  ///< Adam, 200 steps, lr 0.05, cosine
  double w_mse = 1.0;         ///< weight of the pixel MSE
  double w_l1 = 0.0;          ///< weight of the pixel L1
  double w_ssim = 0.0;        ///< weight of (1 - SSIM)
  double w_identity = 0.0;    ///< weight of (1 - cosine) between embeddings (needs an embedder)
  double w_prior = 0.0;       ///< weight of GAN-Leaks' latent prior ((|z|^2 - D) / D)^2 (z space only)
  double w_feature = 0.0;     ///< weight of the perceptual distance (optim::feature_distance) at
                              ///< feature_net's layer (needs feature_net)
  std::shared_ptr<models::FeatureNet> feature_net;  ///< for w_feature (the CLI loads --feature-net)
  int64_t scales = 0;         ///< pixel terms optimised as the mean over this many resolutions
                              ///< (optim::multiscale_mse); 0 = auto: 3 for images over 128 px, else 1.
                              ///< Reported MSEs are always at full resolution
  std::string latent = "z";   ///< z | w | w+ (w, w+: generators with mapping/synthesis; w+: with num_ws)
  std::string w_start = "mapped";  ///< w, w+: mapped (restart r starts at mapping(z_r)) | mean (restart 0
                                   ///< at the mean W as projectors start, the others at w_avg + 0.5 (mapping(z_r) - w_avg))
  int64_t batch = 0;          ///< max targets x restarts optimised at once; 0 = auto (optim::auto_chunk_rows):
                              ///< 64 on the CPU (the fastest per image-step on 2 cores: caches); on CUDA
                              ///< the most that fit 80% of the free memory, measured by a trial step
  uint64_t seed = 1;          ///< restart r of target i starts from a seed of (seed, id of i, r): results
                              ///< do not depend on batch or chunking
  std::string refine = "none";  ///< none | pixel (bounded residual on top of the latent-only output) |
                                ///< feature:LAYER (bounded residual on the generator's activations at
                                ///< LAYER, models::Generator::feature_layers(); --latent z)
  int64_t refine_steps = 100;
  double refine_bound = 0.25; ///< max |residual|: per pixel (in [-1,1] units), or per activation in
                              ///< units of the item's activation spread (feature:LAYER)
  std::string precision = "fp32";  ///< the generator's arithmetic during the search: fp32 | bf16 (layers in
                                   ///< bfloat16; latents, optimiser state, losses float32; the reported
                                   ///< reconstruction and errors are recomputed in fp32 at the latents found).
                                   ///< bf16: rewind's compiled generators on the CPU (Generator::set_precision)
  bool cuda_graph = true;     ///< on CUDA with Adam: capture one optimisation step in a CUDA graph and
                              ///< replay it (removes per-kernel launch overhead); eager when the objective
                              ///< cannot be captured (said once). No effect on the CPU
};

struct InvertResult {
  at::Tensor latents;   ///< [N, D] best latent per target
  at::Tensor recon;     ///< [N, C, H, W] G(latent): the latent-only reconstruction
  at::Tensor refined;   ///< [N, C, H, W] after the pixel stage; undefined when refine = none
  at::Tensor loss;      ///< [N] weighted objective of the best restart
  at::Tensor terms;     ///< [N, 6] unweighted terms (term_names()) of the best restart
  at::Tensor restart;   ///< [N] int64 winning restart
  at::Tensor refined_mse;  ///< [N] MSE after refinement (undefined when refine = none)
  int64_t steps = 0;       ///< optimiser steps per chunk (max)
  int64_t nan_resets = 0;  ///< restarts re-seeded after NaN/Inf
};

/// The shape of one target's latent in `latent` space: {latent_dim}, {w_dim} or {num_ws, w_dim}.
/// Error{kUsage} when the generator has no such space (no mapping, or no num_ws for w+).
std::vector<int64_t> latent_shape(models::Generator& g, const std::string& latent);

/// Every check invert() makes of its options against this generator (latent space, loss terms,
/// refinement, optimiser), as Error{kUsage}: pipelines call it before their expensive stages.
void check_options(models::Generator& g, const InvertOptions& o, bool has_embedder);

/// One sentence for reports: the latent space searched and, for W+, the warning that it fits
/// non-members too.
std::string latent_space_note(const std::string& latent);

/// Images of latents in `latent` space: v [N, ...latent_shape] or flattened [N, prod(latent_shape)]
/// -> [N, C, H, W] (not clamped).
at::Tensor render(models::Generator& g, const std::string& latent, const at::Tensor& v);

/// Called after each chunk with the index of its first target and its results (for incremental
/// saving / resume).
using ChunkFn = std::function<void(int64_t first_target, const InvertResult& chunk)>;

/// Target k's restarts are seeded by its seed id: seed_ids[k] when given (e.g. its manifest row,
/// so that a shard of the targets gets the latents the whole run gets), else first_index + k
/// (so a resumed run reproduces an uninterrupted one).
/// With `on_chunk`, each chunk's results go to the callback only: the returned result then holds
/// just `steps` and `nan_resets` (memory stays one chunk, whatever the number of targets).
InvertResult invert(models::Generator& g, const at::Tensor& targets, const InvertOptions& o,
                    models::Embedder* embedder = nullptr, const ProgressFn& progress = {},
                    const ChunkFn& on_chunk = {}, int64_t first_index = 0,
                    const std::vector<int64_t>& seed_ids = {});

}  // namespace rw::ganinv
