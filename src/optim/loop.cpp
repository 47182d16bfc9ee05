#include "rewind/optim/loop.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"

#include <mutex>
#include <set>

#ifdef REWIND_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/cuda.h>
#endif

namespace rw::optim {

namespace {

void check_options(const LoopOptions& o) {
  RW_CHECK(o.optimizer == "adam" || o.optimizer == "lbfgs", Usage, "--optimizer must be adam or lbfgs, got '",
           o.optimizer, "'");
  RW_CHECK(o.schedule == "cosine" || o.schedule == "constant", Usage, "--schedule must be cosine or constant, got '",
           o.schedule, "'");
  RW_CHECK(o.steps >= 0 && std::isfinite(o.lr) && o.lr > 0, Usage, "--steps must be >= 0 and --lr a finite number > 0 (got steps ",
           o.steps, ", lr ", o.lr, ")");
}

/// The mean of the finite entries of per-item best losses (NaN when none is finite): what the
/// progress line shows and what early stopping compares.
double mean_finite(const at::Tensor& best_loss) {
  torch::NoGradGuard ng;
  return best_loss.masked_select(torch::isfinite(best_loss)).mean().item<double>();
}

/// The progress line's detail for a mean best loss.
std::string loss_detail(double mean_best) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "best loss %.5f", mean_best);
  return buf;
}

// ---- fused Adam: every operation on the device, so one step can be captured in a CUDA graph ----

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
constexpr int64_t kNanCheckEvery = 50;

struct FusedState {
  at::Tensor v;          // [B, ...] variables (leaf, requires grad)
  at::Tensor m1, m2;     // Adam moments
  at::Tensor step;       // [1] float: steps taken
  at::Tensor lr;         // [steps] learning-rate schedule
  at::Tensor loss;       // [B] loss at the start of the last step
  at::Tensor best_loss;  // [B]
  at::Tensor best_v;     // [B, ...]
  std::vector<int64_t> item_shape;  // [B, 1, 1, ...]: broadcasts a per-item value over v
};

/// Records, in place (static addresses for CUDA graphs), each item's best finite loss and variables.
void keep_best(FusedState& s, const at::Tensor& l) {
  auto better = torch::isfinite(l).logical_and(l.lt(s.best_loss));
  s.best_loss.copy_(torch::where(better, l, s.best_loss));
  s.best_v.copy_(torch::where(better.view(s.item_shape), s.v.detach(), s.best_v));
}

void fused_step(FusedState& s, const Objective& f) {
  if (s.v.grad().defined()) s.v.mutable_grad().zero_();
  auto loss = f(s.v);
  loss.sum().backward();
  torch::NoGradGuard ng;
  auto l = loss.detach();
  s.loss.copy_(l);
  keep_best(s, l);
  auto g = s.v.grad().nan_to_num(0.0, 0.0, 0.0);
  s.step.add_(1.0);
  auto lr = s.lr.index_select(0, (s.step - 1).clamp_max(double(s.lr.size(0) - 1)).to(torch::kLong));
  s.m1.mul_(kBeta1).add_(g, 1 - kBeta1);
  s.m2.mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
  auto bc1 = 1.0 - torch::pow(torch::full_like(s.step, kBeta1), s.step);
  auto bc2 = 1.0 - torch::pow(torch::full_like(s.step, kBeta2), s.step);
  auto denom = (s.m2 / bc2).sqrt_().add_(kEps);
  s.v.sub_((s.m1 / bc1).div_(denom).mul_(lr.view(std::vector<int64_t>(size_t(s.v.dim()), 1))));
}

}  // namespace

