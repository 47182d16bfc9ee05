// Membership-inference evaluation: ROC, AUC, TPR at fixed FPR with bootstrap confidence intervals,
// the two-sample Kolmogorov-Smirnov test, and the MRE-gap of Webster et al. (CVPR 2019).
//
// Convention: a membership *score* is "higher = more likely a member" (attacks on errors use
// -error). Labels are 1 = member, 0 = non-member. Plain std::vector, no torch.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace rw::mia {

struct Roc {
  std::vector<double> fpr, tpr, threshold;  ///< from (0,0) to (1,1); threshold[i]: score > t is "member"
};

/// The empirical ROC curve (ties handled as one step).
Roc roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);
/// Area under the ROC curve = P(score(member) > score(non-member)) + 0.5 P(tie). NaN when a class is empty.
double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels);
/// Highest TPR among operating points with FPR <= fpr (0 when none).
double tpr_at_fpr(const Roc& roc, double fpr);

struct Interval {
  double value = 0, lo = 0, hi = 0;  ///< estimate and 95% percentile-bootstrap interval (lo, hi NaN: none drawn)
};

/// The fewest negatives that resolve an FPR: with 0 false positives among N negatives, the 95%
/// upper bound on the FPR is about 3/N (rule of three), so TPR at `fpr` needs N >= 3 / fpr.
int64_t negatives_to_resolve(double fpr);

/// TPR at one FPR, or why it is not stated.
struct TprAtFpr {
  double fpr = 0;
  bool resolved = false;  ///< nonmembers >= negatives_to_resolve(fpr)
  Interval tpr;           ///< only meaningful when resolved
  std::string reason;     ///< when not resolved: "n/a: needs >= N non-members (has M)"
};

/// A pointwise 95% percentile-bootstrap band of the ROC: at each FPR of a fixed grid (log-spaced
/// from 1e-4, then linear), the 2.5% and 97.5% quantiles of the resampled curves' TPR at that FPR.
/// Only FPRs the non-members resolve (negatives_to_resolve) are on the grid.
struct RocBand {
  std::vector<double> fpr, lo, hi;
};

struct MiaMetrics {
  int64_t members = 0, nonmembers = 0;
  Interval auc;
  double auc_pvalue = 1;             ///< two-sided, H0: AUC = 0.5 (Mann-Whitney U, normal approximation, tie-corrected)
  std::vector<TprAtFpr> tpr;         ///< at each requested FPR (1e-1, 1e-2, 1e-3, 1e-4 by default)
  double ks_statistic = 0, ks_pvalue = 1;
  Roc roc;
  RocBand band;                      ///< empty without bootstrap resamples
};

/// The FPRs membership reports TPR at.
inline const std::vector<double>& default_fprs() {
  static const std::vector<double> f = {1e-1, 1e-2, 1e-3, 1e-4};
  return f;
}

/// All metrics; `boot` bootstrap resamples (0: no intervals, their ends NaN) (stratified: members and non-members resampled
/// separately), seeded. TPR at an FPR the non-members cannot resolve is left unresolved.
/// `groups` (optional, one per item: the identity): a cluster bootstrap that resamples whole groups,
/// since images of one person are not independent evidence (their intervals would be too narrow).
MiaMetrics evaluate(const std::vector<double>& scores, const std::vector<int>& labels,
                    const std::vector<double>& fprs = default_fprs(), int boot = 1000, uint64_t seed = 1,
                    const std::vector<int64_t>& groups = {});

/// Two-sided p-value of AUC != 0.5 from the Mann-Whitney U statistic (normal approximation with
/// the tie correction of the variance). NaN when a class is empty; 1 when every score ties.
double auc_pvalue(const std::vector<double>& scores, const std::vector<int>& labels);

/// Exact (Clopper-Pearson) two-sided 95% interval of a binomial rate: k successes in n trials.
Interval clopper_pearson(int64_t k, int64_t n, double confidence = 0.95);

/// One-sided 95% upper bound of a rate with k events in n trials (Clopper-Pearson); ~3/n at k = 0.
double rate_upper_bound(int64_t k, int64_t n);
/// The most exceedances among n null scores that still certify `rate` (rate_upper_bound <= rate);
/// -1 when even none would (n too small).
int64_t max_exceedances(int64_t n, double rate);
/// The fewest null scores that certify `rate` with none exceeding: ceil(ln 0.05 / ln(1 - rate)).
int64_t null_scores_needed(double rate);

