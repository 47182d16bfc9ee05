#include "rewind/optim/losses.h"

#include <torch/torch.h>

#include "rewind/core/error.h"

namespace rw::optim {

namespace {
void check_pair(const at::Tensor& x, const at::Tensor& y) {
  RW_CHECK(x.dim() == 4 && x.sizes() == y.sizes(), Internal, "loss inputs must be equal [N,C,H,W], got ", x.sizes(),
           " and ", y.sizes());
}

at::Tensor gaussian_window(int64_t c, int64_t size, double sigma, const at::TensorOptions& opt) {
  auto g = torch::arange(size, opt).sub((size - 1) / 2.0).pow(2).div(-2 * sigma * sigma).exp();
  g = g / g.sum();
  return torch::outer(g, g).expand({c, 1, size, size}).contiguous();
}
}  // namespace

at::Tensor mse(const at::Tensor& x, const at::Tensor& y) {
  check_pair(x, y);
  return (x - y).pow(2).flatten(1).mean(1);
}

at::Tensor l1(const at::Tensor& x, const at::Tensor& y) {
  check_pair(x, y);
  return (x - y).abs().flatten(1).mean(1);
}

at::Tensor ssim(const at::Tensor& x_in, const at::Tensor& y_in) {
  check_pair(x_in, y_in);
  const int64_t c = x_in.size(1);
  int64_t win = std::min<int64_t>(11, std::min(x_in.size(2), x_in.size(3)));
  if (win % 2 == 0) --win;
  auto w = gaussian_window(c, win, 1.5, x_in.options());
  auto x = (x_in + 1) * 0.5, y = (y_in + 1) * 0.5;  // [0,1]
  auto blur = [&](const at::Tensor& t) { return torch::conv2d(t, w, at::Tensor(), at::IntArrayRef{1, 1}, at::IntArrayRef{0, 0}, at::IntArrayRef{1, 1}, c); };
  at::Tensor mx = blur(x), my = blur(y);
  at::Tensor sxx = blur(x * x) - mx * mx, syy = blur(y * y) - my * my, sxy = blur(x * y) - mx * my;
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  auto map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
  return map.flatten(1).mean(1);
}

at::Tensor psnr(const at::Tensor& x, const at::Tensor& y) {
  auto m = mse(x, y) / 4.0;  // [-1,1] -> [0,1] scale: differences halve, squared quarter
  return -10.0 * torch::log10(m);
}

at::Tensor total_variation(const at::Tensor& x) {
  RW_CHECK(x.dim() == 4, Internal, "total_variation expects [N,C,H,W]");
  auto dh = (x.slice(2, 1) - x.slice(2, 0, -1)).abs().flatten(1).mean(1);
  auto dw = (x.slice(3, 1) - x.slice(3, 0, -1)).abs().flatten(1).mean(1);
  return dh + dw;
}

}  // namespace rw::optim

namespace rw::optim {

at::Tensor feature_distance(const at::Tensor& a, const at::Tensor& b) {
  RW_CHECK(a.dim() >= 2 && a.sizes() == b.sizes(), Internal, "feature_distance: features must be equal [N, C, ...], got ",
           a.sizes(), " and ", b.sizes());
  auto unit = [](const at::Tensor& f) { return f / (f.pow(2).sum(1, true).sqrt() + 1e-10); };
  auto d = (unit(a) - unit(b)).pow(2).sum(1);  // [N, ...] squared distance of unit channel vectors
  return d.dim() == 1 ? d : d.flatten(1).mean(1);
}

at::Tensor multiscale_mse(const at::Tensor& x, const at::Tensor& y, int64_t scales) {
  check_pair(x, y);
  at::Tensor a = x, b = y, sum = mse(x, y);
  for (int64_t s = 1; s < scales && a.size(2) >= 2 && a.size(3) >= 2; ++s) {
    a = torch::avg_pool2d(a, 2);
    b = torch::avg_pool2d(b, 2);
    sum = sum + mse(a, b);
  }
  return sum / double(scales);
}

}  // namespace rw::optim
