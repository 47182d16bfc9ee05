// TorchScript models made by a PyTorch user (data-tools/make_client_models.py with Debian's
// python3-torch) must load and run through rewind's contracts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "rewind/models/models.h"
#include "test_util.h"

using namespace rw;
using rw::test::TempDir;
namespace fs = std::filesystem;

namespace {
const std::string kPython = "/usr/bin/python3";

bool python_torch_available() {
  return fs::exists(kPython) && std::system((kPython + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0;
}
}  // namespace

class ClientModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!python_torch_available()) return;
    dir_ = new TempDir();
    std::string script = std::string(REWIND_TEST_FIXTURES) + "/../../data-tools/make_client_models.py";
    ok_ = std::system((kPython + " " + script + " " + dir_->path() + " >/dev/null").c_str()) == 0;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!python_torch_available()) GTEST_SKIP() << "python3-torch not installed (apt-get install python3-torch)";
    ASSERT_TRUE(ok_) << "make_client_models.py failed";
  }
  std::string path(const std::string& name) const { return (*dir_) / name; }
  static TempDir* dir_;
  static bool ok_;
};
TempDir* ClientModels::dir_ = nullptr;
bool ClientModels::ok_ = false;

TEST_F(ClientModels, Generator) {
  auto g = models::load_generator(path("generator.pt"));
  EXPECT_EQ(g->latent_dim(), 16);
  EXPECT_EQ(g->output_shape().channels, 3);
  EXPECT_EQ(g->output_shape().height, 32);
  torch::NoGradGuard ng;
  auto x = g->generate(torch::randn({4, 16}));
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{4, 3, 32, 32}));
  EXPECT_LE(x.abs().max().item<float>(), 1.0f);
}

TEST_F(ClientModels, StyleGeneratorExposesMappingAndSynthesis) {
  auto g = models::load_generator(path("generator_wplus.pt"));
  ASSERT_TRUE(g->has_mapping());
  torch::NoGradGuard ng;
  auto z = torch::randn({2, 16});
  auto w = g->mapping(z);
  EXPECT_EQ(w.sizes(), (std::vector<int64_t>{2, 16}));
  EXPECT_TRUE(torch::allclose(g->synthesis(w), g->generate(z), 1e-5, 1e-5));
}

TEST_F(ClientModels, ClassifierSplitByChildName) {
  auto c = models::load_classifier(path("classifier.pt"));
  auto names = c->split_points();
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(names.front(), "features.0");
  EXPECT_EQ(names.back(), "classifier.1");
  EXPECT_EQ(c->num_classes(), 10);
  EXPECT_EQ(c->input_shape().height, 28);
  torch::NoGradGuard ng;
  auto x = torch::randn({3, 1, 28, 28});
  auto full = c->forward(x);
  for (const auto& s : names) EXPECT_TRUE(torch::allclose(c->tail(c->head(x, s), s), full, 1e-5, 1e-5)) << s;
  EXPECT_EQ(c->head(x, "features.3").sizes(), (std::vector<int64_t>{3, 8, 14, 14}));
}

TEST_F(ClientModels, ClassifierWithHeadTail) {
  auto c = models::load_classifier(path("classifier_ht.pt"));
  EXPECT_EQ(c->split_points(), (std::vector<std::string>{"head"}));
  torch::NoGradGuard ng;
  auto x = torch::randn({2, 1, 28, 28});
  EXPECT_EQ(c->head(x, "head").sizes(), (std::vector<int64_t>{2, 16, 7, 7}));
  EXPECT_TRUE(torch::allclose(c->tail(c->head(x, "head"), "head"), c->forward(x), 1e-5, 1e-5));
}

TEST_F(ClientModels, Embedder) {
  auto e = models::load_embedder(path("embedder.pt"));
  EXPECT_EQ(e->dim(), 32);
  EXPECT_EQ(e->input_shape().height, 64);
  torch::NoGradGuard ng;
  auto v = e->embed(torch::rand({5, 3, 100, 80}) * 2 - 1);  // resized internally
  EXPECT_EQ(v.sizes(), (std::vector<int64_t>{5, 32}));
  EXPECT_TRUE(torch::allclose(v.norm(2, 1), torch::ones({5}), 1e-5, 1e-5));
  EXPECT_NE(e->id().find("torchscript:"), std::string::npos);
}
