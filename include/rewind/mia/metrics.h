// Membership-inference evaluation: ROC, AUC, TPR at fixed FPR with bootstrap confidence intervals,
// the two-sample Kolmogorov-Smirnov test, and the MRE-gap of Webster et al. (CVPR 2019).
//
// Convention: a membership *score* is "higher = more likely a member" (attacks on errors use
// -error). Labels are 1 = member, 0 = non-member. Plain std::vector, no torch.
#pragma once

#include <cstdint>
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
  double value = 0, lo = 0, hi = 0;  ///< estimate and 95% percentile-bootstrap interval
};

struct MiaMetrics {
  int64_t members = 0, nonmembers = 0;
  Interval auc;
  std::vector<double> fprs;          ///< the FPRs of tpr (1e-3, 1e-2, 1e-1 by default)
  std::vector<Interval> tpr;         ///< TPR at each FPR
  double ks_statistic = 0, ks_pvalue = 1;
  Roc roc;
};

/// All metrics; `boot` bootstrap resamples (stratified: members and non-members resampled
/// separately), seeded.
MiaMetrics evaluate(const std::vector<double>& scores, const std::vector<int>& labels,
                    const std::vector<double>& fprs = {1e-3, 1e-2, 1e-1}, int boot = 1000, uint64_t seed = 1);

/// Two-sample KS statistic and asymptotic p-value (Kolmogorov distribution with the usual
/// effective-size correction).
std::pair<double, double> ks_test(std::vector<double> a, std::vector<double> b);

double median(std::vector<double> v);
/// MRE-gap: (median non-member error - median member error) / median non-member error.
/// 0 = no memorisation signal; 1 = members reconstructed perfectly. NaN for empty inputs.
double mre_gap(const std::vector<double>& member_errors, const std::vector<double>& nonmember_errors);

}  // namespace rw::mia
