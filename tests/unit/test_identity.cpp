// Identity index: FAISS against the brute-force reference, persistence, safety, calibration.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include <faiss/IndexHNSW.h>
#include <faiss/index_io.h>
#include <nlohmann/json.hpp>

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
  EXPECT_EQ(back.item(7).identity, "id2");
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
  EXPECT_EQ(again.item(7).identity, "id2");
  EXPECT_EQ(again.item(60).identity, "id20");
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
  // an items file that disagrees with the index (the second save is generation 1: items.g1.csv)
  idx.save(tmp / "ix");
  ASSERT_TRUE(fs::exists(tmp / "ix/items.g1.csv"));
  EXPECT_FALSE(fs::exists(tmp / "ix/items.csv"));  // the old generation's files are gone
  rw::test::write_text(tmp / "ix/items.g1.csv", "id,identity,path,dataset\n0,a,x.png,t\n");
  EXPECT_THROW(identity::IdentityIndex::load(tmp / "ix"), Error);
  EXPECT_THROW(identity::IdentityIndex::load(tmp / "ix", /*verify=*/false), Error);  // its size differs too
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
  // the content hash refuses the file at load ...
  try {
    identity::IdentityIndex::load(tmp / "ix");
    FAIL() << "a damaged index loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(e.message().find("content hash"), std::string::npos) << e.message();
  }
  // ... and without the hash check, the search still refuses the similarity
  auto back = identity::IdentityIndex::load(tmp / "ix", /*verify=*/false);
  EXPECT_EQ(back.integrity(), "sizes only (hash check skipped)");
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
    ok += idx.item(hit[size_t(i)][0].id).identity == "id" + std::to_string(i) &&
          hit[size_t(i)][0].similarity > idx.search_threshold(1e-1);
  EXPECT_GE(ok, 150);
  EXPECT_THROW(idx.search_threshold(1e-5), Error);
}

namespace {
// Caps the process's address space at its current size + `extra` bytes while alive.
struct AddressSpaceLimit {
  struct rlimit old {};
  explicit AddressSpaceLimit(long long extra) {
    getrlimit(RLIMIT_AS, &old);
    long long pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    struct rlimit lim = old;
    lim.rlim_cur = rlim_t(pages * sysconf(_SC_PAGESIZE) + extra);
    setrlimit(RLIMIT_AS, &lim);
  }
  ~AddressSpaceLimit() { setrlimit(RLIMIT_AS, &old); }
};

// Everything a query of `ix` returns: ids, similarities, the matched items' metadata, thresholds.
std::string query_fingerprint(const identity::IdentityIndex& ix, const at::Tensor& q) {
  std::ostringstream os;
  for (const auto& row : ix.search(q, 3))
    for (const auto& m : row) {
      os << m.id << ':' << m.similarity << ':';
      if (m.id >= 0) os << ix.item(m.id).identity << ix.item(m.id).path;
      os << ';';
    }
  for (const auto& p : ix.calibration().points) os << p.far << '/' << p.pair << '/' << p.search << ';';
  return os.str();
}
}  // namespace

