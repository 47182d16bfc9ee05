// The 10M-face index, built in shards and merged on disk (#13): per-shard build time, merge time,
// and in a separate query process (IdentityIndex::load of the folder, lists memory-mapped) its
// peak RSS, queries/s and recall on planted near-duplicates.
//
//   bench_ivf_shards build --dir D [--n 10000000] [--shards 4] [--factory IVF4096,PQ32] [--train 160000]
//                          [--queries 2000] [--like EMB.npy] [--threads 2]
//   bench_ivf_shards query --dir D [--nprobe 16,32,64] [--threads 2] [--verify 1 (hash the files on load)]
//
// Vectors: 1M-row chunks, chunk c drawn from its own seed (a Gaussian fitted to real embeddings
// with --like, else uniform on the sphere) and L2-normalised; shard s owns the chunks c with
// c % shards == s and materialises only those, as a machine of its own would. Queries are
// perturbed copies (cosine ~0.9) of random rows of chunk 0, the 1M subset on which exact search
// gives the reference (--chunk changes the chunk size for small trial runs): recall@k = the planted source (and the subset's exact top-1) among the
// top k of the merged 10M index.
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "rewind/core/runtime.h"
#include "rewind/identity/index.h"
#include "rewind/identity/ivf_shards.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/npy.h"

