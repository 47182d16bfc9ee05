#include "rewind/mia/metrics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <cstdio>
#include <map>
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

int64_t negatives_to_resolve(double fpr) {
  RW_CHECK(fpr > 0 && fpr < 1, Usage, "an FPR must be in (0, 1), got ", fpr);
  return int64_t(std::ceil(3.0 / fpr - 1e-9));
}

namespace {
/// Mann-Whitney U's variance under H0 with the tie correction: n1 n0 / 12 ((n + 1) - sum(t^3 - t) / (n (n - 1))).
double mann_whitney_var(std::vector<double> s, double n1, double n0) {
  std::sort(s.begin(), s.end());
  double ties = 0;  // sum of t^3 - t over tie groups
  for (size_t i = 0; i < s.size();) {
    size_t j = i;
    while (j < s.size() && s[j] == s[i]) ++j;
    const double t = double(j - i);
    ties += t * t * t - t;
    i = j;
  }
  const double n = n1 + n0;
  return n1 * n0 / 12.0 * ((n + 1) - ties / (n * (n - 1)));
}
}  // namespace

double auc_pvalue(const std::vector<double>& scores, const std::vector<int>& labels) {
  RW_CHECK(scores.size() == labels.size(), Internal, "auc_pvalue: sizes differ");
  double n1 = 0, n0 = 0;
  for (int l : labels) (l ? n1 : n0) += 1;
  if (n1 == 0 || n0 == 0) return std::numeric_limits<double>::quiet_NaN();
  const double var = mann_whitney_var(scores, n1, n0);
  if (!(var > 0)) return 1.0;
  const double u = roc_auc(scores, labels) * n1 * n0;
  const double z = (u - n1 * n0 / 2.0) / std::sqrt(var);
  return std::min(1.0, std::erfc(std::abs(z) / std::sqrt(2.0)));
}

namespace {

/// Continued fraction of the regularised incomplete beta function (modified Lentz).
double beta_cf(double a, double b, double x) {
  const double tiny = 1e-300;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::abs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 1000000; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::abs(del - 1) < 1e-15) break;
  }
  return h;
}

/// I_x(a, b), the regularised incomplete beta function.
double beta_inc(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double lbt = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1) / (a + b + 2)) return std::exp(lbt) * beta_cf(a, b, x) / a;
  return 1 - std::exp(lbt) * beta_cf(b, a, 1 - x) / b;
}

/// P(X <= k) for X ~ Binomial(n, p) = I_{1-p}(n - k, k + 1).
double binom_cdf(int64_t k, int64_t n, double p) {
  if (k < 0) return 0;
  if (k >= n || p <= 0) return 1;
  if (p >= 1) return 0;
  return beta_inc(double(n - k), double(k + 1), 1 - p);
}

