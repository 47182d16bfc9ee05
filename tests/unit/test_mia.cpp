// Membership metrics against slow references; report escaping.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <random>

#include "rewind/mia/metrics.h"
#include "rewind/report/html.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

using namespace rw;

TEST(Mia, AucMatchesPairCounting) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> nd;
  std::vector<double> s;
  std::vector<int> l;
  for (int i = 0; i < 300; ++i) {
    int lab = i % 3 == 0;
    l.push_back(lab);
    s.push_back(std::round((nd(rng) + 0.7 * lab) * 4) / 4);  // rounded: plenty of ties
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t j = 0; j < s.size(); ++j)
      if (l[i] == 1 && l[j] == 0) {
        num += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
        den += 1;
      }
  EXPECT_NEAR(mia::roc_auc(s, l), num / den, 1e-12);
  // trapezoid area under the ROC curve is the same number
  auto r = mia::roc_curve(s, l);
  double area = 0;
  for (size_t i = 1; i < r.fpr.size(); ++i) area += (r.fpr[i] - r.fpr[i - 1]) * (r.tpr[i] + r.tpr[i - 1]) / 2;
  EXPECT_NEAR(area, num / den, 1e-12);
}

TEST(Mia, SeparatedAndReversed) {
  std::vector<double> s = {0.9, 0.8, 0.7, 0.2, 0.1};
  std::vector<int> l = {1, 1, 1, 0, 0};
  EXPECT_DOUBLE_EQ(mia::roc_auc(s, l), 1.0);
  auto r = mia::roc_curve(s, l);
  EXPECT_DOUBLE_EQ(mia::tpr_at_fpr(r, 0.0), 1.0);
  std::vector<int> rev = {0, 0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(mia::roc_auc(s, rev), 0.0);
  EXPECT_DOUBLE_EQ(mia::tpr_at_fpr(mia::roc_curve(s, rev), 0.5), 0.0);
  EXPECT_TRUE(std::isnan(mia::roc_auc({1, 2}, {1, 1})));
}

TEST(Mia, TprAtFprOnAKnownCurve) {
  // members 0.9 0.6 0.4; non-members 0.8 0.5 0.1: at FPR 0 only 0.9 is above all non-members
  std::vector<double> s = {0.9, 0.6, 0.4, 0.8, 0.5, 0.1};
  std::vector<int> l = {1, 1, 1, 0, 0, 0};
  auto r = mia::roc_curve(s, l);
  EXPECT_NEAR(mia::tpr_at_fpr(r, 0.0), 1.0 / 3, 1e-12);
  EXPECT_NEAR(mia::tpr_at_fpr(r, 1.0 / 3), 2.0 / 3, 1e-12);
  EXPECT_NEAR(mia::tpr_at_fpr(r, 2.0 / 3), 1.0, 1e-12);
}

TEST(Mia, KsTest) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> nd;
  std::vector<double> a, b, c;
  for (int i = 0; i < 400; ++i) {
    a.push_back(nd(rng));
    b.push_back(nd(rng));
    c.push_back(nd(rng) + 0.5);
  }
  auto same = mia::ks_test(a, b), shifted = mia::ks_test(a, c);
  EXPECT_GT(same.second, 0.01);
  EXPECT_LT(shifted.second, 1e-6);
  EXPECT_GT(shifted.first, same.first);
  // exact statistic on a tiny case: F_a jumps at 1,2; F_b at 3,4 -> D = 1
  EXPECT_DOUBLE_EQ(mia::ks_test({1, 2}, {3, 4}).first, 1.0);
}

TEST(Mia, MreGapAndMedian) {
  EXPECT_DOUBLE_EQ(mia::median({3, 1, 2}), 2.0);
  EXPECT_DOUBLE_EQ(mia::median({4, 1, 2, 3}), 2.5);
  EXPECT_DOUBLE_EQ(mia::mre_gap({1, 1, 1}, {2, 2, 2}), 0.5);
  EXPECT_DOUBLE_EQ(mia::mre_gap({2, 2}, {2, 2}), 0.0);
}

