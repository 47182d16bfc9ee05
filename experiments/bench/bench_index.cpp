// Identity-index benchmark: build time, queries/s at k=10 and recall@1 against exact search for
// several FAISS factory strings, on synthetic L2-normalised vectors with planted near-duplicates
// (each query is a perturbed copy of a random base vector, like a second photo of an indexed
// person). Uses rewind's IdentityIndex, so it measures what `rewind index` does.
// Also: end-to-end embedding throughput (images/s) of the identity embedders, when given.
//
// usage: bench_index [--n 1000000] [--d 128] [--queries 2000] [--factories Flat,HNSW32,IVF4096;PQ32]
//                    [--ef-search 128[,64,...]] [--nprobe 32[,16,...]] [--ef-construction 80] [--threads 2] [--embedder FILE ...] [--like EMB.npy]
// (';' separates factory strings whose own syntax uses ',')
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "rewind/core/runtime.h"
#include "rewind/identity/index.h"
#include "rewind/io/npy.h"
#include "rewind/models/models.h"

using namespace rw;
using Clock = std::chrono::steady_clock;

static double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

int main(int argc, char** argv) {
  int64_t n = 1000000, d = 128, nq = 2000;
  int threads = 2, efc = 80;
  std::vector<int> efs = {128}, nprobes = {32};
  auto int_list = [](const std::string& v) {
    std::vector<int> out;
    std::stringstream ss(v);
    for (std::string t; std::getline(ss, t, ',');) out.push_back(std::stoi(t));
    return out;
  };
  std::string factories = "Flat;HNSW32;IVF4096,Flat;IVF4096,PQ32";
  std::vector<std::string> embedders;
  std::string like;  // real embeddings [m, d] (.npy): draw the base vectors from a Gaussian fitted to them
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--n") n = std::stoll(v);
    else if (a == "--d") d = std::stoll(v);
    else if (a == "--queries") nq = std::stoll(v);
    else if (a == "--factories") factories = v;
    else if (a == "--threads") threads = std::stoi(v);
    else if (a == "--ef-search") efs = int_list(v);  // a comma list: each searched on the same built index
    else if (a == "--nprobe") nprobes = int_list(v);
    else if (a == "--ef-construction") efc = std::stoi(v);
    else if (a == "--embedder") embedders.push_back(v);
    else if (a == "--like") like = v;
    else { std::cerr << "unknown option " << a << "\n"; return 2; }
  }
  init_threads(threads);
  torch::NoGradGuard ng;
  std::vector<std::string> fs;
  { std::stringstream ss(factories); std::string t; while (std::getline(ss, t, ';')) if (!t.empty()) fs.push_back(t); }

  if (n > 0) {
    torch::manual_seed(1);
    auto norm = [](const at::Tensor& x) {
      return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
    };
    at::Tensor base;
    std::string data = "random unit vectors (uniform on the sphere: no structure, HNSW's worst case)";
    if (like.empty()) {
      base = norm(torch::randn({n, d}));
    } else {
      // Real face embeddings are not uniform: they occupy a low-dimensional, anisotropic part of the
      // sphere. Draw from N(mean, cov) of real embeddings, then normalise.
      auto e = io::read_npy(like).to(torch::kFloat64);
      d = e.size(1);
      auto mu = e.mean(0);
      auto c = e - mu;
      auto cov = c.t().mm(c) / double(e.size(0) - 1) + 1e-8 * torch::eye(d, torch::kFloat64);
      auto l = at::linalg_cholesky(cov);
      base = norm((mu + torch::randn({n, d}, torch::kFloat64).mm(l.t())).to(torch::kFloat32));
      auto ev = at::linalg_eigvalsh(cov).flip(0);
      auto frac = ev.cumsum(0) / ev.sum();
      int64_t k90 = (frac < 0.9).sum().item<int64_t>() + 1;
      data = "drawn from a Gaussian fitted to " + std::to_string(e.size(0)) + " real embeddings (" + like +
             "; " + std::to_string(k90) + " principal components hold 90% of their variance)";
    }
    auto pick = torch::randint(n, {nq}, torch::kLong);
    // planted near-duplicates: cosine ~0.9 to their source vector
    auto queries = norm(base.index_select(0, pick) + 0.5 / std::sqrt(double(d)) * torch::randn({nq, d}));
    std::vector<identity::Item> items(size_t(n), identity::Item{"x", "", "synthetic"});
    std::printf("# index bench: %lld x %lld-d vectors, %lld queries (planted near-duplicates), k=10, %d threads\n",
                (long long)n, (long long)d, (long long)nq, threads);
    std::printf("# data: %s\n\n", data.c_str());
    std::printf("| factory | build s | queries/s | recall@1 vs exact | planted found@1 |\n|---|---|---|---|---|\n");
    std::vector<int64_t> exact;
    for (const auto& f : fs) {
      identity::IndexOptions o;
      o.factory = f;
      o.hnsw_ef_construction = efc;
      const bool hnsw = f.find("HNSW") != std::string::npos, ivf = f.find("IVF") != std::string::npos;
      auto t0 = Clock::now();
      identity::IdentityIndex idx(d, o);
      idx.add(base, items, [&](const Progress& p) {
        std::fprintf(stderr, "  %s: %s %lld/%lld after %.0f s\n", f.c_str(), p.stage.c_str(), (long long)p.done,
                     (long long)p.total, secs(t0));
        return true;
      });
      double build = secs(t0);
      const auto& breadths = hnsw ? efs : ivf ? nprobes : std::vector<int>{0};
      for (int br : breadths) {
        if (hnsw) idx.set_hnsw_ef_search(br);
        if (ivf) idx.set_ivf_nprobe(br);
        idx.search(queries.slice(0, 0, std::min<int64_t>(nq, 50)), 10);  // warm-up
        t0 = Clock::now();
        auto res = idx.search(queries, 10);
        double qs = secs(t0);
        if (exact.empty()) {
          auto ref = f == "Flat" ? res : identity::brute_force_search(base, queries, 1);
          for (const auto& r : ref) exact.push_back(r[0].id);
        }
        int64_t agree = 0, planted = 0;
        auto pk = pick.accessor<int64_t, 1>();
        for (int64_t i = 0; i < nq; ++i) {
          agree += res[size_t(i)][0].id == exact[size_t(i)];
          planted += res[size_t(i)][0].id == pk[i];
        }
        std::string name = hnsw  ? f + " (efC " + std::to_string(efc) + ", efS " + std::to_string(br) + ")"
                           : ivf ? f + " (nprobe " + std::to_string(br) + ")"
                                 : f;
        std::printf("| %s | %.1f | %.0f | %.4f | %.4f |\n", name.c_str(), build, double(nq) / qs,
                    double(agree) / double(nq), double(planted) / double(nq));
        std::fflush(stdout);
      }
    }
  }

  for (const auto& path : embedders) {
    auto e = models::load_embedder(path);
    auto s = e->input_shape();
    for (int64_t b : {1, 32}) {
      auto x = torch::rand({b, s.channels, s.height, s.width}) * 2 - 1;
      e->embed(x);  // warm-up
      int reps = b == 1 ? 50 : 8;
      auto t0 = Clock::now();
      for (int r = 0; r < reps; ++r) e->embed(x);
      double t = secs(t0);
      std::printf("embedder %s, batch %lld: %.1f images/s\n", e->describe().c_str(), (long long)b,
                  double(b * reps) / t);
    }
  }
  return 0;
}
