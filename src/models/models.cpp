// Loaders and adapters for the three model contracts (native files and TorchScript).
#include "rewind/models/models.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <cstdlib>
#include <optional>
#include <functional>
#include <mutex>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"
#include "rewind/models/face_resnet.h"
#include "rewind/models/native.h"
#include "rewind/models/nets.h"

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace rw::models {

at::Tensor Generator::mapping(const at::Tensor&) {
  RW_FAIL(Model, describe(), " has no mapping network: use --latent z");
}
at::Tensor Generator::synthesis(const at::Tensor&) {
  RW_FAIL(Model, describe(), " has no synthesis network: use --latent z");
}
at::Tensor Generator::head(const at::Tensor&, const std::string&) {
  RW_FAIL(Usage, describe(), " exposes no intermediate layers: --refine feature:LAYER needs a native generator; use "
          "--refine pixel");
}
at::Tensor Generator::tail(const at::Tensor& a, const std::string& layer) { return head(a, layer); }
at::Tensor Generator::w_avg() { RW_FAIL(Model, describe(), " has no mapping network, so no mean W: use --latent z"); }

void check_split(const SplitClassifier& c, const std::string& split) {
  auto names = c.split_points();
  if (std::find(names.begin(), names.end(), split) != names.end()) return;
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  RW_FAIL(Usage, "unknown split '", split, "' for ", c.describe(), "; valid splits: ", list);
}

namespace {

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? "," : "") + std::to_string(t.size(i));
  return s + "]";
}

void freeze(torch::nn::Module& m) {
  m.eval();
  for (auto& p : m.parameters()) p.set_requires_grad(false);
}

void freeze(torch::jit::Module& m) {
  m.eval();
  for (auto p : m.parameters()) p.set_requires_grad(false);
}

torch::jit::Module load_script(const std::string& path, const c10::Device& device) {
  RW_CHECK(fs::is_regular_file(path), Model, "model file '", path, "' does not exist");
  try {
    return torch::jit::load(path, device);
  } catch (const c10::Error& e) {
    std::string why = e.what_without_backtrace();
    RW_FAIL(Model, "'", path, "' is not a TorchScript or rewind model file (", why.substr(0, 160),
            "); export PyTorch models with torch.jit.script(model).save(path)");
  }
}

/// n deterministic images [n, C, H, W] in [-1, 1] of `s` for probes (a smooth pattern, not zeros).
at::Tensor probe_images(int64_t n, const ImageShape& s) {
  return torch::sin(torch::arange(n * s.channels * s.height * s.width, torch::kFloat32) * 0.37f)
      .view({n, s.channels, s.height, s.width});
}

/// Deterministic probe latents that do not touch the global RNG.
at::Tensor probe_latents(int64_t n, int64_t d) {
  auto idx = torch::arange(n * d, torch::kFloat32).view({n, d});
  return torch::sin(idx * 12.9898f + 78.233f) * 1.5f;
}

// An exception from inside a user's model in one line. TorchScript puts an interpreter trace
// before the real error, which is its last line ("RuntimeError: ..."); the whole text is logged
// at debug level (--verbose).
std::string one_line(const std::exception& e) {
  const auto* ce = dynamic_cast<const c10::Error*>(&e);
  const std::string s = ce ? ce->what_without_backtrace() : e.what();
  log_debug("the model's error in full:\n", s);
  std::string last;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string::npos) end = s.size();
    const std::string line = s.substr(start, end - start);
    const auto first = line.find_first_not_of(" \t\r");
    if (first != std::string::npos) last = line.substr(first);
    start = end + 1;
  }
  if (last.size() > 300) last = last.substr(0, 300) + "...";
  return last.empty() ? "(no message)" : last;
}

// Runs `f` (a call into a user's TorchScript model): any exception it raises becomes
// Error{kModel} naming the file and the method.
template <class F>
at::Tensor guarded(const std::string& path, const char* method, F&& f) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    RW_FAIL(Model, "TorchScript model '", path, "': ", method, " failed: ", one_line(e), " (--verbose shows its trace)");
  }
}

/// One method call on a TorchScript module: (module, method, input) -> output.
using ScriptCall = std::function<at::Tensor(torch::jit::Module&, const std::string&, const at::Tensor&)>;

/// A user's TorchScript module compiled for the CPU by torch::jit::freeze (weights become constants:
/// BatchNorm folds into the convolutions before it, attribute lookups and the modules' shape checks
/// leave the graph), kept only when every checked method's output and input gradient match the
/// module's on its probe input; else `note` says why and the module runs as it is.
/// Opt-in (REWIND_FREEZE=1, freeze_requested): measured on one thread, it gained nothing on a PyTorch
/// DCGAN-32 (2,168-2,201 vs 2,196-2,208 image-steps/s) and cost 9-15% on the StyleGAN-like test model.
struct FrozenScript {
  std::optional<torch::jit::Module> m;
  std::string note;
};

bool freeze_requested() {
  const char* on = std::getenv("REWIND_FREEZE");
  return on && std::string(on) == "1";
}

/// What freezing `what` did, said once per load.
void log_freeze(const std::string& what, const FrozenScript& f) {
  log_info(what, f.m ? ": frozen for the CPU (torch::jit::freeze; " : ": runs as exported, not frozen (", f.note, ")");
}

/// How far `b` is from `a` on the probes, the worst over them: the same weighted sum of outputs
/// differentiated through both, {largest output difference relative to max(1, |output|), input-gradient
/// difference relative to its norm}; throws when their shapes differ.
std::pair<double, double> probe_difference(const std::function<at::Tensor(const at::Tensor&)>& a,
                                           const std::function<at::Tensor(const at::Tensor&)>& b,
                                           const std::vector<at::Tensor>& probes) {
  auto run = [](const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& probe, at::Tensor* grad) {
    torch::AutoGradMode grad_on(true);  // the loaders probe under NoGradGuard
    auto x = probe.detach().clone().requires_grad_(true);
    auto y = f(x);
    auto v = torch::sin(torch::arange(y.numel(), y.options().dtype(torch::kFloat32)).view(y.sizes()) * 0.731f);
    *grad = torch::autograd::grad({(y * v).sum()}, {x})[0];
    return y.detach();
  };
  double out = 0, grad = 0;
  for (const auto& probe : probes) {
    at::Tensor ga, gb;
    auto ya = run(a, probe, &ga), yb = run(b, probe, &gb);
    RW_CHECK(ya.sizes() == yb.sizes(), Internal, "changes shape (", shape_str(ya), " vs ", shape_str(yb), ")");
    const double scale = std::max(1.0, ya.abs().max().item<double>());
    out = std::max(out, (ya - yb).abs().max().item<double>() / scale);
    grad = std::max(grad, (ga - gb).norm().item<double>() / std::max(ga.norm().item<double>(), 1e-12));
  }
  return {out, grad};
}

/// The tolerances a compiled form of a user's module must meet on the probes to replace it.
bool close_enough(double out, double grad) { return out <= 1e-4 && grad <= 1e-3; }

std::string within(double out, double grad) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "outputs within %.1e, input gradients within %.1e of the module", out, grad);
  return buf;
}

FrozenScript freeze_checked(const torch::jit::Module& m, const std::vector<std::string>& preserved,
                            const std::vector<std::pair<std::string, at::Tensor>>& checks, const ScriptCall& call) {
  FrozenScript out;
  torch::jit::Module frozen;
  try {
    auto copy = m.clone();
    copy.eval();
    frozen = torch::jit::freeze(copy, preserved, /*optimize_numerics=*/true);
  } catch (const std::exception& e) {
    out.note = "torch::jit::freeze failed: " + one_line(e);
    return out;
  }
  auto original = m;
  double worst_out = 0, worst_grad = 0;
  for (const auto& [method, probe] : checks) {
    try {
      auto [o, g] = probe_difference([&](const at::Tensor& x) { return call(original, method, x); },
                                     [&](const at::Tensor& x) { return call(frozen, method, x); }, {probe});
      worst_out = std::max(worst_out, o);
      worst_grad = std::max(worst_grad, g);
    } catch (const std::exception& e) {
      out.note = "the frozen " + method + " failed on a probe: " + one_line(e);
      return out;
    }
  }
  if (!close_enough(worst_out, worst_grad)) {
    out.note = "the frozen module differs from the module (output " + std::to_string(worst_out) + ", input gradient " +
               std::to_string(worst_grad) + " relative)";
    return out;
  }
  out.m = std::move(frozen);
  out.note = within(worst_out, worst_grad);
  return out;
}