/// n scores, alternately non-member N(0, 1) and member N(1, 1), seeded.
static void alternating_normals(int n, uint64_t seed, std::vector<double>* s, std::vector<int>* l) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  for (int i = 0; i < n; ++i) {
    l->push_back(i % 2);
    s->push_back(nd(rng) + (i % 2));
  }
}

TEST(Mia, BootstrapIntervalBracketsEstimate) {
  std::vector<double> s;
  std::vector<int> l;
  alternating_normals(200, 7, &s, &l);
  auto m = mia::evaluate(s, l, {1e-1, 3e-2}, 300, 1);
  EXPECT_EQ(m.members, 100);
  EXPECT_LE(m.auc.lo, m.auc.value);
  EXPECT_GE(m.auc.hi, m.auc.value);
  EXPECT_GT(m.auc.hi - m.auc.lo, 0.02);  // 200 samples: the interval cannot be a point
  EXPECT_GT(m.auc.value, 0.65);
  ASSERT_EQ(m.tpr.size(), 2u);
  ASSERT_TRUE(m.tpr[0].resolved && m.tpr[1].resolved);  // 100 non-members resolve 1e-1 (30) and 3e-2 (100)
  EXPECT_GE(m.tpr[0].tpr.value, m.tpr[1].tpr.value);
  EXPECT_LE(m.tpr[1].tpr.lo, m.tpr[1].tpr.value);
  EXPECT_GE(m.tpr[1].tpr.hi, m.tpr[1].tpr.value);
}

// boot = 0: no resamples, so no interval: the ends are NaN and print as "(no interval)", never as [v, v]
TEST(Mia, NoResamplesNoInterval) {
  std::vector<double> s;
  std::vector<int> l;
  alternating_normals(200, 7, &s, &l);
  auto m = mia::evaluate(s, l, {1e-1}, 0, 1);
  EXPECT_GT(m.auc.value, 0.65);
  EXPECT_TRUE(std::isnan(m.auc.lo) && std::isnan(m.auc.hi));
  ASSERT_TRUE(m.tpr[0].resolved);
  EXPECT_TRUE(std::isnan(m.tpr[0].tpr.lo) && std::isnan(m.tpr[0].tpr.hi));
  EXPECT_TRUE(m.band.fpr.empty());
  EXPECT_EQ(report::fmt_interval(m.auc.value, m.auc.lo, m.auc.hi), report::fmt(m.auc.value) + " (no interval)");
  EXPECT_EQ(report::fmt_interval(0.5, 0.25, 0.75), "0.500 [0.250, 0.750]");
}

TEST(Mia, RocBandBracketsTheCurveWhereResolved) {
  std::vector<double> s;
  std::vector<int> l;
  alternating_normals(400, 11, &s, &l);
  auto m = mia::evaluate(s, l, {1e-1}, 300, 1);
  // 200 non-members resolve FPR >= 3/200 = 0.015: the grid starts there and runs to 0.98
  ASSERT_FALSE(m.band.fpr.empty());
  EXPECT_GE(m.band.fpr.front(), 0.015);
  EXPECT_LT(m.band.fpr.front(), 0.02);
  EXPECT_NEAR(m.band.fpr.back(), 0.98, 1e-12);
  ASSERT_EQ(m.band.lo.size(), m.band.fpr.size());
  ASSERT_EQ(m.band.hi.size(), m.band.fpr.size());
  for (size_t g = 0; g < m.band.fpr.size(); ++g) {
    const double t = mia::tpr_at_fpr(m.roc, m.band.fpr[g]);
    EXPECT_LE(m.band.lo[g], t + 0.02) << m.band.fpr[g];  // the estimate sits inside its own band
    EXPECT_GE(m.band.hi[g], t - 0.02) << m.band.fpr[g];
    EXPECT_LE(m.band.lo[g], m.band.hi[g]) << m.band.fpr[g];
    if (m.band.fpr[g] <= 0.5) {  // 400 samples: a band, not a line
      EXPECT_LT(m.band.lo[g], m.band.hi[g]) << m.band.fpr[g];
    }
    if (g > 0) {  // both edges rise with the FPR, as every resampled curve does
      EXPECT_GE(m.band.lo[g], m.band.lo[g - 1]);
      EXPECT_GE(m.band.hi[g], m.band.hi[g - 1]);
    }
  }
  // the band at FPR 0.1 is the interval of TPR at 0.1 (same resamples, same quantiles)
  const auto at = std::find_if(m.band.fpr.begin(), m.band.fpr.end(), [](double f) { return std::abs(f - 0.1) < 1e-9; });
  ASSERT_NE(at, m.band.fpr.end());
  const size_t g = size_t(at - m.band.fpr.begin());
  EXPECT_DOUBLE_EQ(m.band.lo[g], m.tpr[0].tpr.lo);
  EXPECT_DOUBLE_EQ(m.band.hi[g], m.tpr[0].tpr.hi);
  // no resamples, no band
  EXPECT_TRUE(mia::evaluate(s, l, {1e-1}, 0, 1).band.fpr.empty());
}

