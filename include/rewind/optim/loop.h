// The shared optimisation loop behind latent recovery (ganinv) and feature inversion (featinv):
// many independent problems optimised as one batch, each item keeping its best value.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

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
/// graph and replayed (builds with REWIND_WITH_CUDA); an objective that cannot be captured (a host
/// synchronisation, a CPU tensor) runs eager instead, logged once per process.
LoopResult fused_adam(const at::Tensor& init, const Objective& f, const LoopOptions& o, const ResetFn& reset,
                      const ProgressFn& progress = {}, const std::string& stage = "optimise",
                      int64_t progress_base = 0, int64_t progress_total = 0, bool cuda_graph = false);

/// --batch 0: how many rows (targets x restarts) one optimisation chunk holds on `device`.
/// CPU: 64 (the fastest per image-step on 2 cores: the working set stays in cache; measured in
/// experiments/results/bench-invert-cpu.md). CUDA: `trial(rows)` runs one
/// forward + backward of that many rows; the peak memory it allocated above the baseline, per row,
/// sizes the chunk to 80% of the free memory (rows_that_fit), rounded down to a multiple of
/// `restarts`, at most 65,536; logged once per `what`. Never below `restarts`.
int64_t auto_chunk_rows(const c10::Device& device, int64_t restarts, const std::function<void(int64_t rows)>& trial,
                        const std::string& what);
/// The sizing rule alone: a trial of `trial_rows` rows that needed `trial_bytes` above the baseline
/// -> the most rows whose step fits in `headroom` x `free_bytes`, clamped to [min_rows, max_rows].
/// A trial that measured nothing (trial_bytes <= 0) gives max_rows.
int64_t rows_that_fit(int64_t trial_rows, int64_t trial_bytes, int64_t free_bytes, int64_t min_rows, int64_t max_rows,
                      double headroom = 0.8);

/// fused_adam when it applies (Adam without early stopping), minimise otherwise (L-BFGS, patience).
LoopResult optimise(const at::Tensor& init, const Objective& f, const LoopOptions& o, const ResetFn& reset,
                    const ProgressFn& progress = {}, const std::string& stage = "optimise",
                    int64_t progress_base = 0, int64_t progress_total = 0, bool cuda_graph = false);

}  // namespace rw::optim