// ---- a user's TorchScript DCGAN as FrozenDcgan ----------------------------------------------------

/// A TorchScript module's setting: an attribute, or a constant of its class (nn.Module's
/// __constants__, such as a convolution's stride, become class constants when scripted).
std::optional<c10::IValue> setting(const torch::jit::Module& m, const std::string& name) {
  if (m.hasattr(name)) return m.attr(name);
  if (auto c = m.type()->findConstant(name)) return *c;
  return std::nullopt;
}

std::vector<int64_t> int_list(const std::optional<c10::IValue>& v) {
  std::vector<int64_t> out;
  if (!v) return out;
  if (v->isInt()) return {v->toInt()};
  if (v->isIntList()) return v->toIntVector();
  if (v->isTuple())
    for (const auto& e : v->toTupleRef().elements())
      if (e.isInt()) out.push_back(e.toInt());
  return out;
}

at::Tensor tensor_or(const torch::jit::Module& m, const std::string& name, const at::Tensor& fallback) {
  auto v = setting(m, name);
  return v && v->isTensor() ? v->toTensor().detach().to(torch::kCPU, torch::kFloat32) : fallback;
}

struct Lowered {
  std::unique_ptr<FrozenDcgan> g;
  std::string note;  ///< why not, when g is null
};

/// The latents a compiled generator is checked on against the module: batches of 1, 4 and 9 (a forward
/// that depends on the batch size shows), spreads of 1, 3 and 1 with entries at +-6 (a clamp or a
/// saturation of z inside forward shows). Seeded, the same at every load.
std::vector<at::Tensor> compile_probes(int64_t d) {
  auto gen = at::detail::createCPUGenerator(0x70726f6265);  // "probe"
  auto wide = torch::randn({9, d}, gen);
  wide.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, std::min<int64_t>(d, 3))},
                  torch::tensor({6.f, -6.f, 4.5f}).narrow(0, 0, std::min<int64_t>(d, 3)));
  return {torch::randn({1, d}, gen), torch::randn({4, d}, gen) * 3, wide};
}

/// A user's TorchScript DCGAN generator as FrozenDcgan, when its leaf modules, in order, are torch.nn's
/// plain stack: a dense first layer (ConvTranspose2d from the 1x1 latent, stride 1, no padding, or
/// Linear) and then ConvTranspose2d(kernel 4, stride 2, padding 1) layers, each optionally followed by
/// its BatchNorm; ReLU and Tanh modules may sit anywhere (or be functional in forward): the stack
/// applies ReLU after every layer but the last and tanh after the last. Nothing else. The caller checks
/// the result against the module's forward (which may do more than run these modules in order).
Lowered lower_dcgan(const torch::jit::Module& root) {
  struct Leaf {
    torch::jit::Module m;
    std::string kind;  // torch.nn's class name; "" for a class that is not torch.nn's own
    std::string name;  // for messages: "net.3 (LeakyReLU)"
  };
  std::vector<Leaf> leaves;
  for (const auto& nm : root.named_modules()) {
    const auto& m = nm.value;
    if (m.children().size() != 0 || m._ivalue() == root._ivalue()) continue;
    const auto q = m.type()->name();
    const std::string qual = q ? q->qualifiedName() : "", cls = q ? q->name() : "?";
    const bool torch_nn = qual.rfind("__torch__.torch.nn.modules.", 0) == 0;
    if (torch_nn && (cls == "ReLU" || cls == "Tanh")) continue;  // the stack's activations are fixed, checked by the probes
    leaves.push_back({m, torch_nn ? cls : "", nm.name + " (" + cls + ")"});
  }
  auto refuse = [&](size_t i, const std::string& why) {
    return Lowered{nullptr, i < leaves.size() ? "module " + leaves[i].name + " " + why : why};
  };
  auto kind = [&](size_t i) { return i < leaves.size() ? leaves[i].kind : std::string(); };
  // an eval-mode BatchNorm at leaves[i] as per-channel {scale, shift} (identity when there is none); i moves past it
  auto batchnorm = [&](size_t& i, int64_t channels, at::Tensor* scale, at::Tensor* shift) -> std::string {
    *scale = torch::ones({channels});
    *shift = torch::zeros({channels});
    if (kind(i) != "BatchNorm2d" && kind(i) != "BatchNorm1d") return "";
    const auto& bn = leaves[i].m;
    auto mean = tensor_or(bn, "running_mean", {}), var = tensor_or(bn, "running_var", {});
    auto eps = setting(bn, "eps");
    if (!mean.defined() || !var.defined()) return "has no running statistics (track_running_stats=False)";
    if (mean.numel() != channels) return "has " + std::to_string(mean.numel()) + " channels, the layer before it " + std::to_string(channels);
    if (!eps || !eps->isDouble()) return "has no eps";
    std::tie(*scale, *shift) = batchnorm_affine(tensor_or(bn, "weight", torch::ones({channels})),
                                                tensor_or(bn, "bias", torch::zeros({channels})), mean, var, eps->toDouble());
    ++i;
    return "";
  };
  // groups 1, dilation 1, no output padding: what both kinds of ConvTranspose2d here need
  auto plain_conv = [&](size_t i) {
    const auto out_pad = int_list(setting(leaves[i].m, "output_padding")), dil = int_list(setting(leaves[i].m, "dilation"));
    auto groups = setting(leaves[i].m, "groups");
    return (out_pad.empty() || out_pad == std::vector<int64_t>{0, 0}) && (dil.empty() || dil == std::vector<int64_t>{1, 1}) &&
           (!groups || !groups->isInt() || groups->toInt() == 1);
  };
  for (size_t i = 0; i < leaves.size(); ++i)
    if (leaves[i].kind.empty())
      return refuse(i, "is the model's own class, not torch.nn's (only torch.nn's ConvTranspose2d, Linear, BatchNorm, ReLU and Tanh are read)");
  torch::NoGradGuard ng;
  size_t i = 0;
  at::Tensor fc_w, fc_b, s, t;
  int64_t c0 = 0, base = 0;
  std::string why;
  if (kind(0) == "ConvTranspose2d") {  // z [N, D, 1, 1] -> [N, c0, k, k]: a dense layer
    auto w = tensor_or(leaves[0].m, "weight", {});
    if (!w.defined() || w.dim() != 4 || w.size(2) != w.size(3) || !plain_conv(0) ||
        int_list(setting(leaves[0].m, "stride")) != std::vector<int64_t>{1, 1} ||
        int_list(setting(leaves[0].m, "padding")) != std::vector<int64_t>{0, 0})
      return refuse(0, "is not a plain stride-1, unpadded first layer from the 1x1 latent");
    c0 = w.size(1);
    base = w.size(2);
    fc_w = w.permute({1, 2, 3, 0}).reshape({c0 * base * base, w.size(0)});
    fc_b = tensor_or(leaves[0].m, "bias", torch::zeros({c0})).repeat_interleave(base * base);
    i = 1;
    if (!(why = batchnorm(i, c0, &s, &t)).empty()) return refuse(i, why);
    fc_w = fc_w * s.repeat_interleave(base * base).unsqueeze(1);
    fc_b = fc_b * s.repeat_interleave(base * base) + t.repeat_interleave(base * base);
  } else if (kind(0) == "Linear") {  // z -> [N, c0 * base * base], c0 the next layer's input channels
    auto w = tensor_or(leaves[0].m, "weight", {});
    if (!w.defined() || w.dim() != 2) return refuse(0, "has no weight");
    fc_w = w;
    fc_b = tensor_or(leaves[0].m, "bias", torch::zeros({w.size(0)}));
    i = 1;
    if (kind(i) == "BatchNorm2d") return refuse(i, "follows the dense layer: only BatchNorm1d is read there");
    if (!(why = batchnorm(i, w.size(0), &s, &t)).empty()) return refuse(i, why);
    fc_w = fc_w * s.unsqueeze(1);
    fc_b = fc_b * s + t;
  } else {
    return refuse(0, "does not start a DCGAN stack (ConvTranspose2d or Linear first)");
  }
  std::vector<FrozenDcgan::Up> ups;
  for (; i < leaves.size();) {
    if (kind(i) != "ConvTranspose2d") return refuse(i, "is not a ConvTranspose2d where the stack goes on");
    const auto& ct = leaves[i].m;
    auto w = tensor_or(ct, "weight", {});
    if (!w.defined() || w.dim() != 4 || w.size(2) != 4 || w.size(3) != 4 || !plain_conv(i) ||
        int_list(setting(ct, "stride")) != std::vector<int64_t>{2, 2} || int_list(setting(ct, "padding")) != std::vector<int64_t>{1, 1})
      return refuse(i, "is not a plain ConvTranspose2d(kernel 4, stride 2, padding 1), the shape the phase rewrite needs");
    if (ups.empty() && c0 == 0) {  // after a Linear: the first map's channels and side
      c0 = w.size(0);
      base = int64_t(std::lround(std::sqrt(double(fc_w.size(0)) / double(c0))));
      if (c0 * base * base != fc_w.size(0)) return refuse(i, "does not take the dense layer's output as a square map");
    }
    FrozenDcgan::Up up;
    up.bias = tensor_or(ct, "bias", torch::zeros({w.size(1)}));
    ++i;
    if (!(why = batchnorm(i, w.size(1), &s, &t)).empty()) return refuse(i, why);
    up.w = w * s.view({1, -1, 1, 1});
    up.bias = up.bias * s + t;
    up.relu = i < leaves.size();  // the last layer: tanh
    ups.push_back(std::move(up));
  }
  if (ups.empty()) return refuse(leaves.size(), "no ConvTranspose2d(4, 2, 1) follows the dense layer");
  return Lowered{std::make_unique<FrozenDcgan>(fc_w.contiguous(), fc_b.contiguous(), c0, base, std::move(ups)), ""};
}