TEST(Mia, TprOnlyWhereTheNegativesResolveTheFpr) {
  EXPECT_EQ(mia::negatives_to_resolve(1e-1), 30);
  EXPECT_EQ(mia::negatives_to_resolve(1e-3), 3000);
  EXPECT_EQ(mia::negatives_to_resolve(1e-4), 30000);
  // 64 members scored above 64 non-members: a perfect attack, yet 64 negatives resolve FPR 1e-1 only
  std::vector<double> s;
  std::vector<int> l;
  for (int i = 0; i < 128; ++i) {
    l.push_back(i < 64);
    s.push_back(i < 64 ? 1.0 + i : -1.0 - i);
  }
  auto m = mia::evaluate(s, l, mia::default_fprs(), 50, 1);
  ASSERT_EQ(m.tpr.size(), 4u);
  EXPECT_TRUE(m.tpr[0].resolved);
  EXPECT_DOUBLE_EQ(m.tpr[0].tpr.value, 1.0);
  for (size_t f = 1; f < 4; ++f) {
    EXPECT_FALSE(m.tpr[f].resolved) << m.tpr[f].fpr;
    EXPECT_NE(m.tpr[f].reason.find("has 64"), std::string::npos) << m.tpr[f].reason;
  }
  EXPECT_NE(m.tpr[1].reason.find("needs >= 300 non-members"), std::string::npos) << m.tpr[1].reason;
}

TEST(Mia, ClopperPearsonKnownIntervals) {
  // k = 0: the upper bound solves (1 - p)^n = 0.025 (closed form)
  auto z = mia::clopper_pearson(0, 100);
  EXPECT_DOUBLE_EQ(z.lo, 0.0);
  EXPECT_NEAR(z.hi, 1 - std::pow(0.025, 1.0 / 100), 1e-9);
  // k = n mirrors it
  auto all = mia::clopper_pearson(100, 100);
  EXPECT_NEAR(all.lo, std::pow(0.025, 1.0 / 100), 1e-9);
  EXPECT_DOUBLE_EQ(all.hi, 1.0);
  // 5 of 10: the textbook exact interval [0.1871, 0.8129]
  auto h = mia::clopper_pearson(5, 10);
  EXPECT_NEAR(h.lo, 0.187086, 1e-5);
  EXPECT_NEAR(h.hi, 0.812914, 1e-5);
  EXPECT_NEAR(h.lo + h.hi, 1.0, 1e-9);  // symmetric at k = n / 2
}

