#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>

#include "rewind/core/error.h"
#include "rewind/models/models.h"
#include "rewind/models/native.h"
#include "rewind/models/nets.h"
#include "rewind/models/train.h"
#include "test_util.h"

using namespace rw;
using namespace rw::models;
using rw::test::TempDir;
using rw::test::read_text;
using rw::test::write_text;
namespace fs = std::filesystem;

namespace {

GanArch tiny_gan(const std::string& name = "dcgan32", int channels = 3) {
  GanArch a;
  a.name = name;
  a.latent_dim = 8;
  a.channels = channels;
  a.width = 4;
  return a;
}

CnnArch tiny_cnn() {
  CnnArch a;
  a.name = "cnn28";
  a.channels = 1;
  a.width = 4;
  a.outputs = 3;
  return a;
}

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  return "<no error>";
}

// A TorchScript generator built in C++ (what a PyTorch user would export).
torch::jit::Module script_generator(bool with_latent_dim, const std::string& body) {
  torch::jit::Module m("Gen");
  if (with_latent_dim) m.register_attribute("latent_dim", c10::IntType::get(), 6);
  torch::manual_seed(0);
  m.register_parameter("w", torch::randn({6, 3 * 8 * 8}) * 0.1, false);
  m.define("def forward(self, z):\n" + body);
  return m;
}

}  // namespace

TEST(Models, GanShapesPerArch) {
  for (auto [name, res] : std::vector<std::pair<std::string, int>>{{"dcgan28", 28}, {"dcgan32", 32}, {"dcgan64", 64}}) {
    auto a = tiny_gan(name, 1);
    DcganGenerator g(a);
    DcganDiscriminator d(a);
    auto x = g->forward(torch::randn({2, a.latent_dim}));
    EXPECT_EQ(x.sizes(), (std::vector<int64_t>{2, 1, res, res})) << name;
    EXPECT_LE(x.abs().max().item<float>(), 1.0f);
    EXPECT_EQ(d->forward(x).sizes(), (std::vector<int64_t>{2})) << name;
  }
  EXPECT_NE(error_of([] { tiny_gan("dcgan99").resolution(); }).find("dcgan28"), std::string::npos);
}

TEST(Models, SpectralNormBoundsTheWeight) {
  torch::manual_seed(11);
  SNConv2d c(3, 5, 3, 1, 1);
  c->train();
  // one power iteration per training forward; convergence goes as (sigma2 / sigma1)^k
  for (int i = 0; i < 300; ++i) c->forward(torch::randn({1, 3, 4, 4}));
  auto w = c->named_parameters()["weight"].view({5, -1});
  auto u = c->named_buffers()["u"];
  auto v = torch::mv(w.t(), u);
  auto sigma_est = torch::dot(u, torch::mv(w, v / v.norm()));
  auto sigma_true = std::get<1>(torch::svd(w))[0];
  EXPECT_NEAR(sigma_est.item<float>(), sigma_true.item<float>(), 1e-3 * sigma_true.item<float>());
}

TEST(Models, NativeGeneratorRoundTrip) {
  TempDir d;
  auto a = tiny_gan();
  torch::manual_seed(3);
  DcganGenerator g(a);
  g->eval();
  save_native(d / "g.pt", *g, a.to_json("generator"));
  EXPECT_TRUE(is_native(d / "g.pt"));
  EXPECT_EQ(read_native_arch(d / "g.pt")["name"], "dcgan32");
  auto loaded = load_generator(d / "g.pt");
  EXPECT_EQ(loaded->latent_dim(), 8);
  EXPECT_EQ(loaded->output_shape().height, 32);
  auto z = torch::randn({3, 8});
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::allclose(loaded->generate(z), g->forward(z), 1e-4, 1e-5));
  EXPECT_NE(loaded->describe().find("dcgan32"), std::string::npos);
}

TEST(Models, GeneratorGradientsFlowToLatentsOnly) {
  TempDir d;
  auto a = tiny_gan();
  DcganGenerator g(a);
  g->eval();
  save_native(d / "g.pt", *g, a.to_json("generator"));
  auto gen = load_generator(d / "g.pt");
  auto z = torch::randn({2, 8}, torch::requires_grad());
  gen->generate(z).square().sum().backward();
  ASSERT_TRUE(z.grad().defined());
  EXPECT_GT(z.grad().abs().sum().item<float>(), 0.0f);
}