using namespace rw;
using Clock = std::chrono::steady_clock;
static double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }
static double peak_rss_gb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / (1024.0 * 1024.0);
}
static at::Tensor unit_rows(const at::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

struct Source {
  int64_t d = 128;
  at::Tensor mu, l;  // Gaussian fitted to real embeddings (undefined: uniform)
  at::Tensor chunk(int64_t c, int64_t rows) const {
    auto gen = at::detail::createCPUGenerator(1000 + uint64_t(c));
    if (!mu.defined()) return unit_rows(torch::randn({rows, d}, gen));
    return unit_rows((mu + torch::randn({rows, d}, gen, torch::kFloat64).mm(l.t())).to(torch::kFloat32));
  }
};

int main(int argc, char** argv) {
  if (argc < 2) { std::cerr << "usage: bench_ivf_shards build|query --dir D [options]\n"; return 2; }
  const std::string mode = argv[1];
  int64_t n = 10000000, shards = 4, ntrain = 160000, nq = 2000, chunk = 1000000;
  int threads = 2, verify = 1;
  std::string dir, factory = "IVF4096,PQ32", like, nprobes = "16,32,64";
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--dir") dir = v;
    else if (a == "--n") n = std::stoll(v);
    else if (a == "--shards") shards = std::stoll(v);
    else if (a == "--factory") factory = v;
    else if (a == "--train") ntrain = std::stoll(v);
    else if (a == "--queries") nq = std::stoll(v);
    else if (a == "--like") like = v;
    else if (a == "--nprobe") nprobes = v;
    else if (a == "--chunk") chunk = std::stoll(v);
    else if (a == "--threads") threads = std::stoi(v);
    else if (a == "--verify") verify = std::stoi(v);
    else { std::cerr << "unknown option " << a << "\n"; return 2; }
  }
  if (dir.empty()) { std::cerr << "--dir is required\n"; return 2; }
  init_threads(threads);
  torch::NoGradGuard ng;
  namespace fs = std::filesystem;

  if (mode == "build") {
    fs::create_directories(dir);
    Source src;
    if (!like.empty()) {
      auto e = io::read_npy(like).to(torch::kFloat64);
      src.d = e.size(1);
      src.mu = e.mean(0);
      auto c = e - src.mu;
      auto cov = c.t().mm(c) / double(e.size(0) - 1) + 1e-8 * torch::eye(src.d, torch::kFloat64);
      src.l = at::linalg_cholesky(cov);
    }
    const int64_t chunks = (n + chunk - 1) / chunk;
    auto rows_of = [&](int64_t c) { return std::min(chunk, n - c * chunk); };
    std::printf("# ivf shards: %lld x %lld-d (%s), %s, %lld shards of 1M-row chunks, %d threads\n", (long long)n,
                (long long)src.d, like.empty() ? "uniform" : ("Gaussian fitted to " + like).c_str(), factory.c_str(),
                (long long)shards, threads);
    auto c0 = src.chunk(0, rows_of(0));
    identity::IndexOptions io;
    io.factory = factory;
    io.ivf_nprobe = 32;
    auto t0 = Clock::now();
    identity::ivf_train(io, c0.slice(0, 0, std::min(ntrain, c0.size(0))), dir + "/trained.faiss");
    std::printf("train on %lld vectors: %.1f s\n", (long long)std::min(ntrain, c0.size(0)), secs(t0));
    // queries: planted near-duplicates of chunk 0 rows, and the exact top-1 within chunk 0
    auto gq = at::detail::createCPUGenerator(7);
    auto pick = torch::randint(c0.size(0), {nq}, gq, torch::kLong);
    auto q = unit_rows(c0.index_select(0, pick) + 0.5 / std::sqrt(double(src.d)) * torch::randn({nq, src.d}, gq));
    auto exact = identity::brute_force_search(c0, q, 1);
    auto truth = torch::empty({nq, 2}, torch::kLong);
    for (int64_t i = 0; i < nq; ++i) {
      truth[i][0] = pick[i];
      truth[i][1] = exact[size_t(i)][0].id;
    }
    io::write_npy(dir + "/queries.npy", q);
    io::write_npy(dir + "/truth.npy", truth);
    c0 = at::Tensor();
    std::vector<std::string> files;
    for (int64_t s = 0; s < shards; ++s) {
      t0 = Clock::now();
      std::vector<at::Tensor> xs, ids;
      for (int64_t c = s; c < chunks; c += shards) {
        xs.push_back(src.chunk(c, rows_of(c)));
        ids.push_back(torch::arange(c * chunk, c * chunk + rows_of(c), torch::kLong));
      }
      const double gen_s = secs(t0);
      if (xs.empty()) continue;
      files.push_back(dir + "/shard-" + std::to_string(s) + ".faiss");
      t0 = Clock::now();
      auto x = torch::cat(xs);
      xs.clear();
      identity::ivf_add_shard(dir + "/trained.faiss", x, torch::cat(ids), files.back());
      std::printf("shard %lld: %lld vectors, add + write %.1f s (drawing them %.1f s)\n", (long long)s,
                  (long long)x.size(0), secs(t0), gen_s);
      std::fflush(stdout);
    }
    t0 = Clock::now();
    std::vector<int64_t> keys(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) keys[size_t(i)] = i;
    // 4 images a synthetic identity (the vectors are independent: calibration here measures cost, not accuracy)
    auto item_of = [](int64_t i) {
      return identity::Item{"p" + std::to_string(i / 4), "v/" + std::to_string(i) + ".png", "bench"};
    };
    auto idx = identity::IdentityIndex::merge_ivf_shards(io, dir + "/trained.faiss", files, keys, item_of,
                                                         identity::IdentityIndex::next_lists_path(dir));
    keys = {};
    std::printf("merge on disk: %lld vectors in %.1f s\n", (long long)idx.size(), secs(t0));
    t0 = Clock::now();
    idx.calibrate();
    std::printf("calibrate (%lld leave-identity-out searches): %.1f s\n", (long long)io.calib_queries, secs(t0));
    t0 = Clock::now();
    idx.save(dir);
    std::printf("save (hashes included): %.1f s; %s\n", secs(t0), idx.layout().c_str());
    for (const auto& f : files) fs::remove(f);
    for (const auto& e : fs::directory_iterator(dir))
      std::printf("  %s %lld bytes\n", e.path().filename().c_str(), (long long)(e.is_regular_file() ? e.file_size() : 0));
    std::printf("build process peak RSS %.2f GB\n", peak_rss_gb());
    return 0;
  }
  if (mode == "query") {
    auto t0 = Clock::now();
    auto idx = identity::IdentityIndex::load(dir, verify != 0);
    const double open_s = secs(t0);
    auto q = io::read_npy(dir + "/queries.npy");
    auto truth = io::read_npy(dir + "/truth.npy").to(torch::kLong);
    std::printf("# %s; loaded (%s) in %.2f s, peak RSS after load %.2f GB\n\n", idx.layout().c_str(),
                idx.integrity().c_str(), open_s, peak_rss_gb());
    std::printf("| nprobe | queries/s | planted recall@1 | planted recall@10 | exact-1M top-1 recall@10 | peak RSS |\n|---|---|---|---|---|---|\n");
    std::stringstream ss(nprobes);
    for (std::string t; std::getline(ss, t, ',');) {
      idx.set_ivf_nprobe(std::stoi(t));
      idx.search(q.slice(0, 0, 50), 10);  // warm-up
      t0 = Clock::now();
      auto res = idx.search(q, 10);
      const double qs = secs(t0);
      int64_t p1 = 0, p10 = 0, e10 = 0;
      for (int64_t i = 0; i < q.size(0); ++i) {
        const int64_t planted = truth[i][0].item<int64_t>(), ex = truth[i][1].item<int64_t>();
        const auto& r = res[size_t(i)];
        p1 += r[0].id == planted;
        for (const auto& m : r) {
          p10 += m.id == planted;
          e10 += m.id == ex;
        }
      }
      const double nqd = double(q.size(0));
      std::printf("| %s | %.0f | %.4f | %.4f | %.4f | %.2f GB |\n", t.c_str(), nqd / qs, p1 / nqd, p10 / nqd, e10 / nqd,
                  peak_rss_gb());
      std::fflush(stdout);
    }
    return 0;
  }
  std::cerr << "unknown mode " << mode << "\n";
  return 2;
}
