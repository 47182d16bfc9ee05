// Verification thresholds from genuine / impostor similarity distributions (torch-only part of the
// identity module; the FAISS index lives beside it).
//
// Embeddings are L2-normalised [N, d]; similarity = cosine = dot product. A pair is "genuine"
// when both images share an identity, "impostor" otherwise. The threshold for a false-accept rate
// FAR is the smallest similarity t such that at most FAR of impostor pairs score > t.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace rw::identity {

struct Operating {
  double far = 0;          ///< requested false-accept rate
  double threshold = 0;    ///< similarity above which a pair is called "same person"
  double tar = -1;         ///< true-accept rate at that threshold (-1 when there are no genuine pairs)
  double far_actual = 0;   ///< measured FAR at the threshold
};

struct Calibration {
  int64_t genuine_pairs = 0;
  int64_t impostor_pairs = 0;
  std::vector<Operating> points;  ///< one per requested FAR
};

/// Calibrates on all pairs of `embeddings` [N, d] with integer `labels` [N] (identity ids).
/// When N is large, at most `max_pairs` impostor pairs are sampled (seeded) instead of all.
Calibration calibrate(const at::Tensor& embeddings, const at::Tensor& labels, const std::vector<double>& fars,
                      int64_t max_pairs = 20'000'000, uint64_t seed = 1);

/// The threshold for `far` from impostor scores alone (sorted or not).
double threshold_for_far(const at::Tensor& impostor_scores, double far);

}  // namespace rw::identity
