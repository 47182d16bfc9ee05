// Per-item image losses and metrics. Images [N, C, H, W] in [-1, 1]; every function returns [N]
// (one value per item) so batched multi-restart problems stay independent.
#pragma once

#include <ATen/core/Tensor.h>

namespace rw::optim {

/// Mean squared error per item.
at::Tensor mse(const at::Tensor& x, const at::Tensor& y);
/// Mean absolute error per item.
at::Tensor l1(const at::Tensor& x, const at::Tensor& y);
/// SSIM per item (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, on [0,1]-scaled images,
/// channel mean). 1 = identical. Differentiable.
at::Tensor ssim(const at::Tensor& x, const at::Tensor& y);
/// PSNR in dB per item on the [0, 1] scale (peak 1). Identical images give +inf.
at::Tensor psnr(const at::Tensor& x, const at::Tensor& y);
/// Anisotropic total variation per item (mean absolute neighbour difference).
at::Tensor total_variation(const at::Tensor& x);

}  // namespace rw::optim
