#include "rewind/mia/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "rewind/core/error.h"

namespace rw::mia {

Roc roc_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  RW_CHECK(scores.size() == labels.size(), Internal, "roc_curve: ", scores.size(), " scores, ", labels.size(), " labels");
  std::vector<size_t> ord(scores.size());
  std::iota(ord.begin(), ord.end(), 0);
  std::sort(ord.begin(), ord.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  double pos = 0, neg = 0;
  for (int l : labels) (l ? pos : neg) += 1;
  Roc r;
  r.fpr.push_back(0);
  r.tpr.push_back(0);
  r.threshold.push_back(std::numeric_limits<double>::infinity());
  double tp = 0, fp = 0;
  for (size_t i = 0; i < ord.size();) {
    size_t j = i;
    while (j < ord.size() && scores[ord[j]] == scores[ord[i]]) {
      (labels[ord[j]] ? tp : fp) += 1;
      ++j;
    }
    r.fpr.push_back(neg > 0 ? fp / neg : 0);
    r.tpr.push_back(pos > 0 ? tp / pos : 0);
    r.threshold.push_back(std::nextafter(scores[ord[i]], -std::numeric_limits<double>::infinity()));
    i = j;
  }
  return r;
}

double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels) {
  // rank statistic (Mann-Whitney U), ties count one half
  std::vector<size_t> ord(scores.size());
  std::iota(ord.begin(), ord.end(), 0);
  std::sort(ord.begin(), ord.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double pos = 0, neg = 0, rank_sum = 0;
  for (size_t i = 0; i < ord.size();) {
    size_t j = i;
    while (j < ord.size() && scores[ord[j]] == scores[ord[i]]) ++j;
    double avg_rank = (double(i) + double(j - 1)) / 2.0 + 1.0;
    for (size_t k = i; k < j; ++k)
      if (labels[ord[k]]) rank_sum += avg_rank;
    i = j;
  }
  for (int l : labels) (l ? pos : neg) += 1;
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

double tpr_at_fpr(const Roc& roc, double fpr) {
  double best = 0;
  for (size_t i = 0; i < roc.fpr.size(); ++i)
    if (roc.fpr[i] <= fpr + 1e-12) best = std::max(best, roc.tpr[i]);
  return best;
}

static double kolmogorov_q(double lambda) {
  // Q_KS(lambda) = 2 sum_{j>=1} (-1)^{j-1} exp(-2 j^2 lambda^2)
  if (lambda < 1e-3) return 1.0;
  double sum = 0, sign = 1;
  for (int j = 1; j <= 200; ++j) {
    double term = sign * std::exp(-2.0 * j * j * lambda * lambda);
    sum += term;
    if (std::abs(term) < 1e-12) break;
    sign = -sign;
  }
  return std::clamp(2.0 * sum, 0.0, 1.0);
}

std::pair<double, double> ks_test(std::vector<double> a, std::vector<double> b) {
  if (a.empty() || b.empty()) return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  size_t i = 0, j = 0;
  double d = 0;
  const double na = double(a.size()), nb = double(b.size());
  while (i < a.size() && j < b.size()) {
    double x = std::min(a[i], b[j]);
    while (i < a.size() && a[i] <= x) ++i;
    while (j < b.size() && b[j] <= x) ++j;
    d = std::max(d, std::abs(double(i) / na - double(j) / nb));
  }
  const double ne = na * nb / (na + nb);
  const double sq = std::sqrt(ne);
  return {d, kolmogorov_q((sq + 0.12 + 0.11 / sq) * d)};
}

double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double mre_gap(const std::vector<double>& m, const std::vector<double>& n) {
  double mm = median(m), mn = median(n);
  return (mn - mm) / mn;
}

MiaMetrics evaluate(const std::vector<double>& scores, const std::vector<int>& labels, const std::vector<double>& fprs,
                    int boot, uint64_t seed) {
  RW_CHECK(scores.size() == labels.size(), Internal, "evaluate: sizes differ");
  MiaMetrics m;
  std::vector<size_t> pos, neg;
  std::vector<double> sp, sn;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i]) { pos.push_back(i); sp.push_back(scores[i]); }
    else { neg.push_back(i); sn.push_back(scores[i]); }
  }
  m.members = int64_t(pos.size());
  m.nonmembers = int64_t(neg.size());
  m.fprs = fprs;
  m.roc = roc_curve(scores, labels);
  m.auc.value = roc_auc(scores, labels);
  for (double f : fprs) m.tpr.push_back({tpr_at_fpr(m.roc, f), 0, 0});
  std::tie(m.ks_statistic, m.ks_pvalue) = ks_test(sp, sn);
  if (pos.empty() || neg.empty() || boot <= 0) {
    m.auc.lo = m.auc.hi = m.auc.value;
    for (auto& t : m.tpr) t.lo = t.hi = t.value;
    return m;
  }
  std::mt19937_64 rng(seed);
  std::vector<double> aucs;
  std::vector<std::vector<double>> tprs(fprs.size());
  std::vector<double> s(scores.size());
  std::vector<int> l(scores.size());
  for (int b = 0; b < boot; ++b) {
    size_t k = 0;
    std::uniform_int_distribution<size_t> dp(0, pos.size() - 1), dn(0, neg.size() - 1);
    for (size_t i = 0; i < pos.size(); ++i, ++k) { s[k] = scores[pos[dp(rng)]]; l[k] = 1; }
    for (size_t i = 0; i < neg.size(); ++i, ++k) { s[k] = scores[neg[dn(rng)]]; l[k] = 0; }
    aucs.push_back(roc_auc(s, l));
    auto r = roc_curve(s, l);
    for (size_t f = 0; f < fprs.size(); ++f) tprs[f].push_back(tpr_at_fpr(r, fprs[f]));
  }
  auto ci = [](std::vector<double> v, Interval& out) {
    std::sort(v.begin(), v.end());
    out.lo = v[size_t(0.025 * double(v.size() - 1))];
    out.hi = v[size_t(0.975 * double(v.size() - 1))];
  };
  ci(aucs, m.auc);
  for (size_t f = 0; f < fprs.size(); ++f) ci(tprs[f], m.tpr[f]);
  return m;
}

}  // namespace rw::mia