/// The p in [0, 1] where the decreasing function f(p) crosses `target` (bisection).
template <class F>
double solve_decreasing(F f, double target) {
  double lo = 0, hi = 1;
  for (int it = 0; it < 200 && hi - lo > 1e-15; ++it) {
    const double mid = 0.5 * (lo + hi);
    (f(mid) > target ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace

Interval clopper_pearson(int64_t k, int64_t n, double confidence) {
  RW_CHECK(n > 0 && k >= 0 && k <= n, Usage, "clopper_pearson: need 0 <= k <= n, n > 0 (got k=", k, ", n=", n, ")");
  RW_CHECK(confidence > 0 && confidence < 1, Usage, "clopper_pearson: confidence must be in (0, 1)");
  const double a = (1 - confidence) / 2;
  Interval r;
  r.value = double(k) / double(n);
  // upper: P(X <= k | p) = a; lower: P(X >= k | p) = a, i.e. P(X <= k - 1 | p) = 1 - a (both decrease in p)
  r.hi = k == n ? 1.0 : solve_decreasing([&](double p) { return binom_cdf(k, n, p); }, a);
  r.lo = k == 0 ? 0.0 : solve_decreasing([&](double p) { return binom_cdf(k - 1, n, p); }, 1 - a);
  return r;
}

double rate_upper_bound(int64_t k, int64_t n) { return clopper_pearson(k, n, 0.90).hi; }

int64_t max_exceedances(int64_t n, double rate) {
  if (n <= 0 || rate_upper_bound(0, n) > rate) return -1;
  int64_t lo = 0, hi = std::min<int64_t>(n, int64_t(std::ceil(rate * double(n))) + 1);  // bound(k) > k/n
  while (lo < hi) {  // largest k with bound(k) <= rate (bound increases with k)
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (rate_upper_bound(mid, n) <= rate) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

int64_t null_scores_needed(double rate) {
  RW_CHECK(rate > 0 && rate < 1, Usage, "a rate must be in (0, 1), got ", rate);
  return int64_t(std::ceil(std::log(0.05) / std::log1p(-rate) - 1e-9));
}

namespace {

/// Solves A x = b (A symmetric positive definite, small) by Gaussian elimination with pivoting.
std::vector<double> solve(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t c = 0; c < n; ++c) {
    size_t piv = c;
    for (size_t r = c + 1; r < n; ++r)
      if (std::abs(a[r][c]) > std::abs(a[piv][c])) piv = r;
    std::swap(a[c], a[piv]);
    std::swap(b[c], b[piv]);
    if (std::abs(a[c][c]) < 1e-300) continue;
    for (size_t r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  std::vector<double> x(n, 0);
  for (size_t c = n; c-- > 0;) {
    double v = b[c];
    for (size_t k = c + 1; k < n; ++k) v -= a[c][k] * x[k];
    x[c] = std::abs(a[c][c]) < 1e-300 ? 0 : v / a[c][c];
  }
  return x;
}

/// Ridge logistic regression by Newton's method on rows `train`; returns weights (bias last).
std::vector<double> fit_logistic(const std::vector<std::vector<double>>& x, const std::vector<int>& y,
                                 const std::vector<size_t>& train, double ridge) {
  const size_t f = x[0].size() + 1;
  std::vector<double> w(f, 0);
  for (int it = 0; it < 25; ++it) {
    std::vector<std::vector<double>> h(f, std::vector<double>(f, 0));
    std::vector<double> g(f, 0);
    for (size_t i : train) {
      double z = w[f - 1];
      for (size_t k = 0; k + 1 < f; ++k) z += w[k] * x[i][k];
      const double p = 1 / (1 + std::exp(-z)), r = p - y[i], v = std::max(p * (1 - p), 1e-9);
      for (size_t a = 0; a < f; ++a) {
        const double xa = a + 1 < f ? x[i][a] : 1;
        g[a] += r * xa;
        for (size_t b = 0; b <= a; ++b) h[a][b] += v * xa * (b + 1 < f ? x[i][b] : 1);
      }
    }
    for (size_t a = 0; a < f; ++a) {
      for (size_t b = 0; b < a; ++b) h[b][a] = h[a][b];
      if (a + 1 < f) h[a][a] += ridge, g[a] += ridge * w[a];  // the bias is not penalised
    }
    auto step = solve(h, g);
    double mx = 0;
    for (size_t a = 0; a < f; ++a) w[a] -= step[a], mx = std::max(mx, std::abs(step[a]));
    if (mx < 1e-8) break;
  }
  return w;
}

}  // namespace

namespace {
/// The units a resample or a fold takes whole, per class (0 non-members, 1 members), in item order:
/// each group's items (`groups`, one per item), or each item alone when there are no groups.
std::array<std::vector<std::vector<size_t>>, 2> units_by_class(const std::vector<int>& labels,
                                                                const std::vector<int64_t>& groups) {
  std::array<std::vector<std::vector<size_t>>, 2> cls;
  std::map<std::pair<int, int64_t>, size_t> at;
  for (size_t i = 0; i < labels.size(); ++i) {
    const int c = labels[i] ? 1 : 0;
    auto [it, fresh] = at.emplace(std::make_pair(c, groups.empty() ? int64_t(i) : groups[i]), cls[c].size());
    if (fresh) cls[c].emplace_back();
    cls[c][it->second].push_back(i);
  }
  return cls;
}
}  // namespace

BlindBaseline blind_baseline(const std::vector<std::vector<double>>& features, const std::vector<int>& labels,
                             int folds, int boot, uint64_t seed, const std::vector<int64_t>& groups) {
  RW_CHECK(features.size() == labels.size(), Internal, "blind_baseline: ", features.size(), " rows, ", labels.size(), " labels");
  RW_CHECK(groups.empty() || groups.size() == labels.size(), Internal, "blind_baseline: ", groups.size(), " groups for ",
           labels.size(), " rows");
  RW_CHECK(folds >= 2, Usage, "blind_baseline: folds must be >= 2, got ", folds);
  BlindBaseline out;
  out.folds = folds;
  auto cls = units_by_class(labels, groups);  // dealt to folds whole: identities, or single items
  const std::string unit = groups.empty() ? "s" : " identities";
  if (cls[0].size() < size_t(folds) || cls[1].size() < size_t(folds) || features.empty() || features[0].empty()) {
    out.reason = "needs at least " + std::to_string(folds) + " member" + unit + " and " + std::to_string(folds) +
                 " non-member" + unit + " with image statistics (has " + std::to_string(cls[1].size()) + " / " +
                 std::to_string(cls[0].size()) + ")";
    return out;
  }
  const size_t nf = features[0].size();
  for (const auto& r : features)
    RW_CHECK(r.size() == nf, Internal, "blind_baseline: rows of different lengths");
  // stratified, grouped folds: each class's units shuffled (seeded) and dealt round robin
  std::vector<int> fold(labels.size(), 0);
  std::mt19937_64 rng(seed);
  for (auto& c : cls) {
    std::shuffle(c.begin(), c.end(), rng);
    for (size_t k = 0; k < c.size(); ++k)
      for (size_t i : c[k]) fold[i] = int(k % size_t(folds));
  }
  std::vector<double> score(labels.size(), 0);
  for (int f = 0; f < folds; ++f) {
    std::vector<size_t> train, test;
    for (size_t i = 0; i < labels.size(); ++i) (fold[i] == f ? test : train).push_back(i);
    // standardise on the training fold only
    std::vector<double> mu(nf, 0), sd(nf, 0);
    for (size_t i : train)
      for (size_t k = 0; k < nf; ++k) mu[k] += features[i][k];
    for (auto& v : mu) v /= double(train.size());
    for (size_t i : train)
      for (size_t k = 0; k < nf; ++k) sd[k] += (features[i][k] - mu[k]) * (features[i][k] - mu[k]);
    for (auto& v : sd) v = std::sqrt(v / double(train.size())) + 1e-12;
    std::vector<std::vector<double>> z(labels.size(), std::vector<double>(nf));
    for (size_t i = 0; i < labels.size(); ++i)
      for (size_t k = 0; k < nf; ++k) z[i][k] = std::clamp((features[i][k] - mu[k]) / sd[k], -50.0, 50.0);
    auto w = fit_logistic(z, labels, train, 1.0);
    for (size_t i : test) {
      double s = w[nf];
      for (size_t k = 0; k < nf; ++k) s += w[k] * z[i][k];
      score[i] = s;
    }
  }
  out.m = evaluate(score, labels, {}, boot, seed, groups);
  out.ran = true;
  out.biased = out.m.auc.lo > 0.5;
  return out;
}

std::string format_pvalue(double p) {
  if (std::isnan(p)) return "n/a";
  if (p <= 0) return "< 1e-300";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2e", p);
  return buf;
}

MiaMetrics evaluate(const std::vector<double>& scores, const std::vector<int>& labels, const std::vector<double>& fprs,
                    int boot, uint64_t seed, const std::vector<int64_t>& groups) {
  RW_CHECK(scores.size() == labels.size(), Internal, "evaluate: sizes differ");
  RW_CHECK(groups.empty() || groups.size() == labels.size(), Internal, "evaluate: ", groups.size(), " groups for ",
           labels.size(), " scores");
  MiaMetrics m;
  std::vector<double> sp, sn;  // member and non-member scores
  for (size_t i = 0; i < scores.size(); ++i) (labels[i] ? sp : sn).push_back(scores[i]);
  m.members = int64_t(sp.size());
  m.nonmembers = int64_t(sn.size());
  m.roc = roc_curve(scores, labels);
  m.auc.value = roc_auc(scores, labels);
  m.auc_pvalue = auc_pvalue(scores, labels);
  for (double f : fprs) {
    TprAtFpr t;
    t.fpr = f;
    const int64_t need = negatives_to_resolve(f);
    t.resolved = m.members > 0 && m.nonmembers >= need;
    if (t.resolved) t.tpr.value = t.tpr.lo = t.tpr.hi = tpr_at_fpr(m.roc, f);
    else
      t.reason = m.members == 0 ? "n/a: no members"
                                : "n/a: needs >= " + std::to_string(need) + " non-members (has " + std::to_string(m.nonmembers) + ")";
    m.tpr.push_back(t);
  }
  std::tie(m.ks_statistic, m.ks_pvalue) = ks_test(sp, sn);
  if (sp.empty() || sn.empty() || boot <= 0) {
    // no resamples, no interval: NaN ends print as "no interval", never as a point interval [v, v]
    const double nan = std::numeric_limits<double>::quiet_NaN();
    m.auc.lo = m.auc.hi = nan;
    for (auto& t : m.tpr)
      if (t.resolved) t.tpr.lo = t.tpr.hi = nan;
    return m;
  }
  // the band's grid: 10 points a decade from 1e-4 to 0.1, then every 0.02 to 0.98; resolved FPRs only
  std::vector<double> grid;
  for (int k = -40; k < -10; ++k) grid.push_back(std::pow(10.0, k / 10.0));
  for (int k = 5; k < 50; ++k) grid.push_back(k / 50.0);
  grid.erase(std::remove_if(grid.begin(), grid.end(), [&](double f) { return negatives_to_resolve(f) > m.nonmembers; }),
             grid.end());
  std::vector<std::vector<double>> band(grid.size());
  std::mt19937_64 rng(seed);
  std::vector<double> aucs;
  std::vector<std::vector<double>> tprs(fprs.size());
  std::vector<double> s;
  std::vector<int> l;
  // stratified (cluster) bootstrap: each class's units (an item, or the items of one person) drawn whole,
  // with replacement, members first
  const auto units = units_by_class(labels, groups);
  for (int b = 0; b < boot; ++b) {
    s.clear(), l.clear();
    for (int c : {1, 0}) {
      std::uniform_int_distribution<size_t> draw(0, units[c].size() - 1);
      for (size_t u = 0; u < units[c].size(); ++u)
        for (size_t i : units[c][draw(rng)]) s.push_back(scores[i]), l.push_back(c);
    }
    aucs.push_back(roc_auc(s, l));
    auto r = roc_curve(s, l);
    for (size_t f = 0; f < fprs.size(); ++f)
      if (m.tpr[f].resolved) tprs[f].push_back(tpr_at_fpr(r, fprs[f]));
    // the curve's FPR and TPR both rise: one sweep gives the TPR at every grid FPR
    size_t i = 0;
    double best = 0;
    for (size_t g = 0; g < grid.size(); ++g) {
      for (; i < r.fpr.size() && r.fpr[i] <= grid[g] + 1e-12; ++i) best = std::max(best, r.tpr[i]);
      band[g].push_back(best);
    }
  }
  auto ci = [](std::vector<double> v, Interval& out) {
    std::sort(v.begin(), v.end());
    out.lo = v[size_t(0.025 * double(v.size() - 1))];
    out.hi = v[size_t(0.975 * double(v.size() - 1))];
  };
  ci(aucs, m.auc);
  for (size_t g = 0; g < grid.size(); ++g) {
    Interval b;
    ci(band[g], b);
    m.band.fpr.push_back(grid[g]);
    m.band.lo.push_back(b.lo);
    m.band.hi.push_back(b.hi);
  }
  for (size_t f = 0; f < fprs.size(); ++f)
    if (m.tpr[f].resolved) ci(tprs[f], m.tpr[f].tpr);
  return m;
}

CalibratedScores calibrated_scores(const std::vector<double>& target, const std::vector<std::vector<double>>& refs) {
  RW_CHECK(!refs.empty(), Internal, "calibrated_scores needs at least one reference");
  const size_t n = target.size(), K = refs.size();
  for (const auto& r : refs) RW_CHECK(r.size() == n, Internal, "calibrated_scores: reference errors for ", r.size(), " images, target for ", n);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto lg = [](double e) { return std::log(std::max(e, 1e-12)); };
  CalibratedScores out;
  out.calibrated.assign(n, nan);
  out.lira.assign(n, nan);
  out.rmia.assign(n, nan);
  std::vector<double> mu(n, nan), all_ref;
  std::vector<bool> ok(n, false);
  double pooled_ss = 0, pooled_n = 0;
  std::vector<double> k1_dev;  // K = 1: log ref - log target over images
  for (size_t i = 0; i < n; ++i) {
    bool good = std::isfinite(target[i]);
    for (size_t k = 0; k < K; ++k) good = good && std::isfinite(refs[k][i]);
    if (!good) continue;
    ok[i] = true;
    double mean = 0, lmean = 0;
    for (size_t k = 0; k < K; ++k) mean += refs[k][i], lmean += lg(refs[k][i]), all_ref.push_back(refs[k][i]);
    mean /= double(K), lmean /= double(K);
    mu[i] = lmean;
    out.calibrated[i] = mean - target[i];
    for (size_t k = 0; k < K; ++k) pooled_ss += (lg(refs[k][i]) - lmean) * (lg(refs[k][i]) - lmean);
    pooled_n += double(K) - 1;
    if (K == 1) k1_dev.push_back(lg(refs[0][i]) - lg(target[i]));
  }
  double global_sd = nan;
  if (K >= 2 && pooled_n > 0) global_sd = std::sqrt(pooled_ss / pooled_n);
  if (K == 1 && k1_dev.size() >= 2) {
    double m = 0, ss = 0;
    for (double d : k1_dev) m += d;
    m /= double(k1_dev.size());
    for (double d : k1_dev) ss += (d - m) * (d - m);
    global_sd = std::sqrt(ss / double(k1_dev.size() - 1));
  }
  const double tau = std::max(median(all_ref), 1e-12);
  for (size_t i = 0; i < n; ++i) {
    if (!ok[i]) continue;
    double sd = global_sd;
    if (K >= 8) {
      double ss = 0;
      for (size_t k = 0; k < K; ++k) ss += (lg(refs[k][i]) - mu[i]) * (lg(refs[k][i]) - mu[i]);
      sd = std::sqrt(ss / double(K - 1));
    }
    if (std::isfinite(sd) && sd > 0) out.lira[i] = (mu[i] - lg(target[i])) / sd;
    // log mean_k exp(-r_k / tau), computed stably
    double mx = -std::numeric_limits<double>::infinity();
    for (size_t k = 0; k < K; ++k) mx = std::max(mx, -refs[k][i] / tau);
    double s = 0;
    for (size_t k = 0; k < K; ++k) s += std::exp(-refs[k][i] / tau - mx);
    out.rmia[i] = -target[i] / tau - (mx + std::log(s / double(K)));
  }
  return out;
}

SetTest set_test(const std::vector<double>& owner, const std::vector<double>& reference, int64_t min_owner,
                 int64_t min_reference) {
  SetTest t;
  std::vector<double> scores;
  std::vector<int> labels;
  for (double v : owner)
    if (!std::isnan(v)) scores.push_back(v), labels.push_back(1), ++t.owner;
  for (double v : reference)
    if (!std::isnan(v)) scores.push_back(v), labels.push_back(0), ++t.reference;
  if (t.owner < min_owner || t.reference < min_reference) {
    t.reason = "n/a: needs >= " + std::to_string(min_owner) + " of your images and >= " + std::to_string(min_reference) +
               " reference images with scores (has " + std::to_string(t.owner) + " and " + std::to_string(t.reference) + ")";
    return t;
  }
  t.ran = true;
  const double n1 = double(t.owner), n0 = double(t.reference);
  t.auc = roc_auc(scores, labels);
  const double var = mann_whitney_var(scores, n1, n0);
  if (!(var > 0)) {
    t.z = 0;
    t.pvalue = 1;
    return t;
  }
  const double u = t.auc * n1 * n0;
  t.z = (u - n1 * n0 / 2.0 - 0.5) / std::sqrt(var);  // continuity correction toward H0
  t.pvalue = std::min(1.0, 0.5 * std::erfc(t.z / std::sqrt(2.0)));
  return t;
}

double combine_pvalues(const std::vector<double>& p) {
  double lo = std::numeric_limits<double>::infinity();
  int k = 0;
  for (double v : p)
    if (!std::isnan(v)) lo = std::min(lo, v), ++k;
  return k ? std::min(1.0, k * lo) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace rw::mia
