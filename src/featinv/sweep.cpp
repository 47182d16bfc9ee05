#include "rewind/featinv/sweep.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "rewind/core/error.h"
#include "rewind/identity/calibration.h"
#include "rewind/mia/metrics.h"

namespace rw::featinv {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::vector<double> to_vector(const at::Tensor& t) {
  auto d = t.detach().flatten().to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

double mean_of(const at::Tensor& t) { return t.numel() ? t.to(torch::kDouble).mean().item<double>() : kNaN; }

/// Checks the options against the inputs; returns the split points to sweep.
std::vector<std::string> check_options(models::SplitClassifier& c, const SweepInputs& in, const SweepOptions& o) {
  const auto& known = sweep_attacks();
  RW_CHECK(!o.attacks.empty(), Usage, "SweepOptions::attacks is empty (white-box, inverse-net, gan-prior)");
  for (const auto& a : o.attacks)
    RW_CHECK(has(known, a), Usage, "SweepOptions::attacks: unknown attack '", a, "' (white-box, inverse-net, gan-prior)");
  RW_CHECK(in.targets.defined() && in.targets.dim() == 4 && in.targets.size(0) > 0, Usage,
           "SweepInputs::targets must be a non-empty [N,C,H,W] batch of images");
  RW_CHECK(!has(o.attacks, "inverse-net") || (in.aux.defined() && in.aux.size(0) > 0), Usage,
           "SweepOptions::attacks has inverse-net but SweepInputs::aux is empty: the attacker's own images are needed");
  RW_CHECK(!has(o.attacks, "gan-prior") || in.generator, Usage,
           "SweepOptions::attacks has gan-prior but SweepInputs::generator is null");
  RW_CHECK(o.match_threshold >= 0 && o.match_threshold < 1, Usage, "SweepOptions::match_threshold must be in [0, 1), got ",
           o.match_threshold);
  RW_CHECK(o.match_far > 0 && o.match_far < 1, Usage, "SweepOptions::match_far must be in (0, 1), got ", o.match_far);
  RW_CHECK(o.keep_recon >= 0, Usage, "SweepOptions::keep_recon must be >= 0, got ", o.keep_recon);
  RW_CHECK(!in.eval_labels.defined() ||
               in.eval_labels.size(0) == (in.eval_images.defined() ? in.eval_images : in.targets).size(0),
           Usage, "SweepInputs::eval_labels must hold one label per evaluation image");
  auto splits = o.splits.empty() ? c.split_points() : o.splits;
  for (const auto& s : splits) models::check_split(c, s);
  return splits;
}

/// The identity-match threshold: given, or calibrated on the impostor pairs of the originals.
MatchThreshold match_threshold(const at::Tensor& emb_orig, const SweepInputs& in, const SweepOptions& o) {
  MatchThreshold m;
  m.threshold = o.match_threshold;
  if (o.match_threshold > 0) return m;
  const int64_t n = emb_orig.size(0);
  RW_CHECK(in.target_identities.defined() && in.target_identities.numel() == n, Usage,
           "SweepInputs::target_identities must hold one identity per target to calibrate the match threshold "
           "(or set SweepOptions::match_threshold)");
  RW_CHECK(std::get<0>(at::_unique(in.target_identities)).numel() >= 2, Usage,
           "SweepInputs::target_identities: the targets hold one identity, so no match threshold can be calibrated; "
           "set SweepOptions::match_threshold");
  auto cal = identity::calibrate(emb_orig, in.target_identities, {o.match_far});
  m.calibrated = true;
  m.far = o.match_far;
  m.threshold = cal.points.at(0).threshold;
  m.far_actual = cal.points.at(0).far_actual;
  m.impostor_pairs = cal.impostor_pairs;
  m.far_resolved = double(cal.impostor_pairs) * o.match_far >= 1;
  if (!m.far_resolved) {
    std::ostringstream os;
    os << "only " << cal.impostor_pairs << " impostor pairs for FAR " << o.match_far << " (at least "
       << int64_t(std::ceil(1 / o.match_far)) << " needed): the threshold is the maximum impostor score";
    m.reason = os.str();
  }
  return m;
}

void summarise(SweepCell& cell, const SweepResult& r) {
  cell.psnr_mean = mean_of(cell.psnr);
  cell.ssim_mean = mean_of(cell.ssim);
  cell.psnr_median = mia::median(to_vector(cell.psnr));
  cell.ssim_median = mia::median(to_vector(cell.ssim));
  cell.feature_loss_median = mia::median(to_vector(cell.feature_loss));
  cell.id_cos_mean = cell.id_match_rate = kNaN;
  if (cell.id_cos.defined()) {
    cell.id_cos_mean = mean_of(cell.id_cos);
    cell.id_match = cell.id_cos.gt(r.match.threshold);
    cell.id_match_rate = mean_of(cell.id_match);
  }
}

}  // namespace

const std::vector<std::string>& sweep_attacks() {
  static const std::vector<std::string> kAttacks = {"white-box", "inverse-net", "gan-prior"};
  return kAttacks;
}

SweepResult run_sweep(models::SplitClassifier& c, const SweepInputs& in, const SweepOptions& opts,
                      const ProgressFn& progress, const SweepCellFn& on_cell) {
  SweepResult res;
  res.splits = check_options(c, in, opts);
  SweepOptions o = opts;
  o.white_box.seed = o.inverse_net.seed = o.gan_prior.seed = o.gan_prior.refine.seed = o.seed;
  if (o.defenses.empty()) o.defenses.push_back({});
  const auto& x = in.targets;
  res.targets = x.size(0);
  at::Tensor emb_orig;
  if (in.embedder) {
    torch::NoGradGuard ng;
    emb_orig = in.embedder->embed(x);
    res.identity = true;
    res.match = match_threshold(emb_orig, in, o);
  }
  const auto all_splits = c.split_points();
  const at::Tensor& eval_x = in.eval_images.defined() ? in.eval_images : x;
  for (const auto& s : res.splits) {
    const int64_t depth = std::find(all_splits.begin(), all_splits.end(), s) - all_splits.begin();
    auto clean = activations(c, s, x);
    for (const auto& d : o.defenses) {
      auto acts = defend(clean, d, o.seed);
      const double acc =
          in.eval_labels.defined() ? accuracy_through_split(c, s, eval_x, in.eval_labels, d, o.seed) : kNaN;
      for (const auto& a : o.attacks) {
        AttackResult r;
        if (a == "white-box") r = white_box(c, s, acts, o.white_box, progress);
        else if (a == "inverse-net") r = inverse_network(c, s, acts, in.aux, d, o.inverse_net, progress);
        else r = gan_prior(*in.generator, c, s, acts, o.gan_prior, progress);
        auto q = quality(x, r.recon);
        SweepCell cell;
        cell.split = s;
        cell.depth = depth;
        cell.defense = d;
        cell.attack = a;
        cell.accuracy = acc;
        cell.seconds = r.seconds;
        cell.psnr = q.psnr;
        cell.ssim = q.ssim;
        cell.feature_loss = r.feature_loss;
        if (in.embedder) {
          torch::NoGradGuard ng;
          cell.id_cos = (emb_orig * in.embedder->embed(r.recon)).sum(1);
        }
        summarise(cell, res);
        cell.recon = r.recon;
        if (on_cell) on_cell(cell);
        // keep only the rows a picture needs (clone: a slice would hold the whole batch's storage)
        cell.recon = o.keep_recon > 0 ? r.recon.slice(0, 0, std::min(o.keep_recon, res.targets)).clone() : at::Tensor();
        res.cells.push_back(std::move(cell));
      }
    }
  }
  return res;
}

}  // namespace rw::featinv
