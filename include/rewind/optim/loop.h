// The shared optimisation loop behind latent recovery (ganinv) and feature inversion (featinv):
// many independent problems optimised as one batch, each item keeping its best value.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>

#include "rewind/core/progress.h"

namespace rw::optim {

struct LoopOptions {
  std::string optimizer = "adam";   ///< adam | lbfgs (strong-Wolfe line search, history 10)
  int64_t steps = 300;              ///< optimiser steps
  double lr = 0.05;                 ///< Adam learning rate (L-BFGS: initial step, 1 is usual)
  std::string schedule = "cosine";  ///< cosine (decay to 0) | constant
  int64_t patience = 0;             ///< early stop when no item improved by > tolerance (relative)
                                    ///< for this many steps; 0 = never
  double tolerance = 1e-4;
};

/// Latent recovery's one default wherever it runs (invert, audit, membership, compare, split-attack's
/// gan-prior): Adam, 200 steps, lr 0.05, cosine, with 2 restarts (InvertOptions, GanPriorOptions).
/// Measured: experiments/results/optimizer-membership.md (2 x 200 Adam as strong as 4 x 300 there).
inline LoopOptions latent_recovery_loop() {
  LoopOptions l;
  l.steps = 200;
  l.lr = 0.05;
  return l;
}

/// Per-item objective: vars [B, ...] -> losses [B]; gradients must flow to vars.
using Objective = std::function<at::Tensor(const at::Tensor& vars)>;
/// Writes fresh values into vars (no grad) for the items flagged in `bad` ([B] bool).
using ResetFn = std::function<void(const at::Tensor& bad, at::Tensor& vars)>;

struct LoopResult {
  at::Tensor best_vars;   ///< [B, ...] value with the lowest loss seen per item
  at::Tensor best_loss;   ///< [B]
  int64_t steps = 0;      ///< steps run (less than asked after an early stop)
  int64_t nan_resets = 0; ///< items reset because their loss became NaN/Inf
};

/// Minimises sum(f(vars)) from `init` (copied). Progress goes to `progress` as
/// {stage, progress_base + step, progress_total, "loss ..."}; returning false cancels (throws
/// Error{kCancelled}).
LoopResult minimise(const at::Tensor& init, const Objective& f, const LoopOptions& o, const ResetFn& reset,
                    const ProgressFn& progress = {}, const std::string& stage = "optimise",
                    int64_t progress_base = 0, int64_t progress_total = 0);

/// The same minimisation for Adam without early stopping (o.patience is ignored), fused: optimiser
/// state and best tracking stay on the variables' device with no host round trip per step
/// (NaN/Inf items are checked and reset every 50 steps). The fast path for GAN inversion and
/// white-box feature inversion. With cuda_graph and CUDA variables, one step is captured in a CUDA
/// graph and replayed (builds with REWIND_WITH_CUDA; the objective must then be capturable).
LoopResult fused_adam(const at::Tensor& init, const Objective& f, const LoopOptions& o, const ResetFn& reset,
                      const ProgressFn& progress = {}, const std::string& stage = "optimise",
                      int64_t progress_base = 0, int64_t progress_total = 0, bool cuda_graph = false);

/// fused_adam when it applies (Adam without early stopping), minimise otherwise (L-BFGS, patience).
LoopResult optimise(const at::Tensor& init, const Objective& f, const LoopOptions& o, const ResetFn& reset,
                    const ProgressFn& progress = {}, const std::string& stage = "optimise",
                    int64_t progress_base = 0, int64_t progress_total = 0, bool cuda_graph = false);

}  // namespace rw::optim
