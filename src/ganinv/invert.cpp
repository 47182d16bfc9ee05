#include "rewind/ganinv/invert.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <map>
#include <mutex>

#include "rewind/core/error.h"
#include "rewind/core/runtime.h"
#include "rewind/optim/losses.h"

namespace rw::ganinv {

const std::vector<std::string>& term_names() {
  static const std::vector<std::string> names = {"mse", "l1", "dssim", "identity", "prior", "feature"};
  return names;
}

namespace {

/// Deterministic z for restart r of the target with seed id `id`: depends only on (seed, id, r).
at::Tensor start_latents(const std::vector<int64_t>& ids, int64_t restarts, int64_t d, uint64_t seed) {
  const int64_t count = int64_t(ids.size());
  auto out = torch::empty({count * restarts, d});
  for (int64_t i = 0; i < count; ++i)
    for (int64_t r = 0; r < restarts; ++r) {
      auto gen = at::detail::createCPUGenerator(mix_seed(seed, uint64_t(ids[size_t(i)]), uint64_t(r)));
      out[i * restarts + r].copy_(torch::randn({d}, gen));
    }
  return out;
}

/// z draws [B, latent_dim] -> starting points in `o.latent` space [B, ...latent_shape]; `restart`
/// [B] says which restart each row is (restart 0 starts at the mean W when w_start = mean).
at::Tensor to_space(models::Generator& g, const InvertOptions& o, const at::Tensor& z, const std::vector<int64_t>& restart) {
  if (o.latent == "z") return z;
  torch::NoGradGuard ng;
  auto w = g.mapping(z);
  if (o.w_start == "mean") {
    auto avg = g.w_avg().to(w.device()).unsqueeze(0);
    w = avg + 0.5 * (w - avg);
    for (size_t j = 0; j < restart.size(); ++j)
      if (restart[j] == 0) w[int64_t(j)].copy_(avg[0]);
  }
  if (o.latent == "w+") w = w.unsqueeze(1).expand({-1, g.num_ws(), -1});
  return w.contiguous();
}

struct Problem {
  models::Generator& g;
  const InvertOptions& o;
  models::Embedder* emb;
  at::Tensor targets;      // [B, C, H, W] (repeated per restart)
  at::Tensor target_emb;   // [B, d] or undefined
  at::Tensor target_feat;  // [B, ...] features of the targets at the feature layer, or undefined
  int64_t d;
  int64_t scales = 1;      // resolutions of the optimised pixel term
  at::Tensor wvec;         // [6] term weights on the targets' device

  at::Tensor render(const at::Tensor& v) { return o.latent == "z" ? g.generate(v) : g.synthesis(v); }

  /// [B, 6] unweighted terms; only the terms with weight > 0 are computed (others 0), plus MSE
  /// always. `objective`: the pixel MSE over `scales` resolutions (what is optimised), else at full
  /// resolution (what is reported).
  at::Tensor terms(const at::Tensor& v, const at::Tensor& x, bool objective = false) {
    const int64_t b = v.size(0);
    auto zero = torch::zeros({b}, v.options().requires_grad(false));
    auto t_mse = objective && scales > 1 ? optim::multiscale_mse(x, targets, scales) : optim::mse(x, targets);
    auto t_l1 = o.w_l1 > 0 ? optim::l1(x, targets) : zero;
    auto t_ssim = o.w_ssim > 0 ? 1.0 - optim::ssim(x, targets) : zero;
    auto t_id = (o.w_identity > 0 && emb) ? 1.0 - (emb->embed(x) * target_emb).sum(1) : zero;
    auto t_prior = o.w_prior > 0 ? ((v.flatten(1).pow(2).sum(1) - double(d)) / double(d)).pow(2) : zero;
    auto t_feat = target_feat.defined() ? optim::feature_distance(o.feature_net->features(x), target_feat) : zero;
    return torch::stack({t_mse, t_l1, t_ssim, t_id, t_prior, t_feat}, 1);
  }