/// --precision's dtype, or nullopt and *why when `p` cannot run on this device.
std::optional<torch::ScalarType> precision_dtype(const std::string& p, bool cuda, const std::string& who, std::string* why) {
  if (p == "fp32") return torch::kFloat32;
  if (p == "bf16") return torch::kBFloat16;
  if (p == "fp16") {
    if (cuda) return torch::kHalf;
    *why = who + ": fp16 runs on CUDA only (the CPU has no fast half-precision convolutions); use bf16 or fp32";
    return std::nullopt;
  }
  *why = "precision must be fp32, bf16 or fp16, got '" + p + "'";
  return std::nullopt;
}

/// set_precision for a generator that runs as the compiled `f`.
std::string set_compiled_precision(FrozenDcgan& f, const std::string& p, bool cuda, const std::string& who) {
  std::string why;
  const auto dt = precision_dtype(p, cuda, who, &why);
  if (!dt) return why;
  f.set_dtype(*dt);
  return "";
}

/// Whether a model's cast copy can stand in for it: "" when `low()` runs and stays within 0.1 of `fp32()` on
/// a probe (relative to fp32's largest magnitude when `relative`: logits and activations have any scale;
/// absolute for images in [-1, 1]), else why not, naming `who`.
std::string check_cast_copy(const std::string& who, const std::string& p, const c10::Device& dev,
                            const std::function<at::Tensor()>& fp32, const std::function<at::Tensor()>& low, bool relative) {
  torch::NoGradGuard ng;
  try {
    auto ref = fp32();
    double diff = (low().to(torch::kFloat32) - ref).abs().max().item<double>();
    if (relative) diff /= std::max(ref.abs().max().item<double>(), 1e-6);
    if (!(diff < 0.1))
      return who + " computes other outputs in " + p + " (" + (relative ? "relative" : "max") + " difference " +
             std::to_string(diff) + " on a probe, > 0.1): use fp32";
  } catch (const std::exception& e) {
    return who + " does not run in " + p + " on " + dev.str() + ": one of its layers has no working " + p +
           " kernel in this LibTorch (on the CPU, ConvTranspose2d for one; LibTorch said: " + one_line(e) + "); use fp32";
  }
  return "";
}

/// `v` in dtype `dt` (no copy when it is already).
at::Tensor cast_to(const at::Tensor& v, torch::ScalarType dt) { return v.scalar_type() == dt ? v : v.to(dt); }

/// The low-precision copy behind a model's set_precision: built and checked once per dtype, then kept
/// while the model switches to fp32 and back (invert and white-box switch once per chunk, after an
/// up-front check), so a switch costs nothing after the first.
template <class Copy>
struct CastCopy {
  std::optional<Copy> copy;                      ///< the cast model, for copy_dtype
  torch::ScalarType copy_dtype = torch::kFloat32;
  torch::ScalarType active = torch::kFloat32;    ///< the arithmetic in force; kFloat32 = the model itself
  bool on() const { return active != torch::kFloat32; }
  /// Sets precision `p` ("" or why not): `make(dt)` builds a cast copy, `check(copy, dt)` says "" when it
  /// may stand in for the model (check_cast_copy).
  template <class Make, class Check>
  std::string set(const std::string& p, bool cuda, const std::string& who, Make&& make, Check&& check) {
    std::string why;
    const auto dt = precision_dtype(p, cuda, who, &why);
    if (!dt) return why;
    if (*dt != torch::kFloat32 && (!copy || copy_dtype != *dt)) {
      Copy c = make(*dt);
      why = check(c, *dt);
      if (!why.empty()) return why;
      copy = std::move(c);
      copy_dtype = *dt;
    }
    active = *dt;
    return "";
  }
};

bool compile_requested() {
  const char* off = std::getenv("REWIND_COMPILE");
  return !(off && std::string(off) == "0");
}

}  // namespace

at::Tensor adapt_images(const at::Tensor& x, const ImageShape& s) {
  RW_CHECK(x.dim() == 4, Input, "images must be [N,C,H,W], got ", shape_str(x));
  at::Tensor y = x;
  if (y.size(1) != s.channels) {
    if (y.size(1) == 3 && s.channels == 1) y = y.mean(1, true);
    else if (y.size(1) == 1 && s.channels == 3) y = y.expand({-1, 3, -1, -1});
    else RW_FAIL(Input, "images have ", y.size(1), " channels, the model wants ", s.channels);
  }
  if (y.size(2) != s.height || y.size(3) != s.width)
    y = F::interpolate(y, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{s.height, s.width})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  return y;
}