LoopResult fused_adam(const at::Tensor& init, const Objective& f, const LoopOptions& o, const ResetFn& reset,
                      const ProgressFn& progress, const std::string& stage, int64_t base, int64_t total,
                      bool cuda_graph) {
  check_options(o);
  RW_CHECK(o.optimizer == "adam", Internal, "fused_adam runs Adam only");
  const int64_t steps = o.steps;
  FusedState s;
  s.v = init.detach().clone().set_requires_grad(true);
  s.m1 = torch::zeros_like(s.v).detach();
  s.m2 = torch::zeros_like(s.v).detach();
  s.item_shape.assign(size_t(s.v.dim()), 1);
  s.item_shape[0] = s.v.size(0);
  s.step = torch::zeros({1}, init.options().requires_grad(false));
  auto t = torch::arange(std::max<int64_t>(steps, 1), torch::kFloat64);
  auto lr = o.schedule == "cosine" ? 0.5 * o.lr * (1 + torch::cos(M_PI * t / double(std::max<int64_t>(steps, 1))))
                                   : torch::full_like(t, o.lr);
  s.lr = lr.to(init.scalar_type()).to(init.device());
  s.loss = torch::zeros({init.size(0)}, init.options().requires_grad(false));
  s.best_loss = torch::full({init.size(0)}, std::numeric_limits<float>::infinity(), init.options().requires_grad(false));
  s.best_v = init.detach().clone();
  LoopResult r;
  auto nan_check = [&]() {
    torch::NoGradGuard ng;
    auto bad = torch::isfinite(s.loss).logical_not();
    if (!bad.any().item<bool>()) return;
    r.nan_resets += bad.sum().item<int64_t>();
    reset(bad, s.v);
    auto keep = bad.logical_not().view(s.item_shape).to(s.m1.dtype());
    s.m1.mul_(keep);
    s.m2.mul_(keep);
  };
  std::string detail;  // the mean best loss, refreshed every 10 steps (reading it synchronises a GPU)
  auto report = [&](int64_t done) {
    if (!progress) return;
    if (done % 10 == 0 || done == steps) {
      const double mean_best = mean_finite(s.best_loss);
      detail = std::isnan(mean_best) ? "" : loss_detail(mean_best);
    }
    report_progress(progress, {stage, base + done, total > 0 ? total : steps, detail});
  };
  int64_t done = 0;
#ifdef REWIND_WITH_CUDA
  if (cuda_graph && init.is_cuda() && steps > 3) {
    auto stream = c10::cuda::getStreamFromPool();
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      for (; done < 3; ++done) fused_step(s, f);  // warm-up: allocates grads, picks kernels
    }
    torch::cuda::synchronize();
    at::cuda::CUDAGraph graph;
    bool captured = false;
    try {
      c10::cuda::CUDAStreamGuard guard(stream);
      graph.capture_begin();
      try {
        fused_step(s, f);
      } catch (...) {
        try {
          graph.capture_end();  // leaves the stream out of capture mode
        } catch (...) {
        }
        throw;
      }
      graph.capture_end();
      captured = true;
    } catch (const std::exception& e) {
      // nothing captured ran, so the state is as the warm-up left it: go on eagerly
      (void)cudaGetLastError();  // a failed capture's error is not sticky: clear it
      static std::once_flag said;
      std::call_once(said, [&] {
        log_info("CUDA graph: this objective could not be captured (" + std::string(e.what()).substr(0, 200) +
                 "); its steps run eagerly (same results, more launch overhead)");
      });
    }
    if (captured) {
      for (; done < steps; ++done) {
        graph.replay();
        if ((done + 1) % kNanCheckEvery == 0) {
          nan_check();
          report(done + 1);
        }
      }
      torch::cuda::synchronize();
    }
  }
#else
  (void)cuda_graph;
#endif
  for (; done < steps; ++done) {
    fused_step(s, f);
    if ((done + 1) % kNanCheckEvery == 0) nan_check();
    report(done + 1);
  }
  {  // the final variables count too
    torch::NoGradGuard ng;
    keep_best(s, f(s.v));
  }
  r.best_vars = s.best_v;
  r.best_loss = s.best_loss;
  r.steps = steps;
  return r;
}

int64_t rows_that_fit(int64_t trial_rows, int64_t trial_bytes, int64_t free_bytes, int64_t min_rows, int64_t max_rows,
                      double headroom) {
  RW_CHECK(trial_rows > 0 && min_rows >= 1 && max_rows >= min_rows && headroom > 0 && headroom <= 1, Internal,
           "rows_that_fit: trial_rows ", trial_rows, ", rows [", min_rows, ", ", max_rows, "], headroom ", headroom);
  if (trial_bytes <= 0) return max_rows;
  const double per_row = double(trial_bytes) / double(trial_rows);
  const double fit = std::floor(headroom * double(std::max<int64_t>(free_bytes, 0)) / per_row);
  return std::clamp<int64_t>(fit >= double(max_rows) ? max_rows : int64_t(fit), min_rows, max_rows);
}

int64_t auto_chunk_rows(const c10::Device& device, int64_t restarts, const std::function<void(int64_t rows)>& trial,
                        const std::string& what) {
  restarts = std::max<int64_t>(restarts, 1);
  auto round = [&](int64_t rows) { return std::max(restarts, rows / restarts * restarts); };
  if (!device.is_cuda()) {
    // 64 rows: measured fastest per image-step on 2 cores; fits anywhere rewind runs
    return round(64);
  }
#ifdef REWIND_WITH_CUDA
  const int dev = device.has_index() ? int(device.index()) : 0;
  const int64_t trial_rows = round(64);
  namespace cca = c10::cuda::CUDACachingAllocator;
  torch::cuda::synchronize();
  const auto before = cca::getDeviceStats(dev);
  cca::resetPeakStats(dev);
  trial(trial_rows);
  torch::cuda::synchronize();
  const auto after = cca::getDeviceStats(dev);
  const int64_t used = after.allocated_bytes[0].peak - before.allocated_bytes[0].current;
  // free to this process: the driver's free memory plus what the allocator holds but does not use
  const auto mem = device_memory("cuda:" + std::to_string(dev));
  const int64_t cached = after.reserved_bytes[0].current - after.allocated_bytes[0].current;
  const int64_t rows = round(rows_that_fit(trial_rows, used, mem.free + cached, trial_rows, 65536));
  static std::mutex mu;
  static std::set<std::string> said;
  std::lock_guard<std::mutex> lk(mu);
  if (said.insert(what).second) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "--batch 0 (%s): a trial step of %lld rows took %.1f MiB; %.0f MiB free on %s: chunks of %lld rows",
                  what.c_str(), (long long)trial_rows, double(used) / 1048576.0, double(mem.free + cached) / 1048576.0,
                  device.str().c_str(), (long long)rows);
    log_info(buf);
  }
  return rows;