  at::Tensor weighted(const at::Tensor& t) {
    if (!wvec.defined())
      wvec = torch::tensor({o.w_mse, o.w_l1, o.w_ssim, o.w_identity, o.w_prior, o.w_feature}, torch::kFloat32)
                 .to(t.device());
    return (t * wvec).sum(1);
  }

  /// The targets' embeddings and features (fixed during the optimisation).
  void prepare() {
    torch::NoGradGuard ng;
    if (o.w_identity > 0 && emb) target_emb = emb->embed(targets);
    if (o.w_feature > 0) target_feat = o.feature_net->features(targets);
  }
};

}  // namespace

std::vector<int64_t> latent_shape(models::Generator& g, const std::string& latent) {
  RW_CHECK(latent == "z" || latent == "w" || latent == "w+", Usage, "--latent must be z, w or w+, got '", latent, "'");
  if (latent == "z") return {g.latent_dim()};
  RW_CHECK(g.has_mapping(), Usage, g.describe(), " has no mapping(z) / synthesis(w) methods: use --latent z");
  if (latent == "w") return {g.w_dim()};
  RW_CHECK(g.num_ws() > 0, Usage, g.describe(),
           " has no attribute num_ws (its synthesis takes one w): use --latent w or z, not w+");
  return {g.num_ws(), g.w_dim()};
}

std::string latent_space_note(const std::string& latent) {
  if (latent == "w")
    return "Latent space searched: W (the mapping network's output; one style for every layer).";
  if (latent == "w+")
    return "Latent space searched: W+ (one style per synthesis layer). Caution: W+ is expressive enough to reconstruct "
           "images the generator never saw (Abdal et al. 2019, Image2StyleGAN; Roich et al. 2022, PTI), so non-members "
           "are recovered well too and a low error in W+ is weak evidence of membership: compare with z or W.";
  return "Latent space searched: z (the generator's input).";
}

at::Tensor render(models::Generator& g, const std::string& latent, const at::Tensor& v) {
  auto shape = latent_shape(g, latent);
  int64_t numel = 1;
  for (auto s : shape) numel *= s;
  RW_CHECK(v.dim() >= 2 && v[0].numel() == numel, Input, "latents of shape ", v.sizes(), " do not fit --latent ", latent,
           " of ", g.describe(), " (", numel, " values a target): were they recovered in another latent space?");
  shape.insert(shape.begin(), v.size(0));
  auto x = v.reshape(shape);
  return latent == "z" ? g.generate(x) : g.synthesis(x);
}

void check_options(models::Generator& g, const InvertOptions& o, bool has_embedder) {
  RW_CHECK(o.restarts >= 1, Usage, "--restarts must be >= 1");
  latent_shape(g, o.latent);  // checks that the generator has this latent space
  RW_CHECK(o.w_start == "mapped" || o.w_start == "mean", Usage, "--w-start must be mapped or mean, got '", o.w_start, "'");
  RW_CHECK(o.w_start == "mapped" || o.latent != "z", Usage,
           "--w-start mean starts the search at the mean W: use it with --latent w or w+ (with --latent z it would be "
           "ignored)");
  RW_CHECK(o.w_prior <= 0 || o.latent == "z", Usage,
           "the prior loss term assumes z ~ N(0, I): use it with --latent z only (got --latent ", o.latent, ")");
  RW_CHECK(o.w_identity <= 0 || has_embedder, Usage, "the identity loss needs --embedder");
  RW_CHECK(o.w_feature <= 0 || o.feature_net, Usage, "the feature loss needs --feature-net FILE --feature-layer NAME");
  RW_CHECK(o.scales >= 0 && o.scales <= 8, Usage, "--scales must be 0 (automatic) to 8, got ", o.scales);
  for (double w : {o.w_mse, o.w_l1, o.w_ssim, o.w_identity, o.w_prior, o.w_feature})
    RW_CHECK(std::isfinite(w) && w >= 0 && w <= 1e6, Usage, "loss weights must be finite, >= 0 and <= 1e6, got ", w);
  const bool refine_feature = o.refine.rfind("feature:", 0) == 0;
  const std::string refine_layer = refine_feature ? o.refine.substr(8) : "";
  RW_CHECK(o.refine == "none" || o.refine == "pixel" || refine_feature, Usage,
           "--refine must be none, pixel or feature:LAYER, got '", o.refine, "'");
  if (refine_feature) {
    RW_CHECK(o.latent == "z", Usage, "--refine feature:LAYER starts from z: use it with --latent z");
    const auto layers = g.feature_layers();
    std::string list;
    for (const auto& l : layers) list += (list.empty() ? "" : ", ") + l;
    RW_CHECK(!layers.empty(), Usage, g.describe(), " exposes no intermediate layers: use --refine pixel");
    RW_CHECK(std::find(layers.begin(), layers.end(), refine_layer) != layers.end(), Usage, "--refine feature:",
             refine_layer, ": ", g.describe(), " has the layers ", list);
  }
  RW_CHECK(o.loop.optimizer == "adam" || o.loop.optimizer == "lbfgs", Usage, "--optimizer must be adam or lbfgs, got '",
           o.loop.optimizer, "'");
  RW_CHECK(o.precision == "fp32" || o.precision == "bf16" || o.precision == "fp16", Usage,
           "--precision must be fp32, bf16 or fp16 (CUDA only), got '", o.precision, "'");
  if (o.precision != "fp32") {  // refused before any work
    const auto why = g.set_precision(o.precision);
    g.set_precision("fp32");
    RW_CHECK(why.empty(), Usage, "--precision ", o.precision, ": ", why);
  }
  RW_CHECK(o.loop.schedule == "cosine" || o.loop.schedule == "constant", Usage,
           "--schedule must be cosine or constant, got '", o.loop.schedule, "'");
}


InvertResult invert(models::Generator& g, const at::Tensor& targets, const InvertOptions& o,
                    models::Embedder* embedder, const ProgressFn& progress, const ChunkFn& on_chunk,
                    int64_t first_index, const std::vector<int64_t>& seed_ids) {
  const auto shape = g.output_shape();
  RW_CHECK(targets.dim() == 4 && targets.size(1) == shape.channels && targets.size(2) == shape.height &&
               targets.size(3) == shape.width,
           Input, "targets are ", targets.sizes(), ", the generator makes [N,", shape.channels, ",", shape.height, ",",
           shape.width, "]: load them at the generator's size and channels");
  check_options(g, o, embedder != nullptr);
  const int64_t scales = o.scales > 0 ? o.scales : (std::max(shape.height, shape.width) > 128 ? 3 : 1);
  const bool refine_feature = o.refine.rfind("feature:", 0) == 0;
  const std::string refine_layer = refine_feature ? o.refine.substr(8) : "";
  const bool refining = o.refine != "none";
  const int64_t n = targets.size(0), d = g.latent_dim();
  RW_CHECK(seed_ids.empty() || int64_t(seed_ids.size()) == n, Internal, "invert: ", seed_ids.size(), " seed ids for ", n,
           " targets");
  auto seed_id = [&](int64_t k) { return seed_ids.empty() ? first_index + k : seed_ids[size_t(k)]; };
  RW_CHECK(o.batch >= 0, Usage, "--batch must be >= 0 (0 = automatic), got ", o.batch);
  // --batch 0 on CUDA: a trial step, once per generator and options (pipelines call invert per segment)
  static std::mutex sized_mu;
  static std::map<std::string, int64_t> sized;
  const std::string size_key = g.id() + "|" + g.device().str() + "|" + std::to_string(o.restarts) + "|" + o.latent +
                               "|" + o.precision + "|" + std::to_string(o.w_identity > 0) + std::to_string(o.w_feature > 0) +
                               std::to_string(o.w_ssim > 0) + "|" + std::to_string(o.scales) +
                               (embedder ? "|" + embedder->id() : std::string());
  auto auto_rows = [&](const std::function<void(int64_t)>& trial) {
    if (!g.device().is_cuda()) return optim::auto_chunk_rows(g.device(), o.restarts, trial, "latent recovery");
    std::lock_guard<std::mutex> lk(sized_mu);
    auto it = sized.find(size_key);
    if (it == sized.end()) it = sized.emplace(size_key, optim::auto_chunk_rows(g.device(), o.restarts, trial, "latent recovery")).first;
    return it->second;
  };
  const int64_t budget =
      o.batch > 0 ? o.batch
                  : auto_rows([&](int64_t rows) {
                      // one step of the real objective on `rows` copies of the first target
                      const int64_t k = std::max<int64_t>(1, rows / o.restarts);
                      auto tgt = targets.slice(0, 0, 1).to(g.device()).expand({k * o.restarts, -1, -1, -1}).contiguous();
                      Problem p{g, o, embedder, tgt, {}, {}, g.latent_dim(), 1, {}};
                      p.prepare();
                      std::vector<int64_t> restart_of(size_t(k * o.restarts));
                      for (size_t j = 0; j < restart_of.size(); ++j) restart_of[j] = int64_t(j) % o.restarts;
                      auto v = to_space(g, o, torch::randn({k * o.restarts, g.latent_dim()}, at::detail::createCPUGenerator(1)).to(g.device()), restart_of)
                                   .detach()
                                   .requires_grad_(true);
                      models::PrecisionScope lowp(g, o.precision, "--precision");
                      p.weighted(p.terms(v, p.render(v), true)).sum().backward();
                    });
  const int64_t per_chunk = std::max<int64_t>(1, budget / o.restarts);
  const int64_t chunks = (n + per_chunk - 1) / per_chunk;
  const int64_t total_steps = chunks * (o.loop.steps + (refining ? o.refine_steps : 0));
  // the search runs where the generator lives; targets may come from anywhere (a CPU stream) and
  // the results go back to the targets' device
  const auto dev = g.device();
  const auto home = targets.device();

  std::vector<InvertResult> parts;
  InvertResult all;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t first = c * per_chunk, count = std::min(per_chunk, n - first);
    auto chunk_targets = targets.slice(0, first, first + count).to(dev);
    auto tgt = chunk_targets.repeat_interleave(o.restarts, 0);
    Problem p{g, o, embedder, tgt, {}, {}, d, scales, {}};
    p.prepare();
    std::vector<int64_t> ids(static_cast<size_t>(count));
    for (int64_t k = 0; k < count; ++k) ids[size_t(k)] = seed_id(first + k);
    std::vector<int64_t> restart_of(size_t(count * o.restarts));
    for (size_t j = 0; j < restart_of.size(); ++j) restart_of[j] = int64_t(j) % o.restarts;
    at::Tensor init = to_space(g, o, start_latents(ids, o.restarts, d, o.seed).to(dev), restart_of);
    // a restart whose loss went NaN/Inf restarts from a fresh draw of its own (seed, id, restart):
    // like the starts, it does not depend on which other targets share the chunk
    auto reset = [&](const at::Tensor& bad, at::Tensor& v) {
      torch::NoGradGuard ng;
      auto flags = bad.to(torch::kCPU).to(torch::kBool).contiguous();
      const bool* f = flags.data_ptr<bool>();
      for (int64_t j = 0; j < v.size(0); ++j) {
        if (!f[j]) continue;
        auto gen = at::detail::createCPUGenerator(
            mix_seed(o.seed ^ 0xBADull, uint64_t(ids[size_t(j / o.restarts)]), uint64_t(j % o.restarts)));
        auto fresh = to_space(g, o, torch::randn({1, d}, gen).to(dev), {1});  // a fresh draw, never the mean
        v[j].copy_(fresh[0]);
      }
    };
    auto objective = [&](const at::Tensor& v) { return p.weighted(p.terms(v, p.render(v), true)); };
    const int64_t base = c * (o.loop.steps + (refining ? o.refine_steps : 0));
    // Adam without early stopping runs fused (device-side state; capturable in a CUDA graph);
    // L-BFGS and early stopping go through the generic loop.
    optim::LoopResult res;
    {
      models::PrecisionScope lowp(g, o.precision, "--precision");
      res = optim::optimise(init, objective, o.loop, reset, progress, "invert", base, total_steps, o.cuda_graph);
    }
    // best restart per target
    InvertResult part;
    {
      torch::NoGradGuard ng;
      auto loss = res.best_loss.view({count, o.restarts});
      auto best = std::get<1>(loss.min(1));  // [count]
      auto rows = torch::arange(count, torch::kLong).to(dev) * o.restarts + best;
      auto v = res.best_vars.index_select(0, rows);
      auto x = p.render(v);
      Problem pb{g, o, embedder, chunk_targets, {}, {}, d, 1, {}};
      if (p.target_emb.defined()) pb.target_emb = p.target_emb.index_select(0, rows);
      if (p.target_feat.defined()) pb.target_feat = p.target_feat.index_select(0, rows);
      part.latents = v;
      part.recon = x;
      part.terms = pb.terms(v, x);
      part.loss = pb.weighted(part.terms);
      part.restart = best.to(torch::kLong);
      part.steps = res.steps;
      part.nan_resets = res.nan_resets;
    }
    if (refining) {
      // pixel: a bounded residual r on the image, x = clamp(G(v) + bound * tanh(r)): what the generator
      // cannot explain. feature:LAYER: the same on the generator's activations at LAYER, scaled by their
      // spread per item, x = tail(a + bound * std(a) * tanh(r)) (intermediate-layer optimisation, Bau et
      // al. 2019; Daras et al. 2021): what the layers after LAYER can still produce.
      auto tg = chunk_targets;
      at::Tensor base, scale;
      {
        torch::NoGradGuard ng;
        base = refine_feature ? g.head(part.latents, refine_layer).detach() : part.recon.detach();
        scale = refine_feature ? base.flatten(1).std(1).clamp_min(1e-6).view({-1, 1, 1, 1}) * o.refine_bound
                               : torch::full({1}, o.refine_bound, base.options());
      }
      auto image_of = [&](const at::Tensor& r) {
        auto moved = base + scale * torch::tanh(r);
        return (refine_feature ? g.tail(moved, refine_layer) : moved).clamp(-1, 1);
      };
      optim::LoopOptions lo = o.loop;
      lo.steps = o.refine_steps;
      lo.patience = 0;
      auto obj = [&](const at::Tensor& r) { return optim::mse(image_of(r), tg); };
      auto rr = optim::minimise(torch::zeros_like(base), obj, lo, [](const at::Tensor&, at::Tensor&) {}, progress,
                                "refine", c * (o.loop.steps + o.refine_steps) + o.loop.steps, total_steps);
      torch::NoGradGuard ng;
      part.refined = image_of(rr.best_vars);
      part.refined_mse = optim::mse(part.refined, tg);
    }
    if (dev != home) {
      for (auto* t : {&part.latents, &part.recon, &part.refined, &part.loss, &part.terms, &part.restart, &part.refined_mse})
        if (t->defined()) *t = t->to(home);
    }
    if (on_chunk) {  // the caller keeps the chunk (saves it): do not hold every chunk in memory
      on_chunk(first, part);
      all.steps = std::max(all.steps, part.steps);
      all.nan_resets += part.nan_resets;
      continue;
    }
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