TEST(Mia, AucPValueByHand) {
  // members {3, 4}, non-members {1, 2}: U = 4, E[U] = 2, Var[U] = 2*2/12 * 5 = 5/3, z = 2 / sqrt(5/3)
  const double z = 2 / std::sqrt(5.0 / 3.0);
  EXPECT_NEAR(mia::auc_pvalue({3, 4, 1, 2}, {1, 1, 0, 0}), std::erfc(z / std::sqrt(2.0)), 1e-12);
  EXPECT_NEAR(mia::auc_pvalue({3, 4, 1, 2}, {1, 1, 0, 0}), 0.1213, 1e-4);
  // with a tie (scores 1, 2, 2, 3; members 2 and 3): U = 3.5, tie term 2^3 - 2 = 6: Var = 4/12 * (5 - 6/12)
  const double zt = (3.5 - 2) / std::sqrt(4.0 / 12 * (5 - 0.5));
  EXPECT_NEAR(mia::auc_pvalue({2, 3, 1, 2}, {1, 1, 0, 0}), std::erfc(zt / std::sqrt(2.0)), 1e-12);
  EXPECT_DOUBLE_EQ(mia::auc_pvalue({1, 1, 1, 1}, {1, 1, 0, 0}), 1.0);  // no information
  EXPECT_TRUE(std::isnan(mia::auc_pvalue({1, 2}, {1, 1})));
  EXPECT_EQ(mia::format_pvalue(3.2e-7), "3.20e-07");
  EXPECT_EQ(mia::format_pvalue(0.0), "< 1e-300");
  EXPECT_EQ(mia::format_pvalue(NAN), "n/a");
}

TEST(Report, EscapesUserTextAndEncodes) {
  EXPECT_EQ(report::escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
  EXPECT_EQ(report::base64("Man"), "TWFu");
  EXPECT_EQ(report::base64("Ma"), "TWE=");
  EXPECT_EQ(report::base64("M"), "TQ==");
  report::HtmlReport r("audit <b>");
  r.table({"identity"}, {{"<img src=x onerror=alert(1)>"}});
  auto html = r.str();
  EXPECT_EQ(html.find("<img src=x"), std::string::npos);
  EXPECT_NE(html.find("&lt;img src=x"), std::string::npos);
  EXPECT_NE(html.find("audit &lt;b&gt;"), std::string::npos);
  report::PlotOptions po;
  po.title = "t", po.x_label = "FPR", po.y_label = "TPR", po.log_x = po.log_y = po.diagonal = true;
  auto svg = report::svg_plot({{"roc <1>", {0, 0.5, 1}, {0, 0.8, 1}, false, {}, {}, {}, {}}}, po);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("roc &lt;1&gt;"), std::string::npos);
}

