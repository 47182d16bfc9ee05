// Feature inversion: defences, quality metrics, the white-box attack and the GAN-prior attack.
#include "rewind/featinv/featinv.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <sstream>

#include "rewind/core/error.h"
#include "rewind/core/runtime.h"
#include "rewind/optim/losses.h"

namespace F = torch::nn::functional;

namespace rw::featinv {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

at::Generator item_gen(uint64_t seed, int64_t index, uint64_t salt) {
  return at::detail::createCPUGenerator(mix_seed(seed, uint64_t(index), salt));
}

/// --batch: the user's rows per chunk, or auto (optim::auto_chunk_rows: 64 on the CPU, measured on a
/// CUDA device by a trial step of `trial`), logged once per run on CUDA.
int64_t chunk_rows(int64_t batch, const c10::Device& dev, int64_t restarts, const std::function<void(int64_t)>& trial,
                   const char* flag) {
  RW_CHECK(batch >= 0, Usage, flag, " must be >= 0 (0 = automatic), got ", batch);
  if (batch > 0) return batch;
  return optim::auto_chunk_rows(dev, restarts, trial, "split inversion");
}

/// s_i * sum_j (a_ij - t_ij)^2 per item, with a one-pass backward (2 s_i g_i (a - t)). Autograd of
/// the same expression through pow and mean runs several full-size passes over the activations and
/// was a third of each white-box step (profiled on the Fashion-MNIST cnn28 at relu2, batch 64).
struct ScaledSquaredError : torch::autograd::Function<ScaledSquaredError> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& t,
                            const at::Tensor& scale) {
    auto d = (a - t).reshape({a.size(0), -1});
    ctx->save_for_backward({d, scale});
    ctx->saved_data["sizes"] = a.sizes().vec();
    return (d * d).sum(1) * scale;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list g) {
    auto saved = ctx->get_saved_variables();
    auto per_item = (g[0] * saved[1] * 2.0).unsqueeze(1);
    return {(saved[0] * per_item).view(ctx->saved_data["sizes"].toIntVector()), at::Tensor(), at::Tensor()};
  }
};

/// Relative feature error per item: mean (a - t)^2 / mean t^2 (denom = mean t^2, [B]).
at::Tensor feature_error(const at::Tensor& a, const at::Tensor& t, const at::Tensor& denom) {
  const double per_item = double(a.numel() / std::max<int64_t>(a.size(0), 1));
  return ScaledSquaredError::apply(a, t.detach(), (1.0 / (denom.detach() * per_item)).to(a.dtype()));
}

at::Tensor feature_denom(const at::Tensor& t) { return t.pow(2).flatten(1).mean(1).clamp_min(1e-12); }

/// Picks the best restart of each target: vars [T*R, ...], loss [T*R] -> (vars [T, ...], index [T]).
std::pair<at::Tensor, at::Tensor> pick_best(const at::Tensor& vars, const at::Tensor& loss, int64_t restarts) {
  const int64_t t = loss.size(0) / restarts;
  auto l = torch::where(torch::isfinite(loss), loss, torch::full_like(loss, std::numeric_limits<float>::max()));
  auto best = l.view({t, restarts}).argmin(1);
  auto rows = torch::arange(t, best.options()) * restarts + best;
  return {vars.index_select(0, rows), best};
}

}  // namespace

// ---- defences -----------------------------------------------------------------------------------

std::string Defense::str() const {
  if (kind == "none") return "none";
  std::ostringstream os;
  os << kind << "=" << value;
  return os.str();
}

Defense Defense::parse(const std::string& spec) {
  const char* forms = "none, noise=SIGMA (>= 0, in units of the activation RMS), quant=BITS (1..16), dropout=P (0 <= P < 1)";
  Defense d;
  if (spec.empty() || spec == "none") return d;
  auto eq = spec.find('=');
  RW_CHECK(eq != std::string::npos, Usage, "--defense '", spec, "': write KIND=VALUE; forms: ", forms);
  d.kind = spec.substr(0, eq);
  try {
    size_t used = 0;
    d.value = std::stod(spec.substr(eq + 1), &used);
    RW_CHECK(used == spec.size() - eq - 1, Usage, "--defense '", spec, "': bad number; forms: ", forms);
  } catch (const Error&) {
    throw;
  } catch (...) {
    RW_FAIL(Usage, "--defense '", spec, "': bad number; forms: ", forms);
  }
  if (d.kind == "noise") RW_CHECK(d.value >= 0 && std::isfinite(d.value), Usage, "--defense '", spec, "': sigma must be >= 0");
  else if (d.kind == "quant")
    RW_CHECK(d.value >= 1 && d.value <= 16 && d.value == std::floor(d.value), Usage, "--defense '", spec,
             "': bits must be an integer in 1..16");
  else if (d.kind == "dropout") RW_CHECK(d.value >= 0 && d.value < 1, Usage, "--defense '", spec, "': P must be in [0, 1)");
  else RW_FAIL(Usage, "--defense '", spec, "': unknown kind '", d.kind, "'; forms: ", forms);
  return d;
}

