// Identity index: FAISS against the brute-force reference, persistence, safety, calibration.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "rewind/core/error.h"
#include "rewind/identity/index.h"
#include "test_util.h"

using namespace rw;
using rw::test::TempDir;
namespace fs = std::filesystem;

namespace {

at::Tensor unit_rows(int64_t n, int64_t d, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::functional::normalize(torch::randn({n, d}), torch::nn::functional::NormalizeFuncOptions().dim(1));
}

std::vector<identity::Item> items_for(int64_t n, int64_t per_id = 1, int64_t first = 0) {
  std::vector<identity::Item> v;
  for (int64_t i = 0; i < n; ++i)
    v.push_back({"id" + std::to_string(first + i / per_id), "img" + std::to_string(first * per_id + i) + ".png", "test"});
  return v;
}

// `ids` identity centres with `per` noisy images each; noise sets how tight an identity is.
at::Tensor clustered(int64_t ids, int64_t per, int64_t d, double noise, uint64_t seed) {
  torch::manual_seed(seed);
  auto c = torch::randn({ids, 1, d}).expand({ids, per, d});
  auto x = (c + noise * torch::randn({ids, per, d})).reshape({ids * per, d});
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

}  // namespace

TEST(IdentityIndex, FlatMatchesBruteForce) {
  auto base = unit_rows(500, 32, 1), q = unit_rows(40, 32, 2);
  identity::IdentityIndex idx(32, {});
  idx.add(base, items_for(500));
  auto got = idx.search(q, 5);
  auto ref = identity::brute_force_search(base, q, 5);
  ASSERT_EQ(got.size(), 40u);
  for (size_t i = 0; i < got.size(); ++i)
    for (int j = 0; j < 5; ++j) {
      EXPECT_EQ(got[i][j].id, ref[i][j].id) << "query " << i << " rank " << j;
      EXPECT_NEAR(got[i][j].similarity, ref[i][j].similarity, 1e-5);
    }
}

TEST(IdentityIndex, L2MetricReportsCosine) {
  auto base = unit_rows(200, 16, 3), q = unit_rows(10, 16, 4);
  identity::IndexOptions o;
  o.metric = "l2";
  identity::IdentityIndex idx(16, o);
  idx.add(base, items_for(200));
  auto got = idx.search(q, 3);
  auto ref = identity::brute_force_search(base, q, 3);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i][0].id, ref[i][0].id);
    EXPECT_NEAR(got[i][0].similarity, ref[i][0].similarity, 1e-4);
  }
}

TEST(IdentityIndex, HnswRecallAgainstExact) {
  auto base = unit_rows(3000, 24, 5), q = unit_rows(200, 24, 6);
  identity::IndexOptions o;
  o.factory = "HNSW32";
  identity::IdentityIndex idx(24, o);
  idx.add(base, items_for(3000));
  auto got = idx.search(q, 1);
  auto ref = identity::brute_force_search(base, q, 1);
  int hit = 0;
  for (size_t i = 0; i < got.size(); ++i) hit += got[i][0].id == ref[i][0].id;
  EXPECT_GE(hit, 190) << "HNSW recall@1 " << hit / 200.0;
}

TEST(IdentityIndex, IvfNeedsEnoughTrainingVectors) {
  identity::IndexOptions o;
  o.factory = "IVF256,Flat";
  identity::IdentityIndex idx(16, o);
  EXPECT_TRUE(idx.needs_training());
  try {
    idx.add(unit_rows(100, 16, 7), items_for(100));
    FAIL() << "expected a usage error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("256 lists"), std::string::npos) << e.what();
  }
}

TEST(IdentityIndex, BadFactoryIsUsageError) {
  identity::IndexOptions o;
  o.factory = "NotAnIndex77";
  EXPECT_THROW(identity::IdentityIndex(16, o), Error);
  o.factory = "Flat";
  o.metric = "manhattan";
  EXPECT_THROW(identity::IdentityIndex(16, o), Error);
}

TEST(IdentityIndex, SaveLoadRoundTripAndStableAppend) {
  TempDir tmp;
  auto a = clustered(20, 3, 16, 0.3, 8);
  identity::IdentityIndex idx(16, {});
  idx.add(a, items_for(60, 3));
  idx.calibrate();
  idx.save(tmp / "ix", {{"embedder", {{"id", "test:abc"}}}});
  auto q = unit_rows(5, 16, 9);
  auto before = idx.search(q, 4);

  auto back = identity::IdentityIndex::load(tmp / "ix");
  EXPECT_EQ(back.size(), 60);
  EXPECT_EQ(back.items()[7].identity, "id2");
  EXPECT_EQ(back.manifest()["embedder"]["id"], "test:abc");
  EXPECT_DOUBLE_EQ(back.search_threshold(1e-3), idx.search_threshold(1e-3));
  auto after = back.search(q, 4);
  for (size_t i = 0; i < before.size(); ++i)
    for (size_t j = 0; j < 4; ++j) EXPECT_EQ(before[i][j].id, after[i][j].id);

  // append: old ids keep their rows, new ones continue
  auto extra = clustered(4, 3, 16, 0.3, 10);
  back.add(extra, items_for(12, 3, 20));
  back.calibrate();
  back.save(tmp / "ix");
  auto again = identity::IdentityIndex::load(tmp / "ix");
  ASSERT_EQ(again.size(), 72);
  EXPECT_EQ(again.items()[7].identity, "id2");
  EXPECT_EQ(again.items()[60].identity, "id20");
  auto self = again.search(extra.slice(0, 0, 1), 1);
  EXPECT_EQ(self[0][0].id, 60);
}

