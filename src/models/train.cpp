#include "rewind/models/train.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "rewind/core/error.h"
#include "rewind/core/runtime.h"
#include "rewind/identity/calibration.h"
#include "rewind/io/atomic_file.h"
#include "rewind/models/native.h"

namespace fs = std::filesystem;

namespace rw::models {

namespace {

using Clock = std::chrono::steady_clock;

struct CheckpointParts {
  std::vector<std::pair<std::string, torch::nn::Module*>> modules;
  std::vector<std::pair<std::string, torch::optim::Optimizer*>> optimizers;
  std::string data_hash;  ///< of the training images (and labels): a resume on other data is refused
};

/// Content hash of the training data as trained on (decoded images, labels), hashed in place.
std::string training_data_hash(const at::Tensor& images, const at::Tensor& labels = {}) {
  io::ContentHasher h;
  for (const auto& t : {images, labels}) {
    if (!t.defined()) continue;
    const auto c = t.contiguous().cpu();
    h.update(c.data_ptr(), size_t(c.numel()) * c.element_size());
  }
  return h.hex();
}

void save_checkpoint(const std::string& path, const CheckpointParts& parts, int64_t step) {
  torch::serialize::OutputArchive ar;
  for (auto& [name, m] : parts.modules) {
    torch::serialize::OutputArchive sub;
    m->save(sub);
    ar.write(name, sub);
  }
  for (auto& [name, o] : parts.optimizers) {
    torch::serialize::OutputArchive sub;
    o->save(sub);
    ar.write(name, sub);
  }
  ar.write("step", c10::IValue(step));
  if (!parts.data_hash.empty()) ar.write("data_hash", c10::IValue(parts.data_hash));
  ar.write("rng", at::detail::getDefaultCPUGenerator().get_state());
  io::write_via_temp(path, [&](const std::string& tmp) {
    ar.save_to(tmp);
    return true;
  });
}

int64_t load_checkpoint(const std::string& path, CheckpointParts& parts) {
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
    for (auto& [name, m] : parts.modules) {
      torch::serialize::InputArchive sub;
      RW_CHECK(ar.try_read(name, sub), Model, "checkpoint '", path, "' lacks '", name, "'");
      m->load(sub);
    }
    for (auto& [name, o] : parts.optimizers) {
      torch::serialize::InputArchive sub;
      RW_CHECK(ar.try_read(name, sub), Model, "checkpoint '", path, "' lacks '", name, "'");
      o->load(sub);
    }
    c10::IValue step, data;
    RW_CHECK(ar.try_read("step", step) && step.isInt(), Model, "checkpoint '", path, "' has no step");
    // a checkpoint of other training data would silently continue on this data
    RW_CHECK(parts.data_hash.empty() || !ar.try_read("data_hash", data) || !data.isString() ||
                 data.toStringRef() == parts.data_hash,
             Usage, "--resume: checkpoint '", path, "' was trained on other data than --data gives now; resume with "
             "the same data, or delete the checkpoint (or drop --resume) to start over");
    torch::Tensor rng;
    if (ar.try_read("rng", rng)) {
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      gen.set_state(rng);
    }
    return step.toInt();
  } catch (const c10::Error& e) {
    RW_FAIL(Model, "checkpoint '", path, "' cannot be resumed (", std::string(e.what_without_backtrace()).substr(0, 160),
            "); it was made with other options or is damaged: delete it or drop --resume");
  }
}

std::string fmt(const char* f, double a, double b) {
  char buf[96];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

void check_images(const at::Tensor& images, int channels, int res, const std::string& what) {
  RW_CHECK(images.dim() == 4 && images.size(0) > 0, Input, what, ": expected images [N,C,H,W], got ", images.sizes());
  RW_CHECK(images.size(1) == channels && images.size(2) == res && images.size(3) == res, Input, what, ": images are ",
           images.size(1), "x", images.size(2), "x", images.size(3), ", the architecture needs ", channels, "x", res,
           "x", res, " (pass --channels / --size, or another --arch)");
}

/// The epoch loop of the classifier and embedder trainers: a per-epoch seeded permutation (a resumed
/// run sees the same batches), cosine learning rate, checkpoints, progress and cancel (which writes a
/// checkpoint first). `train_batch(idx)` does one update on the rows idx and returns its loss.
/// Returns the step reached; *last_loss gets the last batch's loss.
int64_t run_epochs(int64_t n, int64_t batch, int64_t epochs, uint64_t seed, double base_lr, torch::optim::Adam& adam,
                   int64_t step, const std::string& stage, const std::string& ckpt, CheckpointParts& parts,
                   int64_t checkpoint_every, const ProgressFn& progress,
                   const std::function<double(const at::Tensor&)>& train_batch, double* last_loss) {
  const int64_t per_epoch = (n + batch - 1) / batch, total = per_epoch * epochs;
  try {
    while (step < total) {
      const int64_t epoch = step / per_epoch, k = step % per_epoch;
      auto gen = at::detail::createCPUGenerator(mix_seed(seed, uint64_t(epoch)));
      auto idx = torch::randperm(n, gen, torch::kLong).slice(0, k * batch, std::min(n, (k + 1) * batch));
      double lr = 0.5 * base_lr * (1 + std::cos(M_PI * double(step) / double(total)));
      for (auto& group : adam.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
      *last_loss = train_batch(idx);
      ++step;
      if (step % checkpoint_every == 0) save_checkpoint(ckpt, parts, step);
      report_progress(progress, {stage, step, total, fmt("epoch %.0f  loss %.4f", double(epoch + 1), *last_loss)});
    }
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kCancelled) save_checkpoint(ckpt, parts, step);
    throw;
  }
  save_checkpoint(ckpt, parts, step);
  return step;
}

/// Steps, wall time and throughput of a training call that ran steps [start, step) since t0.
TrainResult timed_result(int64_t step, int64_t start, int64_t batch, Clock::time_point t0) {
  TrainResult r;
  r.steps = step;
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.images_per_second = r.seconds > 0 ? double(step - start) * batch / r.seconds : 0;
  return r;
}

}  // namespace

TrainResult train_gan(const at::Tensor& images, const TrainGanOptions& opt, const ProgressFn& progress,
                      const SamplesFn& on_samples) {
  check_images(images, opt.arch.channels, opt.arch.resolution(), "train gan");
  RW_CHECK(!opt.out.empty(), Usage, "train gan needs --out FILE");
  RW_CHECK(opt.steps > 0 && opt.batch > 0, Usage, "--steps and --batch must be positive");
  const std::string ckpt = opt.checkpoint.empty() ? opt.out + ".ckpt" : opt.checkpoint;
  seed_everything(opt.seed);
  DcganGenerator g(opt.arch);
  DcganDiscriminator d(opt.arch);
  auto fixed = torch::randn({16, opt.arch.latent_dim});
  torch::optim::Adam opt_g(g->parameters(), torch::optim::AdamOptions(opt.lr).betas({opt.beta1, opt.beta2}));
  torch::optim::Adam opt_d(d->parameters(), torch::optim::AdamOptions(opt.lr).betas({opt.beta1, opt.beta2}));
  CheckpointParts parts{{{"generator", g.get()}, {"discriminator", d.get()}}, {{"opt_g", &opt_g}, {"opt_d", &opt_d}},
                        training_data_hash(images)};
  int64_t step = 0;
  if (opt.resume && fs::exists(ckpt)) step = load_checkpoint(ckpt, parts);

  auto emit_samples = [&](int64_t s) {
    if (!on_samples) return;
    torch::NoGradGuard ng;
    g->eval();
    on_samples(s, g->forward(fixed));
    g->train();
  };

  const auto t0 = Clock::now();
  const int64_t start = step, n = images.size(0);
  double g_loss_v = 0, d_loss_v = 0;
  g->train();
  d->train();
  try {
    for (; step < opt.steps; ++step) {
      auto real = images.index_select(0, torch::randint(n, {opt.batch}, torch::kLong));
      // discriminator (hinge)
      auto fake = g->forward(torch::randn({opt.batch, opt.arch.latent_dim}));
      auto d_loss = torch::relu(1.0 - d->forward(real)).mean() + torch::relu(1.0 + d->forward(fake.detach())).mean();
      opt_d.zero_grad();
      d_loss.backward();
      opt_d.step();
      // generator
      auto g_loss = -d->forward(g->forward(torch::randn({opt.batch, opt.arch.latent_dim}))).mean();
      opt_g.zero_grad();
      g_loss.backward();
      opt_g.step();
      d_loss_v = d_loss.item<double>();
      g_loss_v = g_loss.item<double>();
      RW_CHECK(std::isfinite(d_loss_v) && std::isfinite(g_loss_v), Internal,
               "GAN training diverged at step ", step + 1, " (loss NaN); lower --lr");
      if ((step + 1) % opt.checkpoint_every == 0) save_checkpoint(ckpt, parts, step + 1);
      if (opt.sample_every > 0 && (step + 1) % opt.sample_every == 0) emit_samples(step + 1);
      report_progress(progress, {"train gan", step + 1, opt.steps, fmt("D %.3f  G %.3f", d_loss_v, g_loss_v)});
    }
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kCancelled) save_checkpoint(ckpt, parts, step + 1);
    throw;
  }
  save_checkpoint(ckpt, parts, step);
  g->eval();
  save_native(opt.out, *g, opt.arch.to_json("generator"));
  save_native(opt.out + ".disc", *d, opt.arch.to_json("discriminator"));
  emit_samples(step);