at::Tensor defend(const at::Tensor& acts, const Defense& d, uint64_t seed, int64_t first_index) {
  if (d.kind == "none") return acts;
  torch::NoGradGuard ng;
  const int64_t n = acts.size(0);
  auto flat = acts.reshape({n, -1});
  if (d.kind == "quant") {
    const double levels = std::pow(2.0, d.value) - 1;
    auto lo = std::get<0>(flat.min(1, true)), hi = std::get<0>(flat.max(1, true));
    auto range = (hi - lo).clamp_min(1e-12);
    auto q = ((flat - lo) / range * levels).round() / levels * range + lo;
    q = torch::where((hi - lo).gt(0), q, flat);
    return q.view(acts.sizes());
  }
  auto out = acts.clone();
  for (int64_t i = 0; i < n; ++i) {
    if (d.kind == "noise") {
      if (d.value == 0) continue;
      auto gen = item_gen(seed, first_index + i, 0xD0153ull);
      auto noise = torch::randn(acts[i].sizes(), gen, acts.options().device(torch::kCPU)).to(acts.device());
      const double rms = std::sqrt(acts[i].pow(2).mean().item<double>());
      out[i].add_(noise * (d.value * rms));
    } else {  // dropout over dim 1 (channels, or features of flat activations)
      if (d.value == 0) continue;
      auto gen = item_gen(seed, first_index + i, 0xD20Bull);
      const int64_t ch = acts.size(1);
      auto keep = torch::rand({ch}, gen, acts.options().device(torch::kCPU)).ge(d.value).to(acts.scalar_type());
      std::vector<int64_t> shape(size_t(acts.dim() - 1), 1);
      shape[0] = ch;
      out[i].mul_(keep.view(shape).to(acts.device()) / (1 - d.value));
    }
  }
  return out;
}

at::Tensor activations(models::SplitClassifier& c, const std::string& split, const at::Tensor& images, int64_t batch) {
  models::check_split(c, split);
  torch::NoGradGuard ng;
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < images.size(0); s += batch)
    parts.push_back(c.head(images.slice(0, s, std::min(images.size(0), s + batch)), split).clone());
  RW_CHECK(!parts.empty(), Usage, "no images to compute activations of");
  return torch::cat(parts);
}

double accuracy_through_split(models::SplitClassifier& c, const std::string& split, const at::Tensor& images,
                              const at::Tensor& labels, const Defense& d, uint64_t seed, int64_t batch) {
  models::check_split(c, split);
  RW_CHECK(images.size(0) == labels.size(0) && images.size(0) > 0, Usage, "accuracy needs as many labels as images");
  torch::NoGradGuard ng;
  int64_t correct = 0;
  for (int64_t s = 0; s < images.size(0); s += batch) {
    const int64_t e = std::min(images.size(0), s + batch);
    auto a = defend(c.head(images.slice(0, s, e), split).clone(), d, seed, s);
    auto pred = c.tail(a, split).argmax(1);
    correct += pred.eq(labels.slice(0, s, e).to(pred.device())).sum().item<int64_t>();
  }
  return double(correct) / double(images.size(0));
}

// ---- quality ------------------------------------------------------------------------------------

Quality quality(const at::Tensor& originals, const at::Tensor& recon) {
  torch::NoGradGuard ng;
  RW_CHECK(originals.sizes() == recon.sizes(), Internal, "quality: shapes differ");
  auto o = originals.clamp(-1, 1), r = recon.clamp(-1, 1);
  return {optim::psnr(o, r).clamp_max(100.0), optim::ssim(o, r)};
}

at::Tensor to_shape(const at::Tensor& x, const models::ImageShape& s) { return models::adapt_images(x, s); }

// ---- white box ----------------------------------------------------------------------------------