// The Vega-Lite spec of a line plot: its data (points a log axis cannot show dropped), tooltips,
// rules; and a report page that embeds it: the spec in a JSON block that no text can close, the
// spec file written beside the page, Vega inlined (or the static fallback where it is missing).
TEST(Report, VegaSpecAndPlotFiles) {
  report::Series a{"attack </script><b>x", {0, 0.01, 0.5, 1}, {0, 0.2, 0.9, 1}, false, {"p0", "p1", "p2", "p3"}, {}, {}, {}};
  report::Series b{"baseline", {0.1, 1}, {0.1, 1}, true, {}, {}, {}, {}};
  report::PlotOptions o;
  o.title = "ROC";
  o.x_label = "FPR";
  o.log_x = o.log_y = true;
  o.diagonal = true;
  o.x_min = 1e-3, o.x_max = 1;
  o.x_rules = {{0.01, "FPR 1%"}};
  const auto spec = nlohmann::json::parse(report::vega_line_spec({a, b}, o));
  const auto& values = spec.at("data").at("values");
  ASSERT_EQ(values.size(), 3u + 2u);  // (0, 0) has no place on log axes
  EXPECT_EQ(values[0].at("tip"), "p1");
  EXPECT_EQ(values[3].at("dashed"), true);
  EXPECT_FALSE(values[3].contains("tip"));
  const auto& layers = spec.at("layer");
  ASSERT_EQ(layers.size(), 4u);  // lines, diagonal, the rule and its label
  EXPECT_EQ(layers[0].at("encoding").at("x").at("scale").at("type"), "log");
  EXPECT_EQ(layers[0].at("encoding").at("tooltip").back().at("field"), "tip");
  EXPECT_EQ(layers[2].at("mark").at("type"), "rule");
  EXPECT_EQ(layers[2].at("encoding").at("x").at("datum"), 0.01);
  EXPECT_EQ(layers[3].at("data").at("values")[0].at("label"), "FPR 1%");
  // named stages: an ordinal axis in the given order
  report::PlotOptions n;
  n.x_names = {"conv1", "", "pool1"};
  const auto ns = nlohmann::json::parse(report::vega_line_spec({{"psnr", {0, 2}, {20, 15}, false, {}, {}, {}, {}}}, n));
  EXPECT_EQ(ns.at("data").at("values")[1].at("x"), "pool1");
  EXPECT_EQ(ns.at("layer")[0].at("encoding").at("x").at("sort"), nlohmann::json({"conv1", "pool1"}));
  // an interval band: an area layer under the lines, in the series' colour, its floor on a log axis at the axis
  report::Series banded = a;
  banded.band_x = {0.01, 0.1, 0.5};
  banded.band_lo = {0, 0.3, 0.8};
  banded.band_hi = {0.4, 0.7, 0.95};
  o.y_min = 1e-3, o.y_max = 1;
  const auto bs = nlohmann::json::parse(report::vega_line_spec({banded, b}, o));
  const auto& area = bs.at("layer")[0];
  EXPECT_EQ(area.at("mark").at("type"), "area");
  EXPECT_EQ(area.at("encoding").at("y2").at("field"), "hi");
  const auto& bv = area.at("data").at("values");
  ASSERT_EQ(bv.size(), 3u);
  EXPECT_EQ(bv[0].at("series"), a.name);
  EXPECT_DOUBLE_EQ(bv[0].at("lo").get<double>(), 1e-3);
  EXPECT_DOUBLE_EQ(bv[2].at("hi").get<double>(), 0.95);
  EXPECT_EQ(bs.at("layer")[1].at("mark").at("type"), "line");
  EXPECT_NE(report::svg_plot({banded}, o).find("<polygon"), std::string::npos);
  o.y_min = o.y_max = 0;

  rw::test::TempDir tmp;
  report::HtmlReport r("plots");
  const std::string text = report::vega_line_spec({a, b}, o);
  r.vega("roc", text, "<svg id=\"fallback\"></svg>");
  r.write(tmp / "report.html");
  EXPECT_EQ(rw::test::read_text(tmp / "plots/roc.vl.json"), text + "\n");
  const auto html = rw::test::read_text(tmp / "report.html");
  EXPECT_EQ(html.find("</script><b>x"), std::string::npos) << "spec text closed its block";
  if (report::vega_assets().empty()) {
    EXPECT_NE(html.find("id=\"fallback\""), std::string::npos);
    EXPECT_NE(html.find("plots/roc.vl.json"), std::string::npos);
  } else {
    EXPECT_NE(html.find("\\u003c/script>\\u003cb>x"), std::string::npos);
    EXPECT_NE(html.find("vegaEmbed("), std::string::npos);
    EXPECT_EQ(html.find("id=\"fallback\""), std::string::npos);
    EXPECT_NE(html.find("<script type=\"application/json\" id=\"vega-0-spec\">"), std::string::npos);
  }
}

TEST(Mia, BlindBaselineSeparatesOnlyWhatDiffers) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> nd;
  std::vector<std::vector<double>> same, shifted;
  std::vector<int> l;
  for (int i = 0; i < 400; ++i) {
    l.push_back(i % 2);
    same.push_back({nd(rng), nd(rng), nd(rng)});
    shifted.push_back({nd(rng) + (i % 2 ? 1.0 : 0.0), nd(rng), nd(rng)});  // one feature differs by 1 sd
  }
  auto fair = mia::blind_baseline(same, l, 5, 300, 1);
  ASSERT_TRUE(fair.ran);
  EXPECT_FALSE(fair.biased) << fair.m.auc.value;
  EXPECT_NEAR(fair.m.auc.value, 0.5, 0.08);
  auto biased = mia::blind_baseline(shifted, l, 5, 300, 1);
  ASSERT_TRUE(biased.ran);
  EXPECT_TRUE(biased.biased);
  // two unit-variance Gaussians 1 sd apart: AUC = Phi(1 / sqrt 2) = 0.760
  EXPECT_NEAR(biased.m.auc.value, 0.760, 0.05);
  auto few = mia::blind_baseline({{1}, {2}, {3}}, {1, 0, 1}, 5, 10, 1);
  EXPECT_FALSE(few.ran);
  EXPECT_NE(few.reason.find("at least 5 members"), std::string::npos) << few.reason;
}