namespace {

at::Tensor l2n(const at::Tensor& e) { return F::normalize(e, F::NormalizeFuncOptions().dim(1).eps(1e-12)); }

/// f(x moved to `dev`), returned on x's device: a model computes where it lives, its caller gets the
/// result where it keeps its data (no copy when they agree, as in every optimisation loop).
template <class Fn>
at::Tensor on_device(const c10::Device& dev, const at::Tensor& x, Fn&& f) {
  if (!x.defined() || x.device() == dev) return f(x);
  // a page-locked CPU batch (ImageStream on a CUDA run) is copied without blocking the host
  const bool async = x.is_cpu() && dev.is_cuda() && x.is_pinned();
  return f(x.to(x.options().device(dev), async)).to(x.device());
}

// ---- generators --------------------------------------------------------------------------------

class NativeGenerator : public Generator {
 public:
  NativeGenerator(const std::string& path, const nlohmann::json& arch)
      : arch_(GanArch::from_json(arch)), net_(arch_), path_(path), hash_(file_hash(path)) {
    load_native_weights(path, *net_);
    freeze(*net_);
    frozen_ = std::make_unique<FrozenDcgan>(*net_);
  }
  int64_t latent_dim() const override { return arch_.latent_dim; }
  ImageShape output_shape() const override { return {arch_.channels, arch_.resolution(), arch_.resolution()}; }
  /// On CPU the compiled form (FrozenDcgan: same function, 2.25x fewer multiply-adds) is faster; on
  /// CUDA cuDNN's single 3x3 convolution beat the compiled form's earlier four-convolution version
  /// (measured on an H100: 0.89x at 256x4 and slower at batch 8), so the module runs there.
  at::Tensor generate(const at::Tensor& z) override {
    return on_device(device_, z,
                     [&](const at::Tensor& v) { return device_.is_cuda() && !low_on_cuda_ ? net_->forward(v) : frozen_->forward(v); });
  }
  /// On CUDA, fp32 runs the module (cuDNN's 3x3 convolutions); bf16 / fp16 run the compiled form there too.
  std::string set_precision(const std::string& p) override {
    const auto why = set_compiled_precision(*frozen_, p, device_.is_cuda(), describe());
    if (why.empty()) low_on_cuda_ = device_.is_cuda() && p != "fp32";
    return why;
  }
  std::vector<std::string> feature_layers() const override { return net_->layer_names(); }
  at::Tensor head(const at::Tensor& z, const std::string& layer) override {
    return on_device(device_, z, [&](const at::Tensor& v) { return net_->head(v, layer); });
  }
  at::Tensor tail(const at::Tensor& a, const std::string& layer) override {
    return on_device(device_, a, [&](const at::Tensor& v) { return net_->tail(v, layer); });
  }
  void to(const c10::Device& d) override {
    net_->to(d);
    frozen_->to(d);
    device_ = d;
  }
  c10::Device device() const override { return device_; }
  std::string describe() const override {
    return "native " + arch_.name + " generator " + fs::path(path_).filename().string() + " (latent " +
           std::to_string(arch_.latent_dim) + ", " + std::to_string(arch_.channels) + "x" +
           std::to_string(arch_.resolution()) + "x" + std::to_string(arch_.resolution()) + ")";
  }

 private:
  GanArch arch_;
  DcganGenerator net_;
  std::unique_ptr<FrozenDcgan> frozen_;
  bool low_on_cuda_ = false;  ///< on CUDA in bf16 / fp16: the compiled form runs (fp32: the module)
  c10::Device device_ = c10::kCPU;
  std::string path_, hash_;

 public:
  std::string id() const override { return "native " + arch_.name + " generator:" + hash_; }  // contents, not the file name
};

class ScriptGenerator : public Generator {
 public:
  ScriptGenerator(const std::string& path, torch::jit::Module m) : m_(std::move(m)), path_(path), hash_(file_hash(path)) {
    RW_CHECK(m_.hasattr("latent_dim"), Model, "TorchScript generator '", path,
             "' has no attribute latent_dim: add `self.latent_dim: int = D` in __init__ before scripting");
    auto ld = m_.attr("latent_dim");
    RW_CHECK(ld.isInt() && ld.toInt() > 0, Model, "TorchScript generator '", path, "': latent_dim must be a positive int");
    latent_dim_ = w_dim_ = ld.toInt();
    has_mapping_ = m_.find_method("mapping").has_value() && m_.find_method("synthesis").has_value();
    if (m_.hasattr("num_ws")) {
      auto nw = m_.attr("num_ws");
      RW_CHECK(nw.isInt() && nw.toInt() > 0, Model, "TorchScript generator '", path, "': num_ws must be a positive int");
      RW_CHECK(has_mapping_, Model, "TorchScript generator '", path,
               "' has num_ws but no mapping(z) and synthesis(ws) methods (mark them @torch.jit.export)");
      num_ws_ = nw.toInt();
    }
    if (m_.hasattr("w_avg")) {
      auto wa = m_.attr("w_avg");
      RW_CHECK(wa.isTensor(), Model, "TorchScript generator '", path, "': w_avg must be a tensor [w_dim]");
      w_avg_ = wa.toTensor().detach().to(torch::kFloat32);
      own_w_avg_ = true;
    }
    freeze(m_);
  }
  int64_t latent_dim() const override { return latent_dim_; }
  ImageShape output_shape() const override { return shape_; }
  at::Tensor generate(const at::Tensor& z) override {
    return on_device(device_, z, [&](const at::Tensor& v) {
      if (lowered_ && !v.is_cuda()) return lowered_->forward(v);
      return guarded(path_, "forward(z)", [&] { return call("forward", v); });
    });
  }
  bool has_mapping() const override { return has_mapping_; }
  /// Compiled (CPU): the compiled form's layers in that precision. As exported: a copy of the module cast
  /// to it (weights are frozen, so no fp32 master copy is needed; the fp32 module is kept for fp32), inputs
  /// cast in and outputs back to fp32. On the CPU bf16 pays off only for compiled generators.
  std::string set_precision(const std::string& p) override {
    if (lowered_) return set_compiled_precision(*lowered_, p, false, describe());
    if (frozen_ && p != "fp32") return describe() + " is frozen (REWIND_FREEZE=1): it runs in fp32 only";
    return lowp_.set(p, device_.is_cuda(), describe(),
                     [&](torch::ScalarType dt) {
                       auto copy = m_.deepcopy();
                       copy.to(dt);
                       return copy;
                     },
                     [&](torch::jit::Module& copy, torch::ScalarType dt) {
                       // Debian's LibTorch 1.13 CPU ConvTranspose2d, for one, fails in bf16
                       const auto z = probe_latents(2, latent_dim_).to(device_);
                       return check_cast_copy(describe(), p, device_, [&] { return call_on(m_, "forward", z); },
                                              [&] { return call_on(copy, "forward", z.to(dt)); }, false);
                     });
  }
  int64_t w_dim() const override { return w_dim_; }
  int64_t num_ws() const override { return num_ws_; }
  at::Tensor mapping(const at::Tensor& z) override {
    if (!has_mapping_) return Generator::mapping(z);
    auto w = on_device(device_, z, [&](const at::Tensor& v) { return guarded(path_, "mapping(z)", [&] { return call("mapping", v); }); });
    return w.dim() == 3 ? w.select(1, 0) : w;  // StyleGAN2-ADA broadcasts w to [N, num_ws, w_dim]
  }
  at::Tensor synthesis(const at::Tensor& w) override {
    if (!has_mapping_) return Generator::synthesis(w);
    at::Tensor ws = w;
    if (num_ws_ > 0 && w.dim() == 2) ws = w.unsqueeze(1).expand({-1, num_ws_, -1});
    RW_CHECK(num_ws_ > 0 || w.dim() == 2, Usage, describe(),
             " has no attribute num_ws, so its synthesis takes one w [N, w_dim]: use --latent w or z, not w+");
    return on_device(device_, ws, [&](const at::Tensor& v) { return guarded(path_, "synthesis(ws)", [&] { return call("synthesis", v); }); });
  }
  at::Tensor w_avg() override {
    if (!has_mapping_) return Generator::w_avg();
    if (!w_avg_.defined()) {  // the mean of mapping() over 10000 seeded z
      torch::NoGradGuard ng;
      auto gen = at::detail::createCPUGenerator(0x5eed);
      at::Tensor sum = torch::zeros({w_dim_}, torch::kFloat64);
      for (int k = 0; k < 10; ++k)
        sum += mapping(torch::randn({1000, latent_dim_}, gen).to(device_)).to(torch::kCPU, torch::kFloat64).sum(0);
      w_avg_ = (sum / 10000.0).to(torch::kFloat32);
    }
    return w_avg_.to(device_);
  }
  void to(const c10::Device& d) override {
    m_.to(d);
    if (d != device_) {  // frozen and compiled for the CPU only (compile_for_cpu)
      frozen_.reset();
      lowered_.reset();
      if (lowp_.copy) lowp_.copy->to(d);
    }
    device_ = d;
  }
  c10::Device device() const override { return device_; }
  /// On CPU, a plain DCGAN (ConvTranspose2d / BatchNorm / ReLU / Tanh stack, no mapping) runs as FrozenDcgan
  /// when its outputs and input gradients match the module's on the compile probes: measured 1.6-2.6x plain
  /// PyTorch (experiments/results/bench-invert-cpu.md); REWIND_COMPILE=0 turns this off. Else, with
  /// REWIND_FREEZE=1, freezes the module (freeze_checked), checked on forward and, for style-based generators,
  /// mapping and synthesis. Logs once what it did.
  void compile_for_cpu() {
    if (!device_.is_cpu()) return;
    if (!has_mapping_ && compile_requested()) {
      std::string note;
      try {
        auto low = lower_dcgan(m_);
        note = low.note;
        if (low.g) {
          auto [o, g] = probe_difference([this](const at::Tensor& x) { return call("forward", x); },
                                         [&](const at::Tensor& x) { return low.g->forward(x); }, compile_probes(latent_dim_));
          if (close_enough(o, g)) {
            lowered_ = std::move(low.g);
            log_info(describe(), ": compiled for the CPU (ConvTranspose2d stack as phase convolutions; ", within(o, g), ")");
            return;
          }
          note = "the compiled stack differs from forward(z) (output " + std::to_string(o) + ", input gradient " +
                 std::to_string(g) + " relative), so forward does more than run its modules in order";
        }
      } catch (const std::exception& e) {
        log_debug(describe(), ": the compiled stack failed on a probe: ", e.what());
        note = "the stack read from its modules does not run on its shapes, so forward does more than run them in order";
      }
      log_info(describe(), ": runs as exported, not compiled for the CPU (", note, ")");
    }
    if (!freeze_requested()) return;  // no probe passes at load unless asked
    std::vector<std::string> keep = {"latent_dim"};
    for (const char* a : {"num_ws", "w_avg"})
      if (m_.hasattr(a)) keep.push_back(a);
    std::vector<std::pair<std::string, at::Tensor>> checks = {{"forward", probe_latents(3, latent_dim_)}};
    if (has_mapping_) {
      keep.push_back("mapping");
      keep.push_back("synthesis");
      auto z = probe_latents(3, latent_dim_);
      checks.push_back({"mapping", z});
      torch::NoGradGuard ng;
      at::Tensor w = mapping(z);
      checks.push_back({"synthesis", num_ws_ > 0 ? w.unsqueeze(1).expand({-1, num_ws_, -1}).contiguous() : w});
    }
    auto f = freeze_checked(m_, keep, checks, [this](torch::jit::Module& m, const std::string& method, const at::Tensor& x) {
      return call_on(m, method.c_str(), x);
    });
    log_freeze(describe(), f);
    if (f.m) frozen_ = std::move(f.m);
  }
  std::string describe() const override {
    std::string style;
    if (has_mapping_)
      style = num_ws_ ? ", style-based: w " + std::to_string(w_dim_) + " x " + std::to_string(num_ws_) + " layers"
                      : ", mapping: w " + std::to_string(w_dim_);
    return "TorchScript generator " + fs::path(path_).filename().string() + " (latent " + std::to_string(latent_dim_) +
           ", " + std::to_string(shape_.channels) + "x" + std::to_string(shape_.height) + "x" +
           std::to_string(shape_.width) + style + ")";
  }
  std::string id() const override { return "TorchScript generator:" + hash_; }  // contents, not the file name
  void set_shape(const ImageShape& s) { shape_ = s; }
  void set_w_dim(int64_t d) { w_dim_ = d; }
  bool has_own_w_avg() const { return own_w_avg_; }