AttackResult white_box(models::SplitClassifier& c, const std::string& split, const at::Tensor& acts,
                       const WhiteBoxOptions& o, const ProgressFn& progress, const at::Tensor& init,
                       int64_t first_index) {
  models::check_split(c, split);
  RW_CHECK(o.restarts >= 1, Usage, "--restarts must be >= 1");
  RW_CHECK(o.w_tv >= 0 && o.w_l2 >= 0 && o.w_bn >= 0, Usage, "prior weights must be >= 0");
  const auto t0 = std::chrono::steady_clock::now();
  const auto shape = c.input_shape();
  const int64_t n = acts.size(0), restarts = o.restarts;
  RW_CHECK(!init.defined() || (init.size(0) == n && init.size(1) == shape.channels && init.size(2) == shape.height &&
                               init.size(3) == shape.width),
           Internal, "white_box: init must be [N,C,H,W] in the classifier's shape");
  // the search runs where the classifier lives; results go back to the activations' device
  const auto dev = c.device(), home = acts.device();
  const int64_t per_chunk = std::max<int64_t>(1, chunk_rows(o.batch, dev, restarts, [&](int64_t rows) {
    auto x = torch::zeros({rows, shape.channels, shape.height, shape.width}, torch::TensorOptions(dev)).requires_grad_(true);
    c.inference_head(split)(x).sum().backward();
  }, "--wb-batch") / restarts);
  const int64_t chunks = (n + per_chunk - 1) / per_chunk;
  // BatchNorm statistics (DeepInversion prior), in the order head_bn reports inputs
  std::vector<models::SplitClassifier::BatchNormStats> bns;
  if (o.w_bn > 0) bns = c.batchnorm_stats();
  for (auto& b : bns) {
    b.running_mean = b.running_mean.to(dev);
    b.running_var = b.running_var.to(dev);
  }
  const bool use_bn = !bns.empty();
  using Precision = models::PrecisionScope<models::SplitClassifier>;
  { Precision check(c, o.precision, "--wb-precision"); }  // refused before any work

  AttackResult res;
  std::vector<at::Tensor> recons, losses, picks;
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t first = ci * per_chunk, last = std::min(n, first + per_chunk), t = last - first;
    auto tgt = acts.slice(0, first, last).detach().to(dev).repeat_interleave(restarts, 0);
    auto denom = feature_denom(tgt);
    auto start = torch::zeros({t * restarts, shape.channels, shape.height, shape.width}, acts.options().device(dev));
    if (init.defined()) start.copy_(init.slice(0, first, last).to(dev).repeat_interleave(restarts, 0));
    for (int64_t i = 0; i < t; ++i)
      for (int64_t r = 1; r < restarts; ++r) {
        auto gen = item_gen(o.seed, first_index + first + i, uint64_t(r));
        start[i * restarts + r].add_(
            torch::randn({shape.channels, shape.height, shape.width}, gen, torch::kFloat32).to(dev) * 0.25);
      }
    auto lowp = std::make_unique<Precision>(c, o.precision, "--wb-precision");  // the search only
    // BatchNorm folded into the convolutions: the same function, fewer operations per step
    const auto fast_head = use_bn ? models::SplitClassifier::HeadFn() : c.inference_head(split);
    auto objective = [&](const at::Tensor& x) {
      std::vector<at::Tensor> bn_in;
      auto a = use_bn ? c.head_bn(x, split, &bn_in) : fast_head(x);
      auto loss = feature_error(a, tgt, denom);
      if (o.w_tv > 0) loss = loss + o.w_tv * optim::total_variation(x);
      if (o.w_l2 > 0) loss = loss + o.w_l2 * (x * x).flatten(1).mean(1);
      for (size_t k = 0; k < bn_in.size() && k < bns.size(); ++k) {
        const auto& f = bn_in[k];
        if (f.dim() != 4) continue;
        auto mean = f.mean({2, 3});
        auto var = (f - mean.unsqueeze(2).unsqueeze(3)).pow(2).mean({2, 3});
        auto term = (mean - bns[k].running_mean).norm(2, {1}) + (var - bns[k].running_var).norm(2, {1});
        loss = loss + o.w_bn * (k == 0 ? o.first_bn_multiplier : 1.0) * term;
      }
      return loss;
    };
    auto reset = [&](const at::Tensor& bad, at::Tensor& vars) {
      vars.index_put_({bad}, torch::zeros_like(vars.index({bad})));
    };
    // Adam without early stopping runs fused (state on the device, no host sync per step)
    auto r = optim::optimise(start, objective, o.loop, reset, progress, "white-box", ci * o.loop.steps,
                             chunks * o.loop.steps, o.cuda_graph);
    lowp.reset();  // fp32 again: the reported feature error is fp32's
    res.steps = std::max(res.steps, r.steps);
    res.nan_resets += r.nan_resets;
    auto [best, pick] = pick_best(r.best_vars, r.best_loss, restarts);
    best = best.clamp(-1, 1);
    {
      torch::NoGradGuard ng;
      auto a0 = acts.slice(0, first, last).to(dev);
      losses.push_back(feature_error(c.head(best, split), a0, feature_denom(a0)).to(home));
    }
    recons.push_back(best.to(home));
    picks.push_back(pick.to(home));
  }
  res.recon = torch::cat(recons);
  res.feature_loss = torch::cat(losses);
  res.restart = torch::cat(picks);
  res.seconds = seconds_since(t0);
  return res;
}