// Four copies of each person's score are one piece of evidence, not four: resampling whole identities
// gives the interval of 30 + 30 people, resampling images one about half as wide.
TEST(Mia, ClusterBootstrapResamplesIdentities) {
  std::mt19937_64 rng(9);
  std::normal_distribution<double> nd;
  std::vector<double> s;
  std::vector<int> l;
  std::vector<int64_t> g;
  for (int64_t id = 0; id < 60; ++id) {
    const double v = nd(rng) + (id < 30 ? 0.8 : 0.0);
    for (int k = 0; k < 4; ++k) s.push_back(v), l.push_back(id < 30), g.push_back(id);
  }
  const auto flat = mia::evaluate(s, l, {1e-1}, 400, 1);
  const auto grouped = mia::evaluate(s, l, {1e-1}, 400, 1, g);
  EXPECT_DOUBLE_EQ(flat.auc.value, grouped.auc.value);  // the estimate is the same
  const double wf = flat.auc.hi - flat.auc.lo, wg = grouped.auc.hi - grouped.auc.lo;
  EXPECT_GT(wg, 1.5 * wf) << wf << " " << wg;
  EXPECT_LT(wg, 2.6 * wf) << wf << " " << wg;
}

// Images of a person share their statistics. With folds dealt by image, the regression learns the
// people and "separates" a split with no bias at all; dealt by identity, it finds nothing.
TEST(Mia, BlindBaselineFoldsByIdentity) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> nd;
  std::vector<std::vector<double>> f;
  std::vector<int> l;
  std::vector<int64_t> group;
  for (int64_t id = 0; id < 60; ++id) {  // 20 member identities, 40 non-member ones, 4 images each
    std::vector<double> person = {nd(rng), nd(rng), nd(rng), nd(rng)};
    for (int k = 0; k < 4; ++k) {
      std::vector<double> x;
      for (double v : person) x.push_back(v + 0.05 * nd(rng));
      f.push_back(x);
      l.push_back(id < 20);
      group.push_back(id);
    }
  }
  const auto by_image = mia::blind_baseline(f, l, 5, 200, 1);
  const auto by_person = mia::blind_baseline(f, l, 5, 200, 1, group);
  ASSERT_TRUE(by_image.ran && by_person.ran);
  EXPECT_GT(by_image.m.auc.value, 0.6);  // the false alarm the grouping removes
  EXPECT_FALSE(by_person.biased) << by_person.m.auc.value;
  EXPECT_LT(std::abs(by_person.m.auc.value - 0.5), 0.15);
  auto few = mia::blind_baseline({{1}, {2}, {3}, {4}}, {1, 1, 0, 0}, 2, 10, 1, {7, 7, 8, 8});
  EXPECT_FALSE(few.ran);  // one identity a class cannot fill 2 folds
  EXPECT_NE(few.reason.find("at least 2 member identities"), std::string::npos) << few.reason;
}