 private:
  /// One method call, after reseeding torch's global generator: noise drawn inside the model is the
  /// same at every call (an optimisation needs a fixed function).
  at::Tensor call(const char* method, const at::Tensor& x) {
    if (lowp_.on()) return call_on(*lowp_.copy, method, cast_to(x, lowp_.active)).to(torch::kFloat32);
    return call_on(frozen_ ? *frozen_ : m_, method, x);
  }
  static at::Tensor call_on(torch::jit::Module& m, const char* method, const at::Tensor& x) {
    if (!x.is_cuda()) {  // CPU only: reseeding CUDA's generator would break CUDA graph capture
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(kNoiseSeed);
    }
    return m.get_method(method)({x}).toTensor();
  }
  static constexpr uint64_t kNoiseSeed = 0x6e6f697365;  // "noise"
  torch::jit::Module m_;
  std::optional<torch::jit::Module> frozen_;  ///< compile_for_cpu's, used by call() when set
  std::unique_ptr<FrozenDcgan> lowered_;      ///< compile_for_cpu's, used by generate() on the CPU when set
  CastCopy<torch::jit::Module> lowp_;         ///< set_precision's bf16 / fp16 copy of the module, used by call()
  std::string path_, hash_;
  int64_t latent_dim_ = 0, w_dim_ = 0, num_ws_ = 0;
  bool has_mapping_ = false, own_w_avg_ = false;
  at::Tensor w_avg_;
  c10::Device device_ = c10::kCPU;
  ImageShape shape_;
};

// ---- embedders ---------------------------------------------------------------------------------

class NativeCnnEmbedder : public Embedder {
 public:
  NativeCnnEmbedder(const std::string& path, const nlohmann::json& arch)
      : arch_(CnnArch::from_json(arch)), net_(make_cnn(arch_)), path_(path), hash_(file_hash(path)) {
    load_native_weights(path, *net_);
    freeze(*net_);
  }
  int64_t dim() const override { return arch_.outputs; }
  ImageShape input_shape() const override { return {arch_.channels, arch_.resolution(), arch_.resolution()}; }
  at::Tensor embed(const at::Tensor& x) override {
    return on_device(device_, x, [&](const at::Tensor& v) { return l2n(net_->forward(adapt_images(v, input_shape()))); });
  }
  void to(const c10::Device& d) override {
    net_->to(d);
    device_ = d;
  }
  c10::Device device() const override { return device_; }
  std::string describe() const override {
    return "native " + arch_.name + " embedder " + fs::path(path_).filename().string() + " (" + std::to_string(dim()) + "-d)";
  }
  std::string id() const override { return arch_.name + ":" + hash_; }

 private:
  CnnArch arch_;
  StagedNet net_;
  c10::Device device_ = c10::kCPU;
  std::string path_, hash_;
};

class FaceResNetEmbedder : public Embedder {
 public:
  explicit FaceResNetEmbedder(const std::string& path)
      : net_(load_face_resnet_native(path)), path_(path), hash_(file_hash(path)) {
    freeze(*net_);
  }
  int64_t dim() const override { return FaceResNetImpl::kDim; }
  ImageShape input_shape() const override {
    return {3, int(FaceResNetImpl::kInputSize), int(FaceResNetImpl::kInputSize)};
  }
  at::Tensor embed(const at::Tensor& x) override {
    return on_device(device_, x, [&](const at::Tensor& v) {
      auto y = adapt_images(v, input_shape());
      return l2n(net_->forward((y + 1.0) * 127.5));
    });
  }
  void to(const c10::Device& d) override {
    net_->to(d);
    device_ = d;
  }
  c10::Device device() const override { return device_; }
  std::string describe() const override {
    return "dlib face ResNet (face-api) " + fs::path(path_).filename().string() + " (128-d)";
  }
  std::string id() const override { return "face_resnet:" + hash_; }