// ---- GAN prior ----------------------------------------------------------------------------------

AttackResult gan_prior(models::Generator& g, models::SplitClassifier& c, const std::string& split,
                       const at::Tensor& acts, const GanPriorOptions& o, const ProgressFn& progress,
                       int64_t first_index) {
  models::check_split(c, split);
  RW_CHECK(o.restarts >= 1, Usage, "--restarts must be >= 1");
  RW_CHECK(o.precision == "fp32" || o.precision == "bf16" || o.precision == "fp16", Usage,
           "--precision must be fp32, bf16 or fp16 (CUDA only), got '", o.precision, "'");
  { models::PrecisionScope probe(g, o.precision, "--precision"); }  // refused before any work
  const auto t0 = std::chrono::steady_clock::now();
  const auto shape = c.input_shape();
  const int64_t n = acts.size(0), restarts = o.restarts, d = g.latent_dim();
  const auto dev = g.device(), home = acts.device();
  // the generator's images in fp32 whatever its arithmetic: the classifier and the loss stay fp32
  auto render = [&](const at::Tensor& z) { return to_shape(g.generate(z).to(torch::kFloat32), shape); };
  const int64_t per_chunk = std::max<int64_t>(1, chunk_rows(o.batch, dev, restarts, [&](int64_t rows) {
    auto z = torch::zeros({rows, d}, torch::TensorOptions(dev)).requires_grad_(true);
    models::PrecisionScope lowp(g, o.precision, "--precision");
    c.head(render(z), split).sum().backward();
  }, "--batch") / restarts);
  const int64_t chunks = (n + per_chunk - 1) / per_chunk;
  AttackResult res;
  std::vector<at::Tensor> recons, picks;
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t first = ci * per_chunk, last = std::min(n, first + per_chunk), t = last - first;
    auto tgt = acts.slice(0, first, last).detach().to(dev).repeat_interleave(restarts, 0);
    auto denom = feature_denom(tgt);
    auto start = torch::empty({t * restarts, d});
    for (int64_t i = 0; i < t; ++i)
      for (int64_t r = 0; r < restarts; ++r) {
        auto gen = item_gen(o.seed, first_index + first + i, 0x6A40ull + uint64_t(r));
        start[i * restarts + r].copy_(torch::randn({d}, gen));
      }
    start = start.to(dev);
    auto objective = [&](const at::Tensor& z) {
      auto loss = feature_error(c.head(render(z), split), tgt, denom);
      if (o.w_prior > 0) loss = loss + o.w_prior * ((z.pow(2).sum(1) - double(d)) / double(d)).pow(2);
      return loss;
    };
    auto reset = [&](const at::Tensor& bad, at::Tensor& vars) {
      vars.index_put_({bad}, torch::zeros_like(vars.index({bad})));
    };
    optim::LoopResult r;
    {
      models::PrecisionScope lowp(g, o.precision, "--precision");
      r = optim::minimise(start, objective, o.loop, reset, progress, "gan-prior", ci * o.loop.steps,
                          chunks * o.loop.steps);
    }
    res.steps = std::max(res.steps, r.steps);
    res.nan_resets += r.nan_resets;
    auto [best, pick] = pick_best(r.best_vars, r.best_loss, restarts);
    torch::NoGradGuard ng;
    recons.push_back(to_shape(g.generate(best), shape).clamp(-1, 1).to(home));
    picks.push_back(pick.to(home));
  }
  res.recon = torch::cat(recons);
  res.restart = torch::cat(picks);
  if (o.refine_steps > 0) {
    WhiteBoxOptions w = o.refine;
    w.loop.steps = o.refine_steps;
    w.restarts = 1;
    w.batch = o.batch;
    auto refined = white_box(c, split, acts, w, progress, res.recon, first_index);
    res.recon = refined.recon;
    res.steps += refined.steps;
    res.nan_resets += refined.nan_resets;
  }
  {
    torch::NoGradGuard ng;
    auto a = activations(c, split, res.recon);
    res.feature_loss = feature_error(a, acts, feature_denom(acts));
  }
  res.seconds = seconds_since(t0);
  return res;
}

}  // namespace rw::featinv
