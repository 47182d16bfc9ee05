#include "rewind/ganinv/invert.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "rewind/core/error.h"
#include "rewind/core/runtime.h"
#include "rewind/optim/losses.h"

#ifdef REWIND_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/cuda.h>
#endif

namespace rw::ganinv {

const std::vector<std::string>& term_names() {
  static const std::vector<std::string> names = {"mse", "l1", "dssim", "identity", "prior"};
  return names;
}

namespace {

/// Deterministic start for restart r of target i: depends only on (seed, i, r).
at::Tensor start_latents(int64_t first, int64_t count, int64_t restarts, int64_t d, uint64_t seed) {
  auto out = torch::empty({count * restarts, d});
  for (int64_t i = 0; i < count; ++i)
    for (int64_t r = 0; r < restarts; ++r) {
      auto gen = at::detail::createCPUGenerator(mix_seed(seed, uint64_t(first + i), uint64_t(r)));
      out[i * restarts + r].copy_(torch::randn({d}, gen));
    }
  return out;
}

struct Problem {
  models::Generator& g;
  const InvertOptions& o;
  models::Embedder* emb;
  at::Tensor targets;      // [B, C, H, W] (repeated per restart)
  at::Tensor target_emb;   // [B, d] or undefined
  int64_t d;
  at::Tensor wvec;         // [5] term weights on the targets' device

  at::Tensor render(const at::Tensor& v) { return o.latent == "w" ? g.synthesis(v) : g.generate(v); }

  /// [B, 5] unweighted terms; only the terms with weight > 0 are computed (others 0), plus MSE always.
  at::Tensor terms(const at::Tensor& v, const at::Tensor& x) {
    const int64_t b = v.size(0);
    auto zero = torch::zeros({b}, v.options().requires_grad(false));
    auto t_mse = optim::mse(x, targets);
    auto t_l1 = o.w_l1 > 0 ? optim::l1(x, targets) : zero;
    auto t_ssim = o.w_ssim > 0 ? 1.0 - optim::ssim(x, targets) : zero;
    auto t_id = (o.w_identity > 0 && emb) ? 1.0 - (emb->embed(x) * target_emb).sum(1) : zero;
    auto t_prior = o.w_prior > 0 ? ((v.flatten(1).pow(2).sum(1) - double(d)) / double(d)).pow(2) : zero;
    return torch::stack({t_mse, t_l1, t_ssim, t_id, t_prior}, 1);
  }