// Reference-calibrated scores on planted errors, against values worked out by hand.
TEST(Calibrated, GanLeaksLiraRmiaByHand) {
  // 3 images, K = 2 references: errors e, r1, r2
  const std::vector<double> e = {0.01, 0.04, 0.02};
  const std::vector<std::vector<double>> refs = {{0.04, 0.04, 0.02}, {0.04, 0.04, 0.08}};
  auto s = mia::calibrated_scores(e, refs);
  // calibrated: mean ref - e
  EXPECT_NEAR(s.calibrated[0], 0.03, 1e-12);
  EXPECT_NEAR(s.calibrated[1], 0.0, 1e-12);
  EXPECT_NEAR(s.calibrated[2], 0.03, 1e-12);
  // lira, K = 2 < 8: pooled sd of log refs around each image's mean. Images 0, 1 have equal refs
  // (no spread); image 2: log 0.02, log 0.08 = mean -/+ log(2), so ss = 2 log(2)^2 over N(K-1) = 3
  const double sd = std::sqrt(2 * std::log(2.0) * std::log(2.0) / 3);
  EXPECT_NEAR(s.lira[0], (std::log(0.04) - std::log(0.01)) / sd, 1e-9);
  EXPECT_NEAR(s.lira[1], 0.0, 1e-9);
  EXPECT_NEAR(s.lira[2], ((std::log(0.02) + std::log(0.08)) / 2 - std::log(0.02)) / sd, 1e-9);
  // rmia: tau = median of the 6 reference errors = 0.04; -e/tau - log mean_k exp(-r_k/tau)
  EXPECT_NEAR(s.rmia[0], -0.25 + 1.0, 1e-9);
  EXPECT_NEAR(s.rmia[1], 0.0, 1e-9);
  EXPECT_NEAR(s.rmia[2], -0.5 - std::log((std::exp(-0.5) + std::exp(-2.0)) / 2), 1e-9);
  // K = 1: lira ranks as calibrated on log errors; a NaN input gives NaN for that image only
  auto one = mia::calibrated_scores({0.01, 0.03, NAN, 0.02}, {{0.02, 0.03, 0.05, 0.08}});
  EXPECT_TRUE(std::isnan(one.lira[2]) && std::isnan(one.calibrated[2]) && std::isnan(one.rmia[2]));
  EXPECT_GT(one.lira[3], one.lira[0]);  // log ratios 4 vs 2
  EXPECT_GT(one.lira[0], one.lira[1]);
  EXPECT_NEAR(one.calibrated[0], 0.01, 1e-12);
  // K >= 8: each image's own spread
  std::vector<std::vector<double>> many;
  for (int k = 0; k < 8; ++k) many.push_back({0.04 * std::exp(0.1 * (k - 3.5)), 0.04 * std::exp(0.5 * (k - 3.5))});
  auto per = mia::calibrated_scores({0.02, 0.02}, many);
  EXPECT_GT(per.lira[0], per.lira[1]);  // same mean, image 0's references spread 5x less
  EXPECT_NEAR(per.lira[0] / per.lira[1], 5.0, 1e-9);
}

// The dataset-level test on cases with known answers.
TEST(SetTest, KnownAnswers) {
  // complete separation, 20 vs 20: U = 400, var = 20*20*41/12, z = (400 - 200 - 0.5) / sqrt(var)
  std::vector<double> own, ref;
  for (int i = 0; i < 20; ++i) own.push_back(100 + i), ref.push_back(i);
  auto t = mia::set_test(own, ref);
  ASSERT_TRUE(t.ran);
  EXPECT_DOUBLE_EQ(t.auc, 1.0);
  const double z = 199.5 / std::sqrt(20.0 * 20 * 41 / 12);
  EXPECT_NEAR(t.z, z, 1e-12);
  EXPECT_NEAR(t.pvalue, 0.5 * std::erfc(z / std::sqrt(2.0)), 1e-15);
  EXPECT_LT(t.pvalue, 1e-6);
  // reversed: p near 1 (one-sided)
  EXPECT_GT(mia::set_test(ref, own).pvalue, 0.999);
  // too few owner images: not run, said
  auto few = mia::set_test(std::vector<double>(own.begin(), own.begin() + 19), ref);
  EXPECT_FALSE(few.ran);
  EXPECT_NE(few.reason.find("n/a"), std::string::npos);
  // under H0 (same distribution) the false-alarm rate at alpha = 0.01 stays near 1%
  std::mt19937_64 rng(11);
  std::normal_distribution<double> nd;
  int alarms = 0;
  const int trials = 2000;
  for (int k = 0; k < trials; ++k) {
    std::vector<double> a(20), b(200);
    for (auto& v : a) v = nd(rng);
    for (auto& v : b) v = nd(rng);
    alarms += mia::set_test(a, b).pvalue < 0.01;
  }
  EXPECT_LE(alarms, int(0.02 * trials)) << alarms;  // ~1% expected; binomial sd ~0.2%
  EXPECT_DOUBLE_EQ(mia::combine_pvalues({0.004, 0.2, NAN}), 0.008);
  EXPECT_TRUE(std::isnan(mia::combine_pvalues({NAN})));
}