#else
  (void)trial;
  (void)what;
  return round(1024);
#endif
}

LoopResult minimise(const at::Tensor& init, const Objective& f, const LoopOptions& o, const ResetFn& reset,
                    const ProgressFn& progress, const std::string& stage, int64_t base, int64_t total) {
  check_options(o);
  auto vars = init.detach().clone().set_requires_grad(true);
  LoopResult r;
  r.best_vars = vars.detach().clone();
  r.best_loss = torch::full({vars.size(0)}, std::numeric_limits<float>::infinity(), vars.options().requires_grad(false));
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (o.optimizer == "adam")
    opt = std::make_unique<torch::optim::Adam>(std::vector<at::Tensor>{vars}, torch::optim::AdamOptions(o.lr));
  else
    opt = std::make_unique<torch::optim::LBFGS>(
        std::vector<at::Tensor>{vars},
        torch::optim::LBFGSOptions(o.lr).max_iter(1).history_size(10).line_search_fn("strong_wolfe"));

  at::Tensor pending_bad;  // items whose loss was NaN/Inf in this step's first evaluation
  auto apply_resets = [&] {
    if (!pending_bad.defined()) return;
    torch::NoGradGuard ng;
    r.nan_resets += pending_bad.sum().item<int64_t>();
    reset(pending_bad, vars);
    pending_bad = at::Tensor();
  };
  double last_improved_mean = std::numeric_limits<double>::infinity();
  int64_t since_improvement = 0;
  // Evaluates, tracks bests, handles NaN items; returns the masked loss sum for backward.
  auto evaluate = [&](bool track) {
    auto loss = f(vars);
    RW_CHECK(loss.dim() == 1 && loss.size(0) == vars.size(0), Internal, "objective must return [B] losses");
    auto finite = torch::isfinite(loss.detach());
    if (track) {
      torch::NoGradGuard ng;
      auto l = loss.detach();
      auto better = finite & l.lt(r.best_loss);
      if (better.any().item<bool>()) {
        r.best_loss = torch::where(better, l, r.best_loss);
        auto shape = std::vector<int64_t>(vars.dim(), 1);
        shape[0] = vars.size(0);
        r.best_vars = torch::where(better.view(shape), vars.detach(), r.best_vars);
      }
      if (!finite.all().item<bool>()) pending_bad = finite.logical_not();  // reset after backward

    }
    return torch::where(finite, loss, torch::zeros_like(loss)).sum();
  };

  for (int64_t step = 0; step < o.steps; ++step) {
    if (o.optimizer == "adam" && o.schedule == "cosine") {
      double lr = 0.5 * o.lr * (1 + std::cos(M_PI * double(step) / double(o.steps)));
      for (auto& g : opt->param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
    }
    bool tracked = false;
    auto closure = [&]() -> at::Tensor {
      opt->zero_grad();
      auto s = evaluate(!tracked);  // track on the first evaluation of each step only
      tracked = true;
      s.backward();
      // NaN items contribute zero loss, but NaN * 0 is NaN in their gradient: keep it out of the optimiser
      if (vars.grad().defined()) vars.mutable_grad().nan_to_num_(0.0, 0.0, 0.0);
      return s;
    };
    opt->step(closure);
    apply_resets();
    r.steps = step + 1;
    const double mean_best = mean_finite(r.best_loss);
    if (progress) report_progress(progress, {stage, base + step + 1, total > 0 ? total : o.steps, loss_detail(mean_best)});
    if (o.patience > 0) {
      if (mean_best < last_improved_mean * (1 - o.tolerance)) {
        last_improved_mean = mean_best;
        since_improvement = 0;
      } else if (++since_improvement >= o.patience) {
        break;
      }
    }
  }
  {  // the final state counts too
    torch::NoGradGuard ng;
    evaluate(true);
    apply_resets();
  }
  return r;
}

LoopResult optimise(const at::Tensor& init, const Objective& f, const LoopOptions& o, const ResetFn& reset,
                    const ProgressFn& progress, const std::string& stage, int64_t base, int64_t total,
                    bool cuda_graph) {
  if (o.optimizer == "adam" && o.patience == 0)
    return fused_adam(init, f, o, reset, progress, stage, base, total, cuda_graph);
  return minimise(init, f, o, reset, progress, stage, base, total);
}

}  // namespace rw::optim