// The byte-flip fuzz of the hardening issue, in-process: one flipped byte at a seeded position of
// index.faiss, items.csv or manifest.json of a Flat and an HNSW index. With the hash check every
// flip is an Input error or leaves every result unchanged (it once changed 26 of 100 outputs and
// crashed 11 times); without it (--skip-hash-check), the structure checks still never let a flip
// crash a search. A crash fails this test by killing the test binary.
TEST(IdentityIndex, ByteFlipsAreDetectedAndNeverCrash) {
  TempDir tmp;
  int total = 0, detected = 0, silent = 0, unverified_errors = 0;
  for (const std::string factory : {"Flat", "HNSW8"}) {
    identity::IndexOptions o;
    o.factory = factory;
    o.fars = {1e-1};
    identity::IdentityIndex idx(8, o);
    idx.add(clustered(20, 3, 8, 0.3, 21), items_for(60, 3));
    idx.calibrate();
    const auto base = tmp / ("base-" + factory), work = tmp / ("work-" + factory);
    idx.save(base);
    const auto q = unit_rows(6, 8, 22);
    const std::string want = query_fingerprint(identity::IdentityIndex::load(base), q);
    const std::vector<std::string> names = {"index.faiss", "items.csv", "manifest.json"};
    std::vector<std::string> bytes;
    for (const auto& n : names) bytes.push_back(rw::test::read_text(base + "/" + n));
    std::mt19937 rng(7);
    for (int i = 0; i < 600; ++i) {
      const size_t f = size_t(i) % names.size();
      std::string damaged = bytes[f];
      const size_t pos = rng() % damaged.size();
      damaged[pos] = char(uint8_t(damaged[pos]) ^ uint8_t(1 + rng() % 255));
      fs::create_directories(work);
      for (size_t k = 0; k < names.size(); ++k) rw::test::write_text(work + "/" + names[k], k == f ? damaged : bytes[k]);
      ++total;
      try {
        if (query_fingerprint(identity::IdentityIndex::load(work), q) != want) {
          ++silent;
          ADD_FAILURE() << factory << ": flip at byte " << pos << " of " << names[f] << " silently changed the results";
        }
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kInput) << e.what();
        ++detected;
      }
      if (f != 0) continue;  // the structure checks concern index.faiss
      if (rw::test::kAddressSanitizer) continue;  // no address-space cap under ASan (test_util.h)
      // A flipped size field makes FAISS allocate (and zero) up to 1 TB before its read fails: an
      // address-space limit turns that into a quick bad_alloc, which load reports as damage.
      AddressSpaceLimit limit(1ll << 30);
      try {
        (void)query_fingerprint(identity::IdentityIndex::load(work, /*verify=*/false), q);
      } catch (const Error&) {
        ++unverified_errors;
      }
    }
  }
  EXPECT_EQ(total, 1200);
  EXPECT_EQ(silent, 0);
  EXPECT_GT(detected, 1000);  // flips in JSON whitespace may leave the content intact
  std::cout << total << " flips: " << detected << " refused, " << total - detected - silent << " harmless, " << silent
            << " silently changed; without the hash check " << unverified_errors << " refused by the structure checks\n";
}

// The hardening issue's crafted graphs: an HNSW file that FAISS itself wrote, well-formed byte for
// byte, whose entry point or a neighbour id points outside the graph (FAISS follows either out of
// bounds: a segfault in `index query`). With the hash check skipped the structure check refuses
// each, naming the file and what is wrong; with it, the checksum refuses them first.
TEST(IdentityIndex, CraftedHnswGraphsAreRefused) {
  TempDir tmp;
  identity::IndexOptions o;
  o.factory = "HNSW8";
  o.fars = {1e-1};
  identity::IdentityIndex idx(8, o);
  idx.add(clustered(20, 3, 8, 0.3, 31), items_for(60, 3));
  idx.calibrate();
  const auto base = tmp / "base";
  idx.save(base);
  const auto q = unit_rows(4, 8, 32);
  (void)identity::IdentityIndex::load(base, /*verify=*/false).search(q, 3);  // the untouched file searches
  struct Craft {
    std::string name, want;
    std::function<void(faiss::HNSW&, int64_t)> edit;
  };
  const std::vector<Craft> crafts = {
      {"entry point past the end", "entry point out of range", [](faiss::HNSW& g, int64_t n) { g.entry_point = int(n + 5); }},
      {"negative entry point", "entry point out of range", [](faiss::HNSW& g, int64_t) { g.entry_point = -3; }},
      {"neighbour id past the end", "neighbour id out of range",
       [](faiss::HNSW& g, int64_t n) {
         for (auto& j : g.neighbors)
           if (j >= 0) { j = int(n + 1000); break; }
       }},
      {"neighbour id below -1", "neighbour id out of range",
       [](faiss::HNSW& g, int64_t) {
         for (auto& j : g.neighbors)
           if (j >= 0) { j = -2; break; }
       }},
      {"top level above every node", "top level", [](faiss::HNSW& g, int64_t) { g.max_level += 1; }},
  };
  for (const auto& c : crafts) {
    const auto work = tmp / ("work-" + std::to_string(&c - crafts.data()));
    fs::create_directories(work);
    for (const char* f : {"items.csv", "manifest.json"}) fs::copy_file(base + "/" + f, work + "/" + f);
    std::unique_ptr<faiss::Index> raw(faiss::read_index((base + "/index.faiss").c_str()));
    auto* h = dynamic_cast<faiss::IndexHNSW*>(raw.get());
    ASSERT_NE(h, nullptr);
    c.edit(h->hnsw, h->ntotal);
    faiss::write_index(raw.get(), (work + "/index.faiss").c_str());
    try {
      (void)identity::IdentityIndex::load(work, /*verify=*/false).search(q, 3);
      ADD_FAILURE() << c.name << ": loaded and searched";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput) << c.name;
      EXPECT_NE(std::string(e.what()).find(c.want), std::string::npos) << c.name << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("index.faiss"), std::string::npos) << c.name << ": " << e.what();
    }
    EXPECT_THROW(identity::IdentityIndex::load(work), Error) << c.name << ": the checksum should refuse it first";
  }
}