TEST(Models, BadModelFilesGiveClearErrors) {
  TempDir d;
  write_text(d / "garbage.pt", "not a zip at all");
  EXPECT_NE(error_of([&] { load_generator(d / "garbage.pt"); }).find("garbage.pt"), std::string::npos);
  EXPECT_NE(error_of([&] { load_generator(d / "missing.pt"); }).find("does not exist"), std::string::npos);
  // truncated native file
  auto a = tiny_gan();
  DcganGenerator g(a);
  save_native(d / "g.pt", *g, a.to_json("generator"));
  auto bytes = read_text(d / "g.pt");
  write_text(d / "trunc.pt", bytes.substr(0, bytes.size() / 2));
  auto msg = error_of([&] { load_generator(d / "trunc.pt"); });
  EXPECT_NE(msg.find("trunc.pt"), std::string::npos) << msg;
  // a classifier passed as a generator
  auto c = make_cnn(tiny_cnn());
  save_native(d / "c.pt", *c, tiny_cnn().to_json("classifier"));
  msg = error_of([&] { load_generator(d / "c.pt"); });
  EXPECT_NE(msg.find("holds a classifier"), std::string::npos) << msg;
  // weights of another width
  auto wide = tiny_gan();
  wide.width = 8;
  DcganGenerator gw(wide);
  save_native(d / "mismatch.pt", *gw, a.to_json("generator"));  // record says width 4
  msg = error_of([&] { load_generator(d / "mismatch.pt"); });
  EXPECT_NE(msg.find("the architecture needs"), std::string::npos) << msg;
}

TEST(Models, TorchScriptGeneratorContract) {
  TempDir d;
  const std::string ok = "    return torch.tanh(z @ self.w).view(-1, 3, 8, 8)\n";
  script_generator(true, ok).save(d / "ok.pt");
  auto g = load_generator(d / "ok.pt");
  EXPECT_EQ(g->latent_dim(), 6);
  EXPECT_EQ(g->output_shape().channels, 3);
  EXPECT_EQ(g->output_shape().height, 8);
  EXPECT_FALSE(g->has_mapping());
  EXPECT_NE(error_of([&] { g->mapping(torch::zeros({1, 6})); }).find("--latent z"), std::string::npos);

  script_generator(false, ok).save(d / "nold.pt");
  EXPECT_NE(error_of([&] { load_generator(d / "nold.pt"); }).find("latent_dim"), std::string::npos);

  script_generator(true, "    return (z @ self.w).view(-1, 3, 8, 8) * 100.0\n").save(d / "range.pt");
  EXPECT_NE(error_of([&] { load_generator(d / "range.pt"); }).find("expected [-1,1]"), std::string::npos);

  script_generator(true, "    return torch.tanh(z @ self.w).view(-1, 2, 12, 8)\n").save(d / "chan.pt");
  EXPECT_NE(error_of([&] { load_generator(d / "chan.pt"); }).find("1 or 3 channels"), std::string::npos);

  script_generator(true, "    return torch.tanh(z @ self.w)\n").save(d / "rank.pt");
  EXPECT_NE(error_of([&] { load_generator(d / "rank.pt"); }).find("expected images [2,C,H,W]"), std::string::npos);
}