 private:
  FaceResNet net_;
  c10::Device device_ = c10::kCPU;
  std::string path_, hash_;
};

class ScriptEmbedder : public Embedder {
 public:
  ScriptEmbedder(const std::string& path, torch::jit::Module m)
      : m_(std::move(m)), path_(path), hash_(file_hash(path)) {
    if (m_.hasattr("input_size") && m_.attr("input_size").isInt()) shape_.height = shape_.width = int(m_.attr("input_size").toInt());
    else shape_.height = shape_.width = 112;
    if (m_.hasattr("channels") && m_.attr("channels").isInt()) shape_.channels = int(m_.attr("channels").toInt());
    freeze(m_);
    torch::NoGradGuard ng;
    at::Tensor out;
    try {
      out = m_.forward({torch::zeros({2, shape_.channels, shape_.height, shape_.width})}).toTensor();
    } catch (const std::exception& e) {
      RW_FAIL(Model, "TorchScript embedder '", path, "' failed on a ", shape_.channels, "x", shape_.height, "x",
              shape_.width, " probe (", one_line(e), "); add int attributes input_size and channels to the module");
    }
    RW_CHECK(out.dim() == 2 && out.size(0) == 2, Model, "TorchScript embedder '", path, "' returns ",
             shape_str(out), " for 2 images, expected [2, d]");
    dim_ = out.size(1);
  }
  int64_t dim() const override { return dim_; }
  ImageShape input_shape() const override { return shape_; }
  at::Tensor embed(const at::Tensor& x) override {
    auto& m = frozen_ ? *frozen_ : m_;
    return on_device(device_, x, [&](const at::Tensor& v) {
      return l2n(guarded(path_, "forward(images)", [&] { return m.forward({adapt_images(v, shape_)}).toTensor(); }));
    });
  }
  void to(const c10::Device& d) override {
    m_.to(d);
    if (d != device_) frozen_.reset();
    device_ = d;
  }
  c10::Device device() const override { return device_; }
  /// As ScriptGenerator::compile_for_cpu, checked on a probe batch of images.
  void compile_for_cpu() {
    if (!freeze_requested() || !device_.is_cpu()) return;
    std::vector<std::string> keep;
    for (const char* a : {"input_size", "channels"})
      if (m_.hasattr(a)) keep.push_back(a);
    auto probe = probe_images(3, shape_);
    auto f = freeze_checked(m_, keep, {{"forward", probe}}, [](torch::jit::Module& m, const std::string& method, const at::Tensor& x) {
      return m.get_method(method)({x}).toTensor();
    });
    log_freeze(describe(), f);
    if (f.m) frozen_ = std::move(f.m);
  }
  std::string describe() const override {
    return "TorchScript embedder " + fs::path(path_).filename().string() + " (" + std::to_string(dim_) + "-d)";
  }
  std::string id() const override { return "torchscript:" + hash_; }

 private:
  torch::jit::Module m_;
  std::optional<torch::jit::Module> frozen_;
  c10::Device device_ = c10::kCPU;
  std::string path_, hash_;
  ImageShape shape_;
  int64_t dim_ = 0;
};

// ---- classifiers -------------------------------------------------------------------------------

class NativeClassifier : public SplitClassifier {
 public:
  NativeClassifier(const std::string& path, const nlohmann::json& arch)
      : arch_(CnnArch::from_json(arch)), net_(make_cnn(arch_)), path_(path), hash_(file_hash(path)) {
    load_native_weights(path, *net_);
    freeze(*net_);
  }
  std::vector<std::string> split_points() const override { return net_->names(); }
  ImageShape input_shape() const override { return {arch_.channels, arch_.resolution(), arch_.resolution()}; }
  int64_t num_classes() const override { return arch_.outputs; }
  at::Tensor head(const at::Tensor& x, const std::string& split) override {
    check_split(*this, split);
    return on_device(device_, x, [&](const at::Tensor& v) { return out(active()->run(in(v), "", split)); });
  }
  at::Tensor tail(const at::Tensor& a, const std::string& split) override {
    check_split(*this, split);
    if (split == net_->names().back()) return a;
    return on_device(device_, a, [&](const at::Tensor& v) { return out(active()->run(in(v), split, "")); });
  }
  at::Tensor forward(const at::Tensor& x) override {
    return on_device(device_, x, [&](const at::Tensor& v) { return out(active()->forward(in(v))); });
  }
  void to(const c10::Device& d) override {
    net_->to(d);
    if (lowp_.copy) (*lowp_.copy)->to(d);
    device_ = d;
  }
  /// A second copy of the network, cast, used when it agrees with fp32 on a probe (relative 0.1).
  std::string set_precision(const std::string& p) override {
    return lowp_.set(p, device_.is_cuda(), describe(),
                     [&](torch::ScalarType dt) {
                       auto copy = make_cnn(arch_);
                       load_native_weights(path_, *copy);
                       freeze(*copy);
                       copy->to(device_);
                       copy->to(dt);
                       return copy;
                     },
                     [&](StagedNet& copy, torch::ScalarType dt) {
                       const auto x = probe_images(2, input_shape()).to(device_);
                       return check_cast_copy(describe(), p, device_, [&] { return net_->forward(x); },
                                              [&] { return copy->forward(x.to(dt)); }, true);
                     });
  }
  c10::Device device() const override { return device_; }
  std::string describe() const override {
    return "native " + arch_.name + " classifier " + fs::path(path_).filename().string();
  }
  std::string id() const override { return "native " + arch_.name + " classifier:" + hash_; }
  std::vector<BatchNormStats> batchnorm_stats() const override {
    std::vector<BatchNormStats> out;
    for (const auto& child : net_->named_children())
      if (auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(child.value()))
        out.push_back({child.key(), bn->running_mean, bn->running_var});
    return out;
  }
  at::Tensor head_bn(const at::Tensor& x, const std::string& split, std::vector<at::Tensor>* bn_inputs) override {
    check_split(*this, split);
    const auto& names = net_->names();
    const int end = net_->index_of(split);
    auto net = active();
    at::Tensor a = in(x.to(device_));
    for (int i = 0; i <= end; ++i) {
      auto child = net->named_children()[names[size_t(i)]];
      if (bn_inputs && std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(child)) bn_inputs->push_back(out(a));
      a = net->run(a, i == 0 ? "" : names[size_t(i - 1)], names[size_t(i)]);
    }
    return out(a).to(x.device());
  }
  HeadFn inference_head(const std::string& split) override {
    check_split(*this, split);
    torch::NoGradGuard ng;
    const auto& names = net_->names();
    const int end = net_->index_of(split);
    auto children = net_->named_children();
    std::vector<HeadFn> ops;
    for (int i = 0; i <= end; ++i) {
      auto child = children[names[size_t(i)]];
      auto conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(child);
      auto bn = (conv && i < end) ? std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(children[names[size_t(i + 1)]])
                                  : nullptr;
      const auto* pad = conv ? c10::get_if<torch::ExpandingArray<2>>(&conv->options.padding()) : nullptr;
      if (conv && bn && pad && c10::get_if<torch::enumtype::kZeros>(&conv->options.padding_mode())) {
        // eval-mode BatchNorm is a per-channel affine map: fold it into the conv
        auto [scale, shift] = batchnorm_affine(bn->weight, bn->bias, bn->running_mean, bn->running_var, bn->options.eps());
        auto w = (conv->weight * scale.view({-1, 1, 1, 1})).to(lowp_.active).contiguous();
        auto b = (conv->bias.defined() ? conv->bias * scale + shift : shift).to(lowp_.active);
        std::vector<int64_t> stride(conv->options.stride()->begin(), conv->options.stride()->end()),
            padding((*pad)->begin(), (*pad)->end()),
            dilation(conv->options.dilation()->begin(), conv->options.dilation()->end());
        const int64_t groups = conv->options.groups();
        ops.push_back([w, b = b.contiguous(), stride, padding, dilation, groups](const at::Tensor& x) {
          return at::conv2d(x, w, b, stride, padding, dilation, groups);
        });
        ++i;  // the BatchNorm is done
      } else if (std::dynamic_pointer_cast<torch::nn::ReLUImpl>(child)) {
        ops.push_back([](const at::Tensor& x) { return at::relu(x); });
      } else {
        const std::string from = i == 0 ? "" : names[size_t(i - 1)], to = names[size_t(i)];
        ops.push_back([net = active(), from, to](const at::Tensor& x) mutable { return net->run(x, from, to); });
      }
    }
    return [ops = std::move(ops), dev = device_, dt = lowp_.active](const at::Tensor& x) {
      return on_device(dev, x, [&](const at::Tensor& v) {
        at::Tensor a = cast_to(v, dt);
        for (const auto& op : ops) a = op(a);
        return cast_to(a, torch::kFloat32);
      });
    };
  }

