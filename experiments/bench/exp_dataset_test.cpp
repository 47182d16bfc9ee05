// The dataset-level test's false-alarm rate and power (#16), measured with rewind's own
// mia::set_test on identity-nn scores: each image's best cosine similarity to a bank of generated
// samples. Inputs are embeddings written by `rewind generate --embedder` and `rewind embed`
// (experiments/dataset_test.sh makes them).
//
//   false alarms: owner sets of S identities drawn from images the GAN never saw, against a
//                 disjoint reference set of R such images; the rate of p < alpha over T draws
//   power:        owner sets of S identities drawn from the GAN's training identities, against R
//                 never-seen reference identities; the rate of p < alpha
//
// usage: exp_dataset_test --samples S.npy --members M.npy --nonmembers N.npy [--sizes 20,50]
//                         [--reference 1000] [--trials 200] [--alpha 0.01] [--seed 1]
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "rewind/io/npy.h"
#include "rewind/mia/metrics.h"

using namespace rw;

static std::vector<double> best_similarity(const at::Tensor& emb, const at::Tensor& samples) {
  auto s = std::get<0>(emb.matmul(samples.t()).max(1)).to(torch::kFloat64).contiguous();
  return std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
}

int main(int argc, char** argv) {
  std::string samples_path, members_path, nonmembers_path;
  std::vector<int> sizes = {20, 50};
  int reference = 1000, trials = 200;
  double alpha = 0.01;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--samples") samples_path = v;
    else if (a == "--members") members_path = v;
    else if (a == "--nonmembers") nonmembers_path = v;
    else if (a == "--sizes") {
      sizes.clear();
      std::stringstream ss(v);
      for (std::string t; std::getline(ss, t, ',');) sizes.push_back(std::stoi(t));
    } else if (a == "--reference") reference = std::stoi(v);
    else if (a == "--trials") trials = std::stoi(v);
    else if (a == "--alpha") alpha = std::stod(v);
    else if (a == "--seed") seed = std::stoull(v);
    else { std::cerr << "unknown option " << a << "\n"; return 2; }
  }
  if (samples_path.empty() || members_path.empty() || nonmembers_path.empty()) {
    std::cerr << "usage: exp_dataset_test --samples S.npy --members M.npy --nonmembers N.npy [options]\n";
    return 2;
  }
  torch::NoGradGuard ng;
  const auto samples = io::read_npy(samples_path).to(torch::kFloat32);
  const auto mem = best_similarity(io::read_npy(members_path).to(torch::kFloat32), samples);
  const auto non = best_similarity(io::read_npy(nonmembers_path).to(torch::kFloat32), samples);
  std::printf("samples %lld, member identities %zu, never-seen identities %zu, reference set %d, %d draws, alpha %g\n\n",
              (long long)samples.size(0), mem.size(), non.size(), reference, trials, alpha);
  std::printf("| owner set | identities | alarms (p < %g) | rate | 95%% CI | median p | median AUC |\n|---|---|---|---|---|---|---|\n",
              alpha);
  std::mt19937_64 rng(seed);
  for (const bool members : {false, true})
    for (int S : sizes) {
      if (members && S > int(mem.size())) continue;
      if (!members && S + reference > int(non.size())) {
        std::cerr << "need " << S + reference << " never-seen identities for size " << S << "\n";
        return 2;
      }
      int hits = 0;
      std::vector<double> ps, aucs;
      for (int t = 0; t < trials; ++t) {
        std::vector<size_t> idx(non.size());
        for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
        std::shuffle(idx.begin(), idx.end(), rng);
        std::vector<double> own, ref;
        if (members) {
          std::vector<size_t> m(mem.size());
          for (size_t i = 0; i < m.size(); ++i) m[i] = i;
          std::shuffle(m.begin(), m.end(), rng);
          for (int i = 0; i < S; ++i) own.push_back(mem[m[size_t(i)]]);
          for (int i = 0; i < reference; ++i) ref.push_back(non[idx[size_t(i)]]);
        } else {
          for (int i = 0; i < S; ++i) own.push_back(non[idx[size_t(i)]]);
          for (int i = 0; i < reference; ++i) ref.push_back(non[idx[size_t(S + i)]]);
        }
        auto r = mia::set_test(own, ref);
        hits += r.ran && r.pvalue < alpha;
        ps.push_back(r.pvalue);
        aucs.push_back(r.auc);
      }
      auto ci = mia::clopper_pearson(hits, trials);
      std::printf("| %s | %d | %d / %d | %.3f | %.3f-%.3f | %s | %.3f |\n",
                  members ? "training identities (power)" : "never seen (false alarms)", S, hits, trials,
                  double(hits) / trials, ci.lo, ci.hi, mia::format_pvalue(mia::median(ps)).c_str(), mia::median(aucs));
    }
  return 0;
}