TEST(IdentityIndex, TruncatedOrForeignIndexIsInputError) {
  TempDir tmp;
  identity::IdentityIndex idx(16, {});
  idx.add(unit_rows(50, 16, 11), items_for(50));
  idx.calibrate();
  idx.save(tmp / "ix");
  const std::string f = tmp / "ix/index.faiss";
  auto size = fs::file_size(f);
  fs::resize_file(f, size / 2);
  try {
    identity::IdentityIndex::load(tmp / "ix");
    FAIL() << "truncated index loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(std::string(e.what()).find("index.faiss"), std::string::npos) << e.what();
  }
  std::ofstream(f, std::ios::binary | std::ios::trunc) << "this is not a FAISS index at all, just some text";
  EXPECT_THROW(identity::IdentityIndex::load(tmp / "ix"), Error);
  // items.csv that disagrees with the index
  idx.save(tmp / "ix");
  rw::test::write_text(tmp / "ix/items.csv", "id,identity,path,dataset\n0,a,x.png,t\n");
  EXPECT_THROW(identity::IdentityIndex::load(tmp / "ix"), Error);
}

TEST(IdentityIndex, BrokenEmbeddingsAreRefused) {
  identity::IdentityIndex idx(4, {});
  auto nan = unit_rows(3, 4, 1);
  nan[1][2] = NAN;
  EXPECT_THROW(idx.add(nan, items_for(3)), Error);
  EXPECT_THROW(idx.add(torch::zeros({3, 4}), items_for(3)), Error);  // zero rows: not unit vectors
  auto same = unit_rows(1, 4, 2).repeat({5, 1});
  try {
    idx.add(same, items_for(5));
    FAIL() << "a constant embedder built an index";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(e.message().find("constant"), std::string::npos) << e.message();
  }
  EXPECT_EQ(idx.size(), 0);
}

// A damaged stored vector (the last float of a Flat index file set to 1e30): an error naming the
// fix, not a "match" at cosine 1e30 (it once gave 29 of 60 queries such matches with exit 0).
TEST(IdentityIndex, DamagedFlatVectorIsAnErrorNotAMatch) {
  TempDir tmp;
  auto x = unit_rows(20, 8, 3);
  identity::IdentityIndex idx(8, {});
  idx.add(x, items_for(20));
  idx.save(tmp / "ix");
  const std::string f = tmp / "ix/index.faiss";
  {
    std::fstream io(f, std::ios::binary | std::ios::in | std::ios::out);
    io.seekp(std::streamoff(fs::file_size(f) - 4));  // IndexFlat stores its vectors last
    const float big = 1e30f;
    io.write(reinterpret_cast<const char*>(&big), 4);
  }
  auto back = identity::IdentityIndex::load(tmp / "ix");
  try {
    back.search(x.slice(0, 19, 20), 3);  // the damaged vector's own query
    FAIL() << "a damaged index returned results";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(e.message().find("outside [-1, 1]"), std::string::npos) << e.message();
  }
}

TEST(IdentityIndex, CalibratedSearchThresholdHoldsOnUnseenIdentities) {
  // 200 indexed identities x 4 images; 400 unindexed identities query it. The 1:N search
  // threshold for FAR 1e-2 must keep the false-match rate of strangers near 1e-2, while the
  // looser pair threshold lets far more strangers match (why queries use the search one).
  const int64_t d = 32;
  auto base = clustered(200, 4, d, 0.7, 12);
  identity::IndexOptions o;
  o.fars = {1e-1, 1e-2};
  identity::IdentityIndex idx(d, o);
  idx.add(base, items_for(800, 4));
  const auto& c = idx.calibrate();
  ASSERT_EQ(c.points.size(), 2u);
  EXPECT_EQ(c.impostor_queries, 800);
  for (const auto& p : c.points) {
    EXPECT_GE(p.search, p.pair);
    EXPECT_GT(p.pair_tar, 0.0);
  }
  auto strangers = clustered(400, 1, d, 0.7, 13);
  auto res = idx.search(strangers, 1);
  auto rate = [&](double thr) {
    int n = 0;
    for (const auto& r : res) n += r[0].similarity > thr;
    return n / 400.0;
  };
  EXPECT_LE(rate(idx.search_threshold(1e-2)), 0.04);
  EXPECT_GT(rate(idx.pair_threshold(1e-2)), rate(idx.search_threshold(1e-2)));
  // a fresh image of an indexed identity is found at rank 1, above the threshold
  torch::manual_seed(12);
  auto centres = torch::randn({200, 1, d});
  auto fresh = torch::nn::functional::normalize(
      centres.squeeze(1) + 0.7 * torch::randn({200, d}, torch::TensorOptions().dtype(torch::kFloat32)),
      torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto hit = idx.search(fresh, 1);
  int ok = 0;
  for (int64_t i = 0; i < 200; ++i)
    ok += idx.items()[size_t(hit[size_t(i)][0].id)].identity == "id" + std::to_string(i) &&
          hit[size_t(i)][0].similarity > idx.search_threshold(1e-1);
  EXPECT_GE(ok, 150);
  EXPECT_THROW(idx.search_threshold(1e-5), Error);
}