  TrainResult r = timed_result(step, start, opt.batch, t0);
  r.final_loss = g_loss_v;
  r.final_aux = d_loss_v;
  return r;
}

double evaluate_accuracy(StagedNet& net, const at::Tensor& images, const at::Tensor& labels, int64_t batch) {
  torch::NoGradGuard ng;
  bool was_training = net->is_training();
  net->eval();
  int64_t correct = 0, n = images.size(0);
  for (int64_t i = 0; i < n; i += batch) {
    auto x = images.slice(0, i, std::min(n, i + batch));
    auto y = labels.slice(0, i, std::min(n, i + batch));
    correct += net->forward(x).argmax(1).eq(y).sum().item<int64_t>();
  }
  if (was_training) net->train();
  return n ? double(correct) / n : 0.0;
}

TrainResult train_classifier(const at::Tensor& images, const at::Tensor& labels, const at::Tensor& val_images,
                             const at::Tensor& val_labels, const TrainClassifierOptions& opt,
                             const ProgressFn& progress) {
  check_images(images, opt.arch.channels, opt.arch.resolution(), "train classifier");
  RW_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0), Input, "labels must be [N] for N images");
  RW_CHECK(labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < opt.arch.outputs, Input,
           "labels must lie in [0, ", opt.arch.outputs, ")");
  RW_CHECK(!opt.out.empty(), Usage, "train classifier needs --out FILE");
  const std::string ckpt = opt.checkpoint.empty() ? opt.out + ".ckpt" : opt.checkpoint;
  seed_everything(opt.seed);
  StagedNet net = make_cnn(opt.arch);
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(opt.lr).weight_decay(opt.weight_decay));
  CheckpointParts parts{{{"net", net.get()}}, {{"opt", &adam}}, training_data_hash(images, labels)};
  int64_t step = 0;
  if (opt.resume && fs::exists(ckpt)) step = load_checkpoint(ckpt, parts);
  const auto t0 = Clock::now();
  const int64_t start = step;
  double loss_v = 0;
  net->train();
  step = run_epochs(images.size(0), opt.batch, opt.epochs, opt.seed, opt.lr, adam, step, "train classifier", ckpt,
                    parts, opt.checkpoint_every, progress, [&](const at::Tensor& idx) {
                      auto loss = torch::nn::functional::cross_entropy(net->forward(images.index_select(0, idx)),
                                                                       labels.index_select(0, idx));
                      adam.zero_grad();
                      loss.backward();
                      adam.step();
                      return loss.item<double>();
                    }, &loss_v);
  net->eval();
  auto arch = opt.arch.to_json("classifier");
  arch.update(opt.arch_extra);
  save_native(opt.out, *net, arch);
  TrainResult r = timed_result(step, start, opt.batch, t0);
  r.final_loss = loss_v;
  r.final_aux = val_images.defined() && val_images.size(0) > 0 ? evaluate_accuracy(net, val_images, val_labels) : 0.0;
  return r;
}