// An edited manifest (here: its factory field) is refused by the manifest's checksum; a legacy
// manifest without hashes still loads, and the structure check then catches the lie.
TEST(IdentityIndex, EditedOrLegacyManifest) {
  TempDir tmp;
  identity::IdentityIndex idx(8, {});
  idx.add(unit_rows(30, 8, 5), items_for(30));
  idx.save(tmp / "ix");
  const std::string mpath = tmp / "ix/manifest.json";
  auto m = nlohmann::json::parse(rw::test::read_text(mpath));
  EXPECT_EQ(m["generation"], 0);
  EXPECT_EQ(m["files"]["index"]["name"], "index.faiss");
  auto edited = m;
  edited["factory"] = "HNSW32";
  rw::test::write_text(mpath, edited.dump(2));
  try {
    identity::IdentityIndex::load(tmp / "ix");
    FAIL() << "an edited manifest loaded";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("checksum"), std::string::npos) << e.message();
  }
  auto legacy = m;
  for (const char* k : {"checksum", "files", "generation"}) legacy.erase(k);
  rw::test::write_text(mpath, legacy.dump(2));
  auto back = identity::IdentityIndex::load(tmp / "ix");
  EXPECT_EQ(back.integrity(), "legacy");
  EXPECT_EQ(back.size(), 30);
  legacy["factory"] = "HNSW32";
  rw::test::write_text(mpath, legacy.dump(2));
  try {
    identity::IdentityIndex::load(tmp / "ix");
    FAIL() << "a legacy manifest lying about the factory loaded";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("not an HNSW index"), std::string::npos) << e.message();
  }
  // a legacy folder appended to becomes generation 1 with hashes
  rw::test::write_text(mpath, m.dump(2));
  back = identity::IdentityIndex::load(tmp / "ix");
  back.add(unit_rows(5, 8, 6), items_for(5, 1, 30));
  back.save(tmp / "ix");
  EXPECT_EQ(identity::IdentityIndex::load(tmp / "ix").size(), 35);
  EXPECT_TRUE(fs::exists(tmp / "ix/index.g1.faiss"));
  EXPECT_FALSE(fs::exists(tmp / "ix/index.faiss"));
}

// ------------------------------------------------------------------------------------------------
// IVF built in shards (ivf_shards.h): trained once, shards added under keys, merged in id order

#include "rewind/identity/ivf_shards.h"