 private:
  StagedNet active() const { return lowp_.on() ? *lowp_.copy : net_; }
  at::Tensor in(const at::Tensor& v) const { return cast_to(v, lowp_.active); }
  static at::Tensor out(const at::Tensor& v) { return cast_to(v, torch::kFloat32); }

  CnnArch arch_;
  StagedNet net_;
  CastCopy<StagedNet> lowp_;  ///< set_precision's cast copy
  c10::Device device_ = c10::kCPU;
  std::string path_, hash_;
};

class ScriptClassifier : public SplitClassifier {
 public:
  ScriptClassifier(const std::string& path, torch::jit::Module m) : m_(std::move(m)), path_(path), hash_(file_hash(path)) {
    freeze(m_);
    head_tail_ = m_.find_method("head").has_value() && m_.find_method("tail").has_value();
    if (!head_tail_) collect(m_, "", stages_);
    RW_CHECK(head_tail_ || !stages_.empty(), Model, "TorchScript classifier '", path,
             "' has neither head/tail methods nor child modules to split between");
    probe(path);
  }
  std::vector<std::string> split_points() const override {
    if (head_tail_) return {"head"};
    std::vector<std::string> n;
    for (const auto& s : stages_) n.push_back(s.name);
    return n;
  }
  ImageShape input_shape() const override { return shape_; }
  int64_t num_classes() const override { return classes_; }
  at::Tensor head(const at::Tensor& x, const std::string& split) override {
    check_split(*this, split);
    return on_device(device_, x, [&](const at::Tensor& v) {
      if (head_tail_) return out(guarded(path_, "head(x)", [&] { return mod().get_method("head")({in(v)}).toTensor(); }));
      return out(run(in(v), 0, index(split)));
    });
  }
  at::Tensor tail(const at::Tensor& a, const std::string& split) override {
    check_split(*this, split);
    return on_device(device_, a, [&](const at::Tensor& v) {
      if (head_tail_) return out(guarded(path_, "tail(a)", [&] { return mod().get_method("tail")({in(v)}).toTensor(); }));
      return out(run(in(v), index(split) + 1, int(stages_.size()) - 1));
    });
  }
  at::Tensor forward(const at::Tensor& x) override {
    return on_device(device_, x, [&](const at::Tensor& v) {
      return out(guarded(path_, "forward(x)", [&] { return mod().forward({in(v)}).toTensor(); }));
    });
  }
  void to(const c10::Device& d) override {
    m_.to(d);
    if (lowp_.copy) lowp_.copy->m.to(d);  // its stages are its submodules
    device_ = d;
  }
  /// A cast copy of the module (its stages re-read from the copy), used when it agrees with fp32 on a
  /// probe (relative 0.1).
  std::string set_precision(const std::string& p) override {
    return lowp_.set(p, device_.is_cuda(), describe(),
                     [&](torch::ScalarType dt) {
                       Cast c{m_.deepcopy(), {}};
                       c.m.to(dt);
                       if (!head_tail_) collect(c.m, "", c.stages);
                       return c;
                     },
                     [&](Cast& c, torch::ScalarType dt) {
                       const auto x = probe_images(2, shape_).to(device_);
                       return check_cast_copy(describe(), p, device_, [&] { return m_.forward({x}).toTensor(); },
                                              [&] { return c.m.forward({x.to(dt)}).toTensor(); }, true);
                     });
  }
  c10::Device device() const override { return device_; }
  std::string describe() const override { return "TorchScript classifier " + fs::path(path_).filename().string(); }
  std::string id() const override { return "TorchScript classifier:" + hash_; }
  std::vector<BatchNormStats> batchnorm_stats() const override {
    std::vector<BatchNormStats> out;
    for (const auto& s : stages_)
      if (s.batchnorm) out.push_back({s.name, s.module.attr("running_mean").toTensor(), s.module.attr("running_var").toTensor()});
    return out;
  }
  at::Tensor head_bn(const at::Tensor& x, const std::string& split, std::vector<at::Tensor>* bn_inputs) override {
    check_split(*this, split);
    if (head_tail_) return head(x, split);
    at::Tensor a = in(x.to(device_));
    for (int i = 0; i <= index(split); ++i) {
      if (stages_[size_t(i)].batchnorm && bn_inputs) bn_inputs->push_back(out(a));
      a = run(a, i, i);
    }
    return out(a).to(x.device());
  }

 private:
  struct Stage {
    std::string name;
    torch::jit::Module module;
    bool linear;
    bool batchnorm = false;  ///< BatchNorm2d with running statistics
  };

  void collect(const torch::jit::Module& m, const std::string& prefix, std::vector<Stage>& stages) {
    for (const auto& child : m.named_children()) {
      std::string name = prefix.empty() ? child.name : prefix + "." + child.name;
      std::string type = child.value.type()->name() ? child.value.type()->name()->qualifiedName() : "";
      if (type.find("Sequential") != std::string::npos) collect(child.value, name, stages);
      else
        stages.push_back({name, child.value, type.find("Linear") != std::string::npos,
                           type.find("BatchNorm2d") != std::string::npos && child.value.hasattr("running_mean") &&
                               child.value.attr("running_mean").isTensor()});
    }
  }
  int index(const std::string& split) const {
    for (size_t i = 0; i < stages_.size(); ++i)
      if (stages_[i].name == split) return int(i);
    return -1;
  }
  at::Tensor run(at::Tensor x, int from, int to) {
    auto& st = lowp_.on() ? lowp_.copy->stages : stages_;
    for (int i = from; i <= to; ++i) {
      if (st[size_t(i)].linear && x.dim() > 2) x = x.flatten(1);
      x = guarded(path_, st[size_t(i)].name.c_str(), [&] { return st[size_t(i)].module.forward({x}).toTensor(); });
    }
    return x;
  }
  void probe(const std::string& path) {
    torch::NoGradGuard ng;
    std::vector<ImageShape> candidates = {{1, 28, 28}, {3, 32, 32}, {3, 64, 64}, {3, 224, 224}};
    if (m_.hasattr("input_size") && m_.attr("input_size").isInt()) {
      int s = int(m_.attr("input_size").toInt());
      int c = (m_.hasattr("channels") && m_.attr("channels").isInt()) ? int(m_.attr("channels").toInt()) : 3;
      candidates = {{c, s, s}};
    }
    for (const auto& s : candidates) {
      auto x = probe_images(2, s);
      at::Tensor out;
      try {
        out = m_.forward({x}).toTensor();
      } catch (const std::exception&) {  // not this input size: try the next
        continue;
      }
      RW_CHECK(out.dim() == 2 && out.size(0) == 2, Model, "TorchScript classifier '", path, "' returns ",
               shape_str(out), " for 2 images, expected logits [2, classes]");
      shape_ = s;
      classes_ = out.size(1);
      if (!head_tail_) {
        at::Tensor chained;
        try {
          chained = run(x, 0, int(stages_.size()) - 1);
        } catch (const c10::Error& e) {
          RW_FAIL(Model, "TorchScript classifier '", path, "': running its children in order fails (",
                  std::string(e.what_without_backtrace()).substr(0, 120),
                  "); export it with head(x) and tail(a) methods instead");
        }
        RW_CHECK(chained.sizes() == out.sizes() && torch::allclose(chained, out, 1e-4, 1e-4), Model,
                 "TorchScript classifier '", path, "': its forward() is not its children run in order, so it cannot "
                 "be split by child name; export it with head(x) and tail(a) methods instead");
      } else {
        auto ht = m_.get_method("tail")({m_.get_method("head")({x}).toTensor()}).toTensor();
        RW_CHECK(torch::allclose(ht, out, 1e-4, 1e-4), Model, "TorchScript classifier '", path,
                 "': tail(head(x)) differs from forward(x)");
      }
      return;
    }
    RW_FAIL(Model, "TorchScript classifier '", path,
            "' accepts none of the probe inputs 1x28x28, 3x32x32, 3x64x64, 3x224x224; add int attributes "
            "input_size and channels to the module");
  }