  at::Tensor weighted(const at::Tensor& t) {
    if (!wvec.defined())
      wvec = torch::tensor({o.w_mse, o.w_l1, o.w_ssim, o.w_identity, o.w_prior}, torch::kFloat32).to(t.device());
    return (t * wvec).sum(1);
  }
};

// ---- fused Adam: every operation on the device, so one step can be captured in a CUDA graph ----

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
constexpr int64_t kNanCheckEvery = 50;

struct FusedState {
  at::Tensor v;          // [B, D] latents (leaf, requires grad)
  at::Tensor m1, m2;     // Adam moments
  at::Tensor step;       // [1] float: steps taken
  at::Tensor lr;         // [steps] learning-rate schedule
  at::Tensor loss;       // [B] loss at the start of the last step
  at::Tensor best_loss;  // [B]
  at::Tensor best_v;     // [B, D]
};

/// Records, in place (static addresses for CUDA graphs), each item's best finite loss and latents.
void keep_best(FusedState& s, const at::Tensor& l) {
  auto better = torch::isfinite(l).logical_and(l.lt(s.best_loss));
  s.best_loss.copy_(torch::where(better, l, s.best_loss));
  s.best_v.copy_(torch::where(better.unsqueeze(1), s.v.detach(), s.best_v));
}

void fused_step(FusedState& s, Problem& p) {
  if (s.v.grad().defined()) s.v.mutable_grad().zero_();
  auto loss = p.weighted(p.terms(s.v, p.render(s.v)));
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
  s.v.sub_(lr * (s.m1 / bc1) / ((s.m2 / bc2).sqrt() + kEps));
}

/// Adam on the latents with per-item best tracking: eager, or one captured CUDA graph replayed.
optim::LoopResult fused_adam(const at::Tensor& init, Problem& p, const InvertOptions& o, const optim::ResetFn& reset,
                             const ProgressFn& progress, int64_t base, int64_t total) {
  const auto dev = init.device();
  const int64_t steps = o.loop.steps;
  FusedState s;
  s.v = init.detach().clone().set_requires_grad(true);
  s.m1 = torch::zeros_like(s.v).detach();
  s.m2 = torch::zeros_like(s.v).detach();
  s.step = torch::zeros({1}, init.options().requires_grad(false));
  auto t = torch::arange(std::max<int64_t>(steps, 1), torch::kFloat64);
  auto lr = o.loop.schedule == "cosine" ? 0.5 * o.loop.lr * (1 + torch::cos(M_PI * t / double(std::max<int64_t>(steps, 1))))
                                        : torch::full_like(t, o.loop.lr);
  s.lr = lr.to(torch::kFloat32).to(dev);
  s.loss = torch::zeros({init.size(0)}, init.options().requires_grad(false));
  s.best_loss = torch::full({init.size(0)}, std::numeric_limits<float>::infinity(), init.options().requires_grad(false));
  s.best_v = init.detach().clone();
  optim::LoopResult r;
  auto nan_check = [&]() {
    torch::NoGradGuard ng;
    auto bad = torch::isfinite(s.loss).logical_not();
    if (!bad.any().item<bool>()) return;
    r.nan_resets += bad.sum().item<int64_t>();
    reset(bad, s.v);
    auto keep = bad.logical_not().unsqueeze(1).to(s.m1.dtype());
    s.m1.mul_(keep);
    s.m2.mul_(keep);
  };
  auto report = [&](int64_t done) {
    if (!progress) return;
    report_progress(progress, {"invert", base + done, total > 0 ? total : steps, ""});
  };
  int64_t done = 0;
#ifdef REWIND_WITH_CUDA
  if (o.cuda_graph && dev.is_cuda() && steps > 3) {
    auto stream = c10::cuda::getStreamFromPool();
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      for (; done < 3; ++done) fused_step(s, p);  // warm-up: allocates grads, picks kernels
    }
    torch::cuda::synchronize();
    at::cuda::CUDAGraph graph;
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      graph.capture_begin();
      fused_step(s, p);
      graph.capture_end();
    }
    for (; done < steps; ++done) {
      graph.replay();
      if ((done + 1) % kNanCheckEvery == 0) {
        nan_check();
        report(done + 1);
      }
    }
    torch::cuda::synchronize();
  }
#endif
  for (; done < steps; ++done) {
    fused_step(s, p);
    if ((done + 1) % kNanCheckEvery == 0) nan_check();
    report(done + 1);
  }
  {  // the final latents count too
    torch::NoGradGuard ng;
    keep_best(s, p.weighted(p.terms(s.v, p.render(s.v))));
  }
  r.best_vars = s.best_v;
  r.best_loss = s.best_loss;
  r.steps = steps;
  return r;
}

}  // namespace