namespace {

std::string read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A 3-shard merge of `x` (rows dealt by blocks of 7, keys = row * 3 + 1) and the one-shard merge.
struct ShardedIvf {
  TempDir dir;
  identity::IndexOptions opt;
  std::vector<int64_t> keys;
  std::string trained() const { return dir.path() + "/trained.faiss"; }
  /// Trains opt.factory on `x`; row i is keyed i * 3 + 1 (as shard_files adds it).
  void train(const at::Tensor& x) {
    identity::ivf_train(opt, x, trained());
    keys.clear();
    for (int64_t i = 0; i < x.size(0); ++i) keys.push_back(i * 3 + 1);
  }
  static identity::Item item_of(int64_t i) { return {"id" + std::to_string(i / 4), "img" + std::to_string(i), "t"}; }
  identity::IdentityIndex merge(const std::vector<std::string>& files, const std::string& lists_path) {
    return identity::IdentityIndex::merge_ivf_shards(opt, trained(), files, keys, item_of, lists_path);
  }
  std::vector<std::string> shard_files(const at::Tensor& x, int64_t nshards) {
    std::vector<std::string> files;
    for (int64_t s = 0; s < nshards; ++s) {
      std::vector<int64_t> rows;
      for (int64_t i = 0; i < x.size(0); ++i)
        if ((i / 7) % nshards == s) rows.push_back(i);
      auto r = torch::tensor(rows, torch::kLong);
      files.push_back(dir.path() + "/s" + std::to_string(nshards) + "-" + std::to_string(s) + ".faiss");
      identity::ivf_add_shard(trained(), x.index_select(0, r), r * 3 + 1, files.back());
    }
    return files;
  }
};

}  // namespace

