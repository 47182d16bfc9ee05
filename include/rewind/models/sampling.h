// Latents of generated samples. Sample i of seed s is N(0, I) drawn from a seed of (s, i), so the
// same seed gives the same samples whatever the count or the batch size (`rewind generate`, the
// audit's sample bank and the report's regenerated pictures all use it).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace rw::models {

/// Latents [n, d] of samples 0..n-1.
at::Tensor sample_latents(int64_t n, int64_t d, uint64_t seed);
/// Latents [k, d] of the samples `ids` (the same rows sample_latents would give).
at::Tensor sample_latents_at(const std::vector<int64_t>& ids, int64_t d, uint64_t seed);

}  // namespace rw::models
