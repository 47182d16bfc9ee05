#include "rewind/optim/loop.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "rewind/core/error.h"

namespace rw::optim {

LoopResult minimise(const at::Tensor& init, const Objective& f, const LoopOptions& o, const ResetFn& reset,
                    const ProgressFn& progress, const std::string& stage, int64_t base, int64_t total) {
  RW_CHECK(o.optimizer == "adam" || o.optimizer == "lbfgs", Usage, "--optimizer must be adam or lbfgs, got '",
           o.optimizer, "'");
  RW_CHECK(o.schedule == "cosine" || o.schedule == "constant", Usage, "--schedule must be cosine or constant, got '",
           o.schedule, "'");
  RW_CHECK(o.steps >= 0 && o.lr > 0, Usage, "--steps must be >= 0 and --lr > 0");
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
    double mean_best = r.best_loss.masked_select(torch::isfinite(r.best_loss)).mean().item<double>();
    if (progress) {
      char detail[64];
      std::snprintf(detail, sizeof detail, "best loss %.5f", mean_best);
      report_progress(progress, {stage, base + step + 1, total > 0 ? total : o.steps, detail});
    }
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

}  // namespace rw::optim