  torch::jit::Module& mod() { return lowp_.on() ? lowp_.copy->m : m_; }
  at::Tensor in(const at::Tensor& v) const { return cast_to(v, lowp_.active); }
  static at::Tensor out(const at::Tensor& v) { return cast_to(v, torch::kFloat32); }

  struct Cast {
    torch::jit::Module m;
    std::vector<Stage> stages;  ///< m's stages (the same names as stages_)
  };
  torch::jit::Module m_;
  CastCopy<Cast> lowp_;  ///< set_precision's cast copy
  c10::Device device_ = c10::kCPU;
  std::string path_, hash_;
  bool head_tail_ = false;
  std::vector<Stage> stages_;
  ImageShape shape_;
  int64_t classes_ = 0;
};

/// "a generator", "an embedder".
std::string with_article(const std::string& noun) {
  return (!noun.empty() && std::string("aeiou").find(noun[0]) != std::string::npos ? "an " : "a ") + noun;
}

/// The file a command was given as a `want` (a flag may take several kinds' files: --generator,
/// --reference-generator) holds that kind; else Error{kModel} naming both kinds.
void check_kind(const std::string& path, const nlohmann::json& arch, const std::string& want) {
  std::string kind = arch.value("kind", "");
  RW_CHECK(kind == want, Model, "'", path, "' holds ", with_article(kind.empty() ? "model of no kind" : kind), " (",
           arch.value("name", "?"), "), not ", with_article(want), ": this option takes ", with_article(want),
           "; give the file to the option for ", kind.empty() ? "its kind" : kind + "s", " instead");
}

/// mapping(z) -> [N, w_dim], synthesis of one w and of ws [N, num_ws, w_dim] -> the probe's images,
/// w_avg [w_dim]: the style-based contract, checked once at load with the file named.
void check_style_contract(const std::string& path, ScriptGenerator& g, const at::Tensor& x) {
  const auto z = probe_latents(2, g.latent_dim()).to(x.device());
  auto w = g.mapping(z);
  RW_CHECK(w.dim() == 2 && w.size(0) == 2, Model, "generator '", path, "': mapping(z) for z [2,", g.latent_dim(),
           "] returns ", shape_str(w), ", expected [2, w_dim] or [2, num_ws, w_dim]");
  g.set_w_dim(w.size(1));
  auto y = g.synthesis(w);
  RW_CHECK(y.sizes() == x.sizes(), Model, "generator '", path, "': synthesis(mapping(z)) is ", shape_str(y),
           ", forward(z) is ", shape_str(x));
  if (g.num_ws() > 0) {
    auto ws = w.unsqueeze(1).expand({-1, g.num_ws(), -1}).contiguous();
    auto y2 = g.synthesis(ws);
    RW_CHECK(y2.sizes() == x.sizes(), Model, "generator '", path, "': synthesis(ws [2,", g.num_ws(), ",", w.size(1),
             "]) is ", shape_str(y2), "; with num_ws set, synthesis must take [N, num_ws, w_dim]");
  }
  if (!g.has_own_w_avg()) return;
  auto wa = g.w_avg();
  RW_CHECK(wa.dim() == 1 && wa.size(0) == w.size(1), Model, "generator '", path, "': w_avg is ", shape_str(wa),
           ", expected [", w.size(1), "] (w_dim)");
}

}  // namespace

c10::Device default_device() { return c10::Device(rw::current_device()); }

std::unique_ptr<Generator> load_generator(const std::string& path, const c10::Device& device) {
  std::unique_ptr<Generator> g;
  if (is_native(path)) {
    auto arch = read_native_arch(path);
    check_kind(path, arch, "generator");
    g = std::make_unique<NativeGenerator>(path, arch);
  } else {
    g = std::make_unique<ScriptGenerator>(path, load_script(path, device));
  }
  g->to(device);
  torch::NoGradGuard ng;
  at::Tensor x;
  try {
    x = g->generate(probe_latents(2, g->latent_dim()).to(device));
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kModel)  // the model's own exception (guarded): add the likely cause
      RW_FAIL(Model, "generator '", path, "' fails on z of shape [2,", g->latent_dim(), "]: ", e.message(),
              "; is its latent_dim right?");
    throw;
  } catch (const std::exception& e) {
    RW_FAIL(Model, "generator '", path, "' fails on z of shape [2,", g->latent_dim(), "]: ", one_line(e),
            "; is its latent_dim right?");
  }
  RW_CHECK(x.dim() == 4 && x.size(0) == 2, Model, "generator '", path, "' output is ", shape_str(x),
           " for z [2,", g->latent_dim(), "], expected images [2,C,H,W]");
  RW_CHECK(x.size(1) == 1 || x.size(1) == 3, Model, "generator '", path, "' output is ", shape_str(x),
           ", expected 1 or 3 channels");
  RW_CHECK(torch::isfinite(x).all().item<bool>(), Model, "generator '", path, "' produces NaN/Inf");
  float lo = x.min().item<float>(), hi = x.max().item<float>();
  RW_CHECK(lo >= -1.01f && hi <= 1.01f, Model, "generator '", path, "' output ranges over [", lo, ", ", hi,
           "], expected [-1,1]: end the network with tanh, or rescale (x*2-1 for [0,1] outputs) before exporting");
  auto* sg = dynamic_cast<ScriptGenerator*>(g.get());
  if (sg) sg->set_shape({int(x.size(1)), int(x.size(2)), int(x.size(3))});
  if (sg && g->has_mapping()) check_style_contract(path, *sg, x);
  if (sg) sg->compile_for_cpu();
  return g;
}

std::unique_ptr<Embedder> load_embedder(const std::string& path, const c10::Device& device) {
  std::unique_ptr<Embedder> e;
  if (is_native(path)) {
    auto arch = read_native_arch(path);
    check_kind(path, arch, "embedder");
    if (arch.value("name", "") == "face_resnet") e = std::make_unique<FaceResNetEmbedder>(path);
    else e = std::make_unique<NativeCnnEmbedder>(path, arch);
  } else {
    e = std::make_unique<ScriptEmbedder>(path, load_script(path, device));
  }
  e->to(device);
  if (auto* se = dynamic_cast<ScriptEmbedder*>(e.get())) se->compile_for_cpu();
  return e;
}

std::unique_ptr<SplitClassifier> load_classifier(const std::string& path, const c10::Device& device) {
  std::unique_ptr<SplitClassifier> c;
  if (is_native(path)) {
    auto arch = read_native_arch(path);
    check_kind(path, arch, "classifier");
    c = std::make_unique<NativeClassifier>(path, arch);
  } else {
    c = std::make_unique<ScriptClassifier>(path, load_script(path, torch::kCPU));
  }
  c->to(device);
  return c;
}

}  // namespace rw::models
