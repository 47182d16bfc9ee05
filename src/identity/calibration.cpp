#include "rewind/identity/calibration.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "rewind/core/error.h"

namespace rw::identity {

double threshold_for_far(const at::Tensor& impostor_scores, double far) {
  RW_CHECK(impostor_scores.numel() > 0, Input, "no impostor pairs to calibrate on: need at least two identities");
  RW_CHECK(far > 0 && far < 1, Usage, "FAR must be in (0, 1), got ", far);
  auto s = impostor_scores.flatten();
  const int64_t n = s.numel();
  // allow k = floor(far * n) impostors strictly above the threshold
  const int64_t k = std::min(n - 1, int64_t(std::floor(far * double(n))));
  // threshold = the (k+1)-th highest score (pairs must score strictly above it), i.e. the
  // (n - k)-th smallest: a selection, not a sort (memory one copy of the scores, time O(n))
  return std::get<0>(s.kthvalue(n - k)).item<double>();
}

namespace {
/// The highest impostor scores seen, enough of them for every requested FAR: the threshold at FAR
/// is the (floor(FAR n) + 1)-th highest of n impostors, so with n <= `bound` the top
/// floor(max FAR x bound) + 1 suffice. Memory: that many floats, not n.
class TopImpostors {
 public:
  TopImpostors(double max_far, int64_t bound) : keep_(int64_t(std::floor(max_far * double(bound))) + 1) {}
  void add(const at::Tensor& scores) {
    count_ += scores.numel();
    parts_.push_back(scores.to(torch::kFloat32));
    held_ += scores.numel();
    if (held_ > 2 * keep_ + (1 << 20)) compact();
  }
  int64_t count() const { return count_; }
  /// The threshold at `far` (as threshold_for_far on all scores) and the measured FAR above it.
  std::pair<double, double> at(double far) {
    RW_CHECK(count_ > 0, Input, "no impostor pairs to calibrate on: need at least two identities");
    RW_CHECK(far > 0 && far < 1, Usage, "FAR must be in (0, 1), got ", far);
    compact();
    const int64_t k = std::min(count_ - 1, int64_t(std::floor(far * double(count_))));
    RW_ASSERT(k < top_.numel());
    const double thr = top_[k].item<double>();  // top_ is sorted, highest first
    return {thr, top_.gt(thr).sum().item<double>() / double(count_)};
  }

 private:
  void compact() {
    if (top_.defined()) parts_.push_back(top_);
    auto all = torch::cat(parts_);
    parts_.clear();
    top_ = std::get<0>(all.topk(std::min(keep_, all.numel()), 0, /*largest=*/true, /*sorted=*/true));
    held_ = top_.numel();
  }
  int64_t keep_, count_ = 0, held_ = 0;
  std::vector<at::Tensor> parts_;
  at::Tensor top_;
};
}  // namespace

Calibration calibrate(const at::Tensor& emb, const at::Tensor& labels, const std::vector<double>& fars,
                      int64_t max_pairs, uint64_t seed) {
  RW_CHECK(emb.dim() == 2 && labels.dim() == 1 && emb.size(0) == labels.size(0), Internal,
           "calibrate: embeddings [N,d] and labels [N] expected");
  torch::NoGradGuard ng;
  const int64_t n = emb.size(0);
  auto e = emb.to(torch::kFloat32).contiguous();
  auto lab = labels.to(torch::kLong);
  std::vector<at::Tensor> gen;
  const int64_t all_pairs = n * (n - 1) / 2;
  RW_CHECK(!fars.empty(), Usage, "calibrate: no FAR requested");
  TopImpostors imp(*std::max_element(fars.begin(), fars.end()), std::min(all_pairs, max_pairs));
  if (all_pairs <= max_pairs) {
    const int64_t block = std::max<int64_t>(1, (1 << 20) / std::max<int64_t>(1, n));  // rows: [block, n] scores ~ 4 MB
    for (int64_t i = 0; i < n; i += block) {
      auto a = e.slice(0, i, std::min(n, i + block));
      auto sims = torch::mm(a, e.t());  // [b, n]
      auto same = lab.slice(0, i, std::min(n, i + block)).unsqueeze(1).eq(lab.unsqueeze(0));
      auto row = torch::arange(i, std::min(n, i + block)).unsqueeze(1);
      auto upper = torch::arange(n).unsqueeze(0).gt(row);  // j > i: each pair once
      gen.push_back(sims.masked_select(same & upper));
      imp.add(sims.masked_select(same.logical_not() & upper));
    }
  } else {
    auto g = at::detail::createCPUGenerator(seed);
    // in blocks: gathering every sampled pair's vectors at once costs max_pairs x 2d floats (10 GB);
    // memory is then one block plus the top impostor scores (TopImpostors)
    const int64_t block = 1 << 13;  // two gathered [block, d] blocks: 8 MB at d = 128
    for (int64_t s = 0; s < max_pairs; s += block) {
      const int64_t b = std::min(max_pairs, s + block) - s;
      auto i = torch::randint(n, {b}, g, torch::kLong), j = torch::randint(n, {b}, g, torch::kLong);
      auto keep = i.ne(j);
      i = i.masked_select(keep);
      j = j.masked_select(keep);
      auto sims = (e.index_select(0, i) * e.index_select(0, j)).sum(1);
      auto same = lab.index_select(0, i).eq(lab.index_select(0, j));
      imp.add(sims.masked_select(same.logical_not()));
    }
    // genuine pairs: all of them, one identity group at a time (identities are small groups)
    auto order = std::get<1>(lab.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
    auto sorted = lab.index_select(0, order);
    auto sl = sorted.accessor<int64_t, 1>();
    for (int64_t a = 0; a < n;) {
      int64_t b = a + 1;
      while (b < n && sl[b] == sl[a]) ++b;
      if (b - a >= 2) {
        auto g = e.index_select(0, order.slice(0, a, b));
        auto s2 = torch::mm(g, g.t());
        gen.push_back(s2.masked_select(torch::ones({b - a, b - a}, torch::kBool).triu(1)));
      }
      a = b;
    }
  }
  if (gen.empty()) gen.push_back(torch::empty({0}));
  auto genuine = torch::cat(gen);
  Calibration c;
  c.genuine_pairs = genuine.numel();
  c.impostor_pairs = imp.count();
  for (double far : fars) {
    Operating op;
    op.far = far;
    std::tie(op.threshold, op.far_actual) = imp.at(far);
    if (genuine.numel() > 0) op.tar = genuine.gt(op.threshold).to(torch::kFloat64).mean().item<double>();
    c.points.push_back(op);
  }
  return c;
}

}  // namespace rw::identity