TEST(IvfShards, MergedEqualsOneShardAndFindsPlantedNeighbours) {
  ShardedIvf t;
  t.opt.factory = "IVF16,Flat";
  t.opt.ivf_nprobe = 16;  // all lists: exact, so the brute-force reference applies
  auto x = clustered(60, 4, 24, 0.3, 5);
  t.train(x);
  const std::string d1 = t.dir.path() + "/one", d3 = t.dir.path() + "/three";
  auto one = t.merge(t.shard_files(x, 1), identity::IdentityIndex::next_lists_path(d1));
  auto three = t.merge(t.shard_files(x, 3), identity::IdentityIndex::next_lists_path(d3));
  EXPECT_EQ(three.size(), 240);
  auto q = torch::nn::functional::normalize(x.slice(0, 0, 30) + 0.01 * unit_rows(30, 24, 9),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto a = one.search(q, 5), b = three.search(q, 5), ref = identity::brute_force_search(x, q, 5);
  for (size_t i = 0; i < a.size(); ++i)
    for (int j = 0; j < 5; ++j) {
      EXPECT_EQ(a[i][j].id, b[i][j].id);
      EXPECT_EQ(b[i][j].id, ref[i][j].id) << "query " << i << " rank " << j;
    }
  EXPECT_EQ(three.item(37).identity, "id9");
  // saved and loaded: the lists file is the folder's, memory-mapped, byte-identical across shard counts
  one.calibrate();
  three.calibrate();
  one.save(d1);
  three.save(d3);
  EXPECT_EQ(read_bytes(d1 + "/lists.ivfdata"), read_bytes(d3 + "/lists.ivfdata"));
  EXPECT_EQ(read_bytes(d1 + "/index.faiss"), read_bytes(d3 + "/index.faiss"));
  auto back = identity::IdentityIndex::load(d3);
  EXPECT_NE(back.layout().find("lists on disk"), std::string::npos) << back.layout();
  auto c = back.search(q, 5);
  for (size_t i = 0; i < c.size(); ++i)
    for (int j = 0; j < 5; ++j) EXPECT_EQ(c[i][j].id, ref[i][j].id);
  EXPECT_EQ(back.item(239).path, "img239");
  // an on-disk index takes no appends (its lists file belongs to its generation)
  EXPECT_THROW(back.add(x.slice(0, 0, 2), {{"a", "a", "t"}, {"b", "b", "t"}}), Error);
}

TEST(IvfShards, DamagedOrForeignShardsAreRefused) {
  ShardedIvf t;
  t.opt.factory = "IVF8,Flat";
  auto x = clustered(30, 4, 16, 0.3, 6);
  t.train(x);
  auto files = t.shard_files(x, 2);
  // a missing shard, a repeated shard
  EXPECT_THROW(t.merge({files[0]}, ""), Error);
  EXPECT_THROW(t.merge({files[0], files[0], files[1]}, ""), Error);
  // keys the items do not have
  t.keys.back() += 1;
  EXPECT_THROW(t.merge(files, ""), Error);
  // a shard of another trained index (other list count)
  identity::IndexOptions o4 = t.opt;
  o4.factory = "IVF4,Flat";
  identity::ivf_train(o4, x, t.dir.path() + "/trained4.faiss");
  identity::ivf_add_shard(t.dir.path() + "/trained4.faiss", x.slice(0, 0, 5), torch::arange(5, torch::kLong), t.dir.path() + "/f.faiss");
  t.keys = {0, 1, 2, 3, 4};
  EXPECT_THROW(t.merge({t.dir.path() + "/f.faiss"}, ""), Error);
  // not IVF, too small a sample, a NaN vector
  identity::IndexOptions flat;
  EXPECT_THROW(identity::ivf_train(flat, x, t.dir.path() + "/x.faiss"), Error);
  EXPECT_THROW(identity::ivf_train(t.opt, x.slice(0, 0, 5), t.dir.path() + "/x.faiss"), Error);
  auto bad = x.slice(0, 0, 4).clone();
  bad[1][0] = NAN;
  EXPECT_THROW(identity::ivf_add_shard(t.dir.path() + "/trained.faiss", bad, torch::arange(4, torch::kLong), t.dir.path() + "/x.faiss"),
               Error);
  EXPECT_EQ(identity::ivf_nlist("OPQ8,IVF32,PQ8", 16), 32);
  EXPECT_EQ(identity::ivf_train_sample_size(32, 100000, 0), 64 * 32);
  EXPECT_EQ(identity::ivf_train_sample_size(32, 100, 0), 100);
}

TEST(IvfShards, DamagedListsFileIsAnErrorNeverACrash) {
  ShardedIvf t;
  t.opt.factory = "IVF8,Flat";
  auto x = clustered(30, 4, 16, 0.3, 7);
  t.train(x);
  const std::string d = t.dir.path() + "/idx";
  {  // the index maps its lists file: let it go before the file is damaged under it (a live mapping
     // of a truncated file faults with SIGBUS when touched, which the damage below is not about)
    auto idx = t.merge(t.shard_files(x, 2), identity::IdentityIndex::next_lists_path(d));
    idx.calibrate();
    idx.save(d);
  }
  const std::string lists = d + "/lists.ivfdata", good = read_bytes(lists);
  // truncated, then one flipped byte: refused by size, then by hash; without the hash check a
  // flipped id is caught by the structure checks, a flipped code may change a score (documented)
  std::filesystem::resize_file(lists, good.size() - 8);
  EXPECT_THROW(identity::IdentityIndex::load(d), Error);
  EXPECT_THROW(identity::IdentityIndex::load(d, false), Error);
  for (size_t at : {size_t(3), good.size() - 3}) {
    std::string b = good;
    b[at] = char(b[at] ^ 0x40);
    std::ofstream(lists, std::ios::binary | std::ios::trunc) << b;
    EXPECT_THROW(identity::IdentityIndex::load(d), Error) << "flip at " << at;
  }
  std::ofstream(lists, std::ios::binary | std::ios::trunc) << good;
  fs::remove(lists);
  EXPECT_THROW(identity::IdentityIndex::load(d), Error);
}