at::Tensor embed_with(StagedNet& net, const at::Tensor& images, int64_t batch) {
  torch::NoGradGuard ng;
  bool was_training = net->is_training();
  net->eval();
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < images.size(0); i += batch)
    out.push_back(net->forward(images.slice(0, i, std::min(images.size(0), i + batch))));
  if (was_training) net->train();
  return torch::nn::functional::normalize(torch::cat(out), torch::nn::functional::NormalizeFuncOptions().dim(1));
}

TrainResult train_embedder(const at::Tensor& images, const at::Tensor& ids, const at::Tensor& val_images,
                           const at::Tensor& val_ids, const TrainEmbedderOptions& opt, const ProgressFn& progress) {
  check_images(images, opt.arch.channels, opt.arch.resolution(), "train embedder");
  RW_CHECK(ids.dim() == 1 && ids.size(0) == images.size(0), Input, "identity ids must be [N] for N images");
  RW_CHECK(!opt.out.empty(), Usage, "train embedder needs --out FILE");
  const int64_t classes = ids.max().item<int64_t>() + 1;
  RW_CHECK(classes >= 2, Input, "train embedder needs at least two identities");
  const std::string ckpt = opt.checkpoint.empty() ? opt.out + ".ckpt" : opt.checkpoint;
  seed_everything(opt.seed);
  StagedNet net = make_cnn(opt.arch);
  // CosFace head: one normalised weight vector per training identity
  struct HeadImpl : torch::nn::Module {
    HeadImpl(int64_t k, int64_t d) { w = register_parameter("w", torch::randn({k, d}) * 0.01); }
    torch::Tensor w;
  };
  auto head = std::make_shared<HeadImpl>(classes, opt.arch.outputs);
  std::vector<torch::Tensor> params = net->parameters();
  params.push_back(head->w);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(opt.lr).weight_decay(opt.weight_decay));
  CheckpointParts parts{{{"net", net.get()}, {"head", head.get()}}, {{"opt", &adam}}, training_data_hash(images, ids)};
  int64_t step = 0;
  if (opt.resume && fs::exists(ckpt)) step = load_checkpoint(ckpt, parts);
  namespace F = torch::nn::functional;
  const auto t0 = Clock::now();
  const int64_t start = step;
  double loss_v = 0;
  net->train();
  step = run_epochs(images.size(0), opt.batch, opt.epochs, opt.seed, opt.lr, adam, step, "train embedder", ckpt, parts,
                    opt.checkpoint_every, progress, [&](const at::Tensor& idx) {
                      auto y = ids.index_select(0, idx);
                      auto e = F::normalize(net->forward(images.index_select(0, idx)), F::NormalizeFuncOptions().dim(1));
                      auto cos = torch::mm(e, F::normalize(head->w, F::NormalizeFuncOptions().dim(1)).t());
                      auto logits = opt.scale * (cos - opt.margin * F::one_hot(y, classes).to(cos.dtype()));
                      auto loss = F::cross_entropy(logits, y);
                      adam.zero_grad();
                      loss.backward();
                      adam.step();
                      return loss.item<double>();
                    }, &loss_v);
  net->eval();
  save_native(opt.out, *net, opt.arch.to_json("embedder"));
  TrainResult r = timed_result(step, start, opt.batch, t0);
  r.final_loss = loss_v;
  if (val_images.defined() && val_images.size(0) > 1) {
    auto cal = identity::calibrate(embed_with(net, val_images), val_ids, {1e-3});
    r.final_aux = cal.points[0].tar;
  }
  return r;
}

}  // namespace rw::models