InvertResult invert(models::Generator& g, const at::Tensor& targets, const InvertOptions& o,
                    models::Embedder* embedder, const ProgressFn& progress, const ChunkFn& on_chunk,
                    int64_t first_index) {
  const auto shape = g.output_shape();
  RW_CHECK(targets.dim() == 4 && targets.size(1) == shape.channels && targets.size(2) == shape.height &&
               targets.size(3) == shape.width,
           Input, "targets are ", targets.sizes(), ", the generator makes [N,", shape.channels, ",", shape.height, ",",
           shape.width, "]: load them at the generator's size and channels");
  RW_CHECK(o.restarts >= 1, Usage, "--restarts must be >= 1");
  RW_CHECK(o.latent == "z" || o.latent == "w", Usage, "--latent must be z or w, got '", o.latent, "'");
  RW_CHECK(o.latent == "z" || g.has_mapping(), Usage, g.describe(), " has no mapping/synthesis: use --latent z");
  RW_CHECK(o.w_identity <= 0 || embedder, Usage, "the identity loss needs --embedder");
  RW_CHECK(o.refine == "none" || o.refine == "pixel", Usage, "--refine must be none or pixel, got '", o.refine, "'");
  RW_CHECK(o.loop.optimizer == "adam" || o.loop.optimizer == "lbfgs", Usage, "--optimizer must be adam or lbfgs, got '",
           o.loop.optimizer, "'");
  RW_CHECK(o.loop.schedule == "cosine" || o.loop.schedule == "constant", Usage,
           "--schedule must be cosine or constant, got '", o.loop.schedule, "'");
  const int64_t n = targets.size(0), d = g.latent_dim();
  const int64_t budget = o.batch > 0 ? o.batch : (targets.is_cuda() ? 1024 : 64);
  const int64_t per_chunk = std::max<int64_t>(1, budget / o.restarts);
  const int64_t chunks = (n + per_chunk - 1) / per_chunk;
  const int64_t total_steps = chunks * (o.loop.steps + (o.refine == "pixel" ? o.refine_steps : 0));
  const auto dev = targets.device();

  std::vector<InvertResult> parts;
  InvertResult all;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t first = c * per_chunk, count = std::min(per_chunk, n - first);
    auto tgt = targets.slice(0, first, first + count).repeat_interleave(o.restarts, 0);
    Problem p{g, o, embedder, tgt, {}, d, {}};
    if (o.w_identity > 0 && embedder) {
      torch::NoGradGuard ng;
      p.target_emb = embedder->embed(tgt);
    }
    auto z0 = start_latents(first_index + first, count, o.restarts, d, o.seed).to(dev);
    at::Tensor init = z0;
    if (o.latent == "w") {
      torch::NoGradGuard ng;
      init = g.mapping(z0);
    }
    auto reset = [&](const at::Tensor& bad, at::Tensor& v) {
      torch::NoGradGuard ng;
      auto gen = at::detail::createCPUGenerator(mix_seed(o.seed, 0xBADull, uint64_t(first_index + first)));
      auto fresh = torch::randn({v.size(0), d}, gen).to(dev);
      if (o.latent == "w") fresh = g.mapping(fresh);
      auto shape_b = std::vector<int64_t>(v.dim(), 1);
      shape_b[0] = v.size(0);
      v.copy_(torch::where(bad.view(shape_b), fresh, v));
    };
    auto objective = [&](const at::Tensor& v) { return p.weighted(p.terms(v, p.render(v))); };
    const int64_t base = c * (o.loop.steps + (o.refine == "pixel" ? o.refine_steps : 0));
    // Adam without early stopping runs fused (device-side state; capturable in a CUDA graph);
    // L-BFGS and early stopping go through the generic loop.
    auto res = (o.loop.optimizer == "adam" && o.loop.patience == 0)
                   ? fused_adam(init, p, o, reset, progress, base, total_steps)
                   : optim::minimise(init, objective, o.loop, reset, progress, "invert", base, total_steps);
    // best restart per target
    InvertResult part;
    {
      torch::NoGradGuard ng;
      auto loss = res.best_loss.view({count, o.restarts});
      auto best = std::get<1>(loss.min(1));  // [count]
      auto rows = torch::arange(count, torch::kLong).to(dev) * o.restarts + best;
      auto v = res.best_vars.index_select(0, rows);
      auto x = p.render(v);
      Problem pb{g, o, embedder, targets.slice(0, first, first + count), {}, d, {}};
      if (p.target_emb.defined()) pb.target_emb = p.target_emb.index_select(0, rows);
      part.latents = v;
      part.recon = x;
      part.terms = pb.terms(v, x);
      part.loss = pb.weighted(part.terms);
      part.restart = best.to(torch::kLong);
      part.steps = res.steps;
      part.nan_resets = res.nan_resets;
    }
    if (o.refine == "pixel") {
      // bounded residual r: x = clamp(G(v) + bound * tanh(r)); shows what the generator cannot explain
      auto base = part.recon.detach();
      auto tg = targets.slice(0, first, first + count);
      optim::LoopOptions lo = o.loop;
      lo.steps = o.refine_steps;
      lo.patience = 0;
      auto obj = [&](const at::Tensor& r) {
        return optim::mse((base + o.refine_bound * torch::tanh(r)).clamp(-1, 1), tg);
      };
      auto rr = optim::minimise(torch::zeros_like(base), obj, lo, [](const at::Tensor&, at::Tensor&) {}, progress,
                                "refine", c * (o.loop.steps + o.refine_steps) + o.loop.steps, total_steps);
      torch::NoGradGuard ng;
      part.refined = (base + o.refine_bound * torch::tanh(rr.best_vars)).clamp(-1, 1);
      part.refined_mse = optim::mse(part.refined, tg);
    }
    if (on_chunk) on_chunk(first, part);
    parts.push_back(std::move(part));
  }
  auto cat = [&](at::Tensor InvertResult::*field) {
    std::vector<at::Tensor> ts;
    for (auto& pr : parts)
      if ((pr.*field).defined()) ts.push_back(pr.*field);
    return ts.empty() ? at::Tensor() : torch::cat(ts);
  };
  all.latents = cat(&InvertResult::latents);
  all.recon = cat(&InvertResult::recon);
  all.refined = cat(&InvertResult::refined);
  all.refined_mse = cat(&InvertResult::refined_mse);
  all.loss = cat(&InvertResult::loss);
  all.terms = cat(&InvertResult::terms);
  all.restart = cat(&InvertResult::restart);
  for (auto& pr : parts) {
    all.steps = std::max(all.steps, pr.steps);
    all.nan_resets += pr.nan_resets;
  }
  return all;
}

}  // namespace rw::ganinv
