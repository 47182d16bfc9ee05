// Training loops for rewind's own models (no pretrained weights can be downloaded here; the demo,
// tests and experiments need real trained models). Torch-only: callers load the images.
//
// All loops: seeded; checkpoint (weights + optimiser + step + RNG) every `checkpoint_every` steps,
// written atomically to `checkpoint`; `resume` continues from it bit-for-bit; progress with losses
// and ETA through ProgressFn (returning false stops after writing a checkpoint).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>

#include "rewind/core/progress.h"
#include "rewind/models/nets.h"

namespace rw::models {

struct TrainGanOptions {
  GanArch arch;                 ///< architecture (channels must match the data)
  int64_t steps = 3000;         ///< generator updates
  int64_t batch = 64;           ///< images per step
  double lr = 2e-4;             ///< Adam learning rate (G and D)
  double beta1 = 0.5;           ///< Adam beta1
  double beta2 = 0.999;         ///< Adam beta2
  uint64_t seed = 1;
  std::string out;              ///< final generator file (native format)
  std::string checkpoint;       ///< default: out + ".ckpt"
  int64_t checkpoint_every = 250;
  bool resume = false;
  int64_t sample_every = 500;   ///< call on_samples every N steps (and at the end)
};

struct TrainResult {
  int64_t steps = 0;            ///< steps done in total (including resumed ones)
  double seconds = 0;           ///< wall time of this call
  double images_per_second = 0; ///< training throughput of this call
  double final_loss = 0;        ///< G loss (GAN) / training loss (classifier, embedder)
  double final_aux = 0;         ///< D loss (GAN) / held-out accuracy (classifier) / TAR (embedder)
};

/// Samples callback: (step, fixed-noise samples [16,C,H,W] in [-1,1]).
using SamplesFn = std::function<void(int64_t, const at::Tensor&)>;

/// Trains a DCGAN (hinge loss, spectral-norm discriminator) on images [N,C,R,R] in [-1,1].
/// Writes the generator to opt.out (native) and the discriminator to opt.out + ".disc".
TrainResult train_gan(const at::Tensor& images, const TrainGanOptions& opt, const ProgressFn& progress = {},
                      const SamplesFn& on_samples = {});

struct TrainClassifierOptions {
  CnnArch arch;                 ///< outputs = number of classes
  nlohmann::json arch_extra = nlohmann::json::object();  ///< merged into the saved arch record (e.g. class names)
  int64_t epochs = 3;
  int64_t batch = 128;
  double lr = 1e-3;             ///< Adam, cosine decay to 0
  double weight_decay = 1e-4;
  uint64_t seed = 1;
  std::string out;
  std::string checkpoint;       ///< default: out + ".ckpt"
  int64_t checkpoint_every = 200;  ///< steps
  bool resume = false;
};

/// Trains a staged CNN classifier on images [N,C,R,R] in [-1,1] with int64 labels [N]; reports
/// accuracy on (val_images, val_labels) in final_aux (fraction in [0,1]).
TrainResult train_classifier(const at::Tensor& images, const at::Tensor& labels, const at::Tensor& val_images,
                             const at::Tensor& val_labels, const TrainClassifierOptions& opt,
                             const ProgressFn& progress = {});

struct TrainEmbedderOptions {
  CnnArch arch;                 ///< outputs = embedding dimension
  int64_t epochs = 12;
  int64_t batch = 128;
  double lr = 2e-3;             ///< Adam, cosine decay to 0
  double weight_decay = 5e-4;
  double margin = 0.35;         ///< CosFace additive cosine margin m
  double scale = 30.0;          ///< CosFace logit scale s
  uint64_t seed = 1;
  std::string out;
  std::string checkpoint;       ///< default: out + ".ckpt"
  int64_t checkpoint_every = 200;
  bool resume = false;
};

/// Trains an identity embedder with the CosFace margin loss on images [N,C,R,R] with identity ids
/// [N] in [0, K). final_aux = verification TAR at FAR 1e-3 on (val_images, val_ids), identities
/// that must be disjoint from the training ones (checked by the caller).
TrainResult train_embedder(const at::Tensor& images, const at::Tensor& ids, const at::Tensor& val_images,
                           const at::Tensor& val_ids, const TrainEmbedderOptions& opt, const ProgressFn& progress = {});

/// Embeds images [N,C,R,R] with a staged net (eval, batched) and L2-normalises: [N, outputs].
at::Tensor embed_with(StagedNet& net, const at::Tensor& images, int64_t batch = 256);

/// Accuracy of `net` on images/labels, batched, eval mode.
double evaluate_accuracy(StagedNet& net, const at::Tensor& images, const at::Tensor& labels, int64_t batch = 256);

}  // namespace rw::models
