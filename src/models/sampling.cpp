#include "rewind/models/sampling.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "rewind/core/runtime.h"

namespace rw::models {

at::Tensor sample_latents_at(const std::vector<int64_t>& ids, int64_t d, uint64_t seed) {
  auto z = torch::empty({int64_t(ids.size()), d});
  for (size_t k = 0; k < ids.size(); ++k) {
    auto gen = at::detail::createCPUGenerator(mix_seed(seed, uint64_t(ids[k]), 0x5A3Dull));
    z[int64_t(k)].copy_(torch::randn({d}, gen));
  }
  return z;
}

at::Tensor sample_latents(int64_t n, int64_t d, uint64_t seed) {
  std::vector<int64_t> ids(size_t(std::max<int64_t>(0, n)));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = i;
  return sample_latents_at(ids, d, seed);
}

}  // namespace rw::models