// Exceptions raised inside a user's TorchScript model are Error{kModel} (exit 4) naming the file
// and the method, in one line; they were "internal error" (exit 1) with a 25-line trace.
TEST(Models, TorchScriptExceptionsAreModelErrors) {
  TempDir d;
  // latent_dim says 6 but forward needs 4-d latents
  torch::jit::Module liar("Gen");
  liar.register_attribute("latent_dim", c10::IntType::get(), 6);
  liar.register_parameter("w", torch::randn({4, 3 * 8 * 8}) * 0.1, false);
  liar.define("def forward(self, z):\n    return torch.tanh(z @ self.w).view(-1, 3, 8, 8)\n");
  liar.save(d / "liar.pt");
  try {
    load_generator(d / "liar.pt");
    FAIL() << "a generator with a wrong latent_dim loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    const std::string m = e.message();
    EXPECT_NE(m.find("liar.pt"), std::string::npos) << m;
    EXPECT_NE(m.find("latent_dim"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "not one line: " << m;
  }
  // a model that fails on some inputs only (here: any batch but 2, the load probe's), after loading fine
  script_generator(true, "    return torch.tanh(z @ self.w).view(2, 3, 8, 8)\n").save(d / "raiser.pt");
  auto g = load_generator(d / "raiser.pt");
  try {
    torch::NoGradGuard ng;
    g->generate(torch::zeros({3, 6}));
    FAIL() << "the model's exception was lost";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    const std::string m = e.message();
    EXPECT_NE(m.find("raiser.pt"), std::string::npos) << m;
    EXPECT_NE(m.find("forward(z)"), std::string::npos) << m;
    EXPECT_NE(m.find("is invalid for input of size"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "not one line: " << m;
  }
}

TEST(Models, NativeClassifierSplitsEverywhere) {
  TempDir d;
  torch::manual_seed(1);
  auto a = tiny_cnn();
  auto net = make_cnn(a);
  net->eval();
  save_native(d / "c.pt", *net, a.to_json("classifier"));
  auto c = load_classifier(d / "c.pt");
  auto names = c->split_points();
  for (const char* want : {"conv1", "bn1", "relu2", "pool1", "pool2", "flatten", "fc1", "fc2"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  torch::NoGradGuard ng;
  auto x = torch::randn({2, 1, 28, 28});
  auto full = c->forward(x);
  EXPECT_EQ(full.sizes(), (std::vector<int64_t>{2, 3}));
  for (const auto& s : names) EXPECT_TRUE(torch::allclose(c->tail(c->head(x, s), s), full, 1e-5, 1e-5)) << s;
  auto msg = error_of([&] { c->head(x, "conv9"); });
  EXPECT_NE(msg.find("valid splits: conv1, bn1"), std::string::npos) << msg;
}

TEST(Models, TorchScriptClassifierByChildrenOrHeadTail) {
  TempDir d;
  auto make_child = [](const std::string& cls, torch::Tensor w) {
    torch::jit::Module m(cls);
    m.register_parameter("w", w, false);
    m.define("def forward(self, x):\n    return torch.relu(x * self.w)\n");
    return m;
  };
  torch::jit::Module seq("__torch__.torch.nn.modules.container.Sequential");
  seq.register_module("c0", make_child("A", torch::full({1}, 2.0)));
  seq.register_module("c1", make_child("B", torch::full({1}, 0.5)));
  seq.define("def forward(self, x):\n    return self.c1.forward(self.c0.forward(x))\n");
  torch::jit::Module top("Net");
  top.register_module("features", seq);
  torch::jit::Module fc("Linear");
  fc.register_parameter("weight", torch::randn({4, 3 * 8 * 8}), false);
  fc.define("def forward(self, x):\n    return x @ self.weight.t()\n");
  top.register_module("classifier", fc);
  top.register_attribute("input_size", c10::IntType::get(), 8);
  top.register_attribute("channels", c10::IntType::get(), 3);
  top.define("def forward(self, x):\n    return self.classifier.forward(torch.flatten(self.features.forward(x), 1))\n");
  top.save(d / "children.pt");
  auto c = load_classifier(d / "children.pt");
  EXPECT_EQ(c->split_points(), (std::vector<std::string>{"features.c0", "features.c1", "classifier"}));
  EXPECT_EQ(c->num_classes(), 4);
  torch::NoGradGuard ng;
  auto x = torch::randn({2, 3, 8, 8});
  EXPECT_TRUE(torch::allclose(c->tail(c->head(x, "features.c0"), "features.c0"), c->forward(x), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(c->head(x, "features.c0"), torch::relu(x * 2.0)));

  // forward that is not its children in order cannot be split by name
  torch::jit::Module odd("Odd");
  odd.register_module("a", make_child("C", torch::full({1}, 2.0)));
  odd.register_attribute("input_size", c10::IntType::get(), 8);
  odd.define("def forward(self, x):\n    return torch.flatten(self.a.forward(x) + x, 1)\n");
  odd.save(d / "odd.pt");
  auto msg = error_of([&] { load_classifier(d / "odd.pt"); });
  EXPECT_NE(msg.find("head(x) and tail(a)"), std::string::npos) << msg;

  // explicit head/tail
  torch::jit::Module ht("HT");
  ht.register_parameter("w", torch::randn({3 * 8 * 8, 5}), false);
  ht.register_attribute("input_size", c10::IntType::get(), 8);
  ht.define(
      "def head(self, x):\n    return torch.flatten(x, 1) * 3.0\n"
      "def tail(self, a):\n    return a @ self.w\n"
      "def forward(self, x):\n    return self.tail(self.head(x))\n");
  ht.save(d / "ht.pt");
  auto h = load_classifier(d / "ht.pt");
  EXPECT_EQ(h->split_points(), (std::vector<std::string>{"head"}));
  EXPECT_EQ(h->num_classes(), 5);
}

TEST(Training, ClassifierLearnsASeparableTask) {
  TempDir d;
  torch::manual_seed(0);
  // class k: a bright square in quadrant k (plus noise)
  const int64_t n = 300;
  auto x = torch::randn({n, 1, 28, 28}) * 0.2 - 0.5;
  auto y = torch::randint(3, {n}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = y[i].item<int64_t>();
    x[i].slice(1, (k % 2) * 14, (k % 2) * 14 + 14).slice(2, (k / 2) * 14, (k / 2) * 14 + 14) += 1.0;
  }
  TrainClassifierOptions o;
  o.arch = tiny_cnn();
  o.epochs = 3;
  o.batch = 32;
  o.lr = 3e-3;
  o.out = d / "c.pt";
  auto r = train_classifier(x.slice(0, 0, 240), y.slice(0, 0, 240), x.slice(0, 240), y.slice(0, 240), o);
  EXPECT_GE(r.final_aux, 0.9) << "held-out accuracy";
  EXPECT_GT(r.images_per_second, 0);
  auto c = load_classifier(d / "c.pt");
  torch::NoGradGuard ng;
  auto acc = c->forward(x.slice(0, 240)).argmax(1).eq(y.slice(0, 240)).to(torch::kFloat).mean().item<double>();
  EXPECT_NEAR(acc, r.final_aux, 1e-9);  // the saved file is the evaluated model
}

TEST(Training, GanCheckpointResumeMatchesStraightRun) {
  TempDir d;
  torch::manual_seed(0);
  auto images = torch::rand({16, 1, 28, 28}) * 2 - 1;
  TrainGanOptions o;
  o.arch = tiny_gan("dcgan28", 1);
  o.steps = 6;
  o.batch = 4;
  o.checkpoint_every = 3;
  o.sample_every = 0;
  o.out = d / "straight.pt";
  train_gan(images, o);

  o.out = d / "resumed.pt";
  int calls = 0;
  auto stop_at_3 = [&](const Progress& p) { ++calls; return p.done < 3; };
  try {
    train_gan(images, o, stop_at_3);
    FAIL() << "expected cancel";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  EXPECT_TRUE(fs::exists(d / "resumed.pt.ckpt"));
  EXPECT_FALSE(fs::exists(d / "resumed.pt"));
  o.resume = true;
  int64_t samples_seen = 0;
  auto r = train_gan(images, o, {}, [&](int64_t step, const at::Tensor& s) {
    samples_seen = step;
    EXPECT_EQ(s.sizes(), (std::vector<int64_t>{16, 1, 28, 28}));
  });
  EXPECT_EQ(r.steps, 6);
  EXPECT_EQ(samples_seen, 6);
  auto a = load_generator(d / "straight.pt");
  auto b = load_generator(d / "resumed.pt");
  torch::NoGradGuard ng;
  auto z = torch::randn({4, 8});
  EXPECT_TRUE(torch::allclose(a->generate(z), b->generate(z), 1e-5, 1e-5))
      << "resume must continue the same run";
  EXPECT_TRUE(fs::exists(d / "straight.pt.disc"));
}

TEST(Training, WrongImageShapeIsAnInputError) {
  TempDir d;
  TrainGanOptions o;
  o.arch = tiny_gan("dcgan32", 3);
  o.out = d / "g.pt";
  auto msg = error_of([&] { train_gan(torch::zeros({4, 1, 28, 28}), o); });
  EXPECT_NE(msg.find("needs 3x32x32"), std::string::npos) << msg;
}

// The compiled generator must be the same function as the module (values and gradients).
TEST(Models, FrozenGeneratorEqualsModule) {
  for (const std::string name : {"dcgan28", "dcgan32", "dcgan64"}) {
    auto a = tiny_gan(name, name == "dcgan28" ? 1 : 3);
    torch::manual_seed(5);
    DcganGenerator g(a);
    {  // non-trivial BatchNorm statistics and affine parameters
      torch::NoGradGuard ng;
      for (auto& b : g->named_buffers()) {
        if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0, 0.3);
        if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.2, 2.0);
      }
      for (auto& p : g->named_parameters())
        if (p.key().find("bn") != std::string::npos || p.value().dim() == 1) p.value().normal_(0.5, 0.3);
    }
    g->eval();
    FrozenDcgan f(*g);
    auto z = torch::randn({3, a.latent_dim}, torch::requires_grad());
    auto y_ref = g->forward(z);
    auto y = f.forward(z);
    ASSERT_EQ(y.sizes(), y_ref.sizes()) << name;
    EXPECT_LT((y - y_ref).abs().max().item<float>(), 2e-5) << name;
    auto w = torch::randn_like(y);
    auto g_ref = torch::autograd::grad({(y_ref * w).sum()}, {z})[0];
    auto g_new = torch::autograd::grad({(f.forward(z) * w).sum()}, {z})[0];
    EXPECT_LT((g_new - g_ref).abs().max().item<float>(), 1e-4 * (1 + g_ref.abs().max().item<float>())) << name;
  }
}
