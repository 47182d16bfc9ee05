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

/// Perceptual distance per item between two feature maps [N, C, ...] of one network layer (LPIPS's
/// form with uniform weights, Zhang et al. 2018): each position's C-vector scaled to unit length,
/// squared difference summed over channels, averaged over positions. 0 = identical; at most 4.
at::Tensor feature_distance(const at::Tensor& a, const at::Tensor& b);
/// Mean of the MSEs at `scales` resolutions (full, 1/2, 1/4, ... by 2x2 average pooling): a
/// large image's coarse structure weighs as much as its fine detail.
at::Tensor multiscale_mse(const at::Tensor& x, const at::Tensor& y, int64_t scales);

}  // namespace rw::optim