/// A validity guard (Das et al. 2024, "blind baselines"): can the member and non-member sets be
/// told apart WITHOUT the model, from simple image statistics alone? A ridge logistic regression
/// on standardised features, scored out of fold (k-fold, seeded, stratified, grouped); its AUC with a 95%
/// bootstrap interval. When the interval's lower end is above 0.5 the split itself is biased and
/// any attack's AUC on it is suspect.
struct BlindBaseline {
  MiaMetrics m;          ///< of the out-of-fold scores (AUC, interval, p-value)
  bool biased = false;   ///< m.auc.lo > 0.5
  int folds = 0;
  bool ran = false;      ///< false when a class has fewer than `folds` items (then nothing is claimed)
  std::string reason;    ///< when not ran
};
/// `features`: one row of F values per item (same F for all); labels 1 = member, 0 = non-member.
/// `groups` (optional, one per item: the identity): folds are dealt by group, so no person has images
/// on both sides of a fold (otherwise the regression recognises the person, not a bias of the split).
BlindBaseline blind_baseline(const std::vector<std::vector<double>>& features, const std::vector<int>& labels,
                             int folds = 5, int boot = 1000, uint64_t seed = 1, const std::vector<int64_t>& groups = {});

/// A p-value for reports: scientific notation ("3.2e-07"), "< 1e-300" when it underflows, "n/a" for NaN.
std::string format_pvalue(double p);

/// Two-sample KS statistic and asymptotic p-value (Kolmogorov distribution with the usual
/// effective-size correction).
std::pair<double, double> ks_test(std::vector<double> a, std::vector<double> b);

double median(std::vector<double> v);

/// Per-image membership scores calibrated by reference models (higher = more likely a member).
/// `target[i]`: image i's error (e.g. recovery MSE) under the model under attack; `refs[k][i]` its
/// error under reference model k, trained on data without the targets (K = refs.size() >= 1). NaN in
/// an input gives NaN for that image.
///   calibrated  mean_k refs[k][i] - target[i] (GAN-Leaks, Chen et al. 2020; K = 1: their attack)
///   lira        offline LiRA (Carlini et al. 2022) on log errors: (mu_i - log target[i]) / sigma_i,
///               mu_i = mean_k log refs[k][i]; sigma_i the image's own spread when K >= 8, else
///               LiRA's fixed variance pooled over all images (K >= 2); K = 1 uses the spread of
///               (log refs - log target) over images, so it ranks as calibrated on log errors
///   rmia        RMIA (Zarifzadeh et al. 2024) with error likelihoods p(x|m) = exp(-error / tau), tau the
///               median reference error: log p(x|target) - log mean_k p(x|ref_k). RMIA compares this
///               ratio with population samples' (gamma = 1, a = 1), which ranks as the ratio does, so
///               the ratio is reported
struct CalibratedScores {
  std::vector<double> calibrated, lira, rmia;
};
CalibratedScores calibrated_scores(const std::vector<double>& target, const std::vector<std::vector<double>>& refs);

/// A dataset-level test: "was this set of images used?" One-sided Mann-Whitney U test that the
/// owner's per-image scores (higher = more member-like) are stochastically larger than those of a
/// matched reference set of images certainly not used; normal approximation with tie and continuity
/// corrections. Not run (ran = false, reason said) below `min_owner` owner or `min_reference`
/// reference scores; NaN scores are dropped.
struct SetTest {
  bool ran = false;
  std::string reason;
  int64_t owner = 0, reference = 0;
  double auc = std::numeric_limits<double>::quiet_NaN();     ///< effect size: P(owner > reference) + P(tie) / 2
  double z = std::numeric_limits<double>::quiet_NaN();
  double pvalue = std::numeric_limits<double>::quiet_NaN();  ///< one-sided
};
SetTest set_test(const std::vector<double>& owner, const std::vector<double>& reference, int64_t min_owner = 20,
                 int64_t min_reference = 20);
/// Several tests of one set (one per attack, dependent): Bonferroni, min(1, k * min p); valid under
/// any dependence. NaN entries are ignored; NaN when none is left.
double combine_pvalues(const std::vector<double>& p);

/// MRE-gap: (median non-member error - median member error) / median non-member error.
/// 0 = no memorisation signal; 1 = members reconstructed perfectly. NaN for empty inputs.
double mre_gap(const std::vector<double>& member_errors, const std::vector<double>& nonmember_errors);

}  // namespace rw::mia
