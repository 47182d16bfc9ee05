#!/usr/bin/env python3
"""Makes TorchScript models the way a PyTorch user would, to check that rewind loads them.

usage: /usr/bin/python3 data-tools/make_client_models.py OUT_DIR

Writes (all with torch.jit.script(model).save(path), Debian's python3-torch):
  generator.pt        DCGAN-style generator, latent_dim 16, 3x32x32, tanh output
  generator_linear.pt DCGAN-style generator with a dense first layer: Linear + BatchNorm1d + ReLU, reshaped in
                      forward to 64 x 4 x 4, then the ConvTranspose2d stack of generator.pt
  generator_flipped.pt generator.pt's modules, but forward mirrors the image, and
  generator_clamped.pt generator.pt's modules, but forward clamps z to [-2, 2]: stacks rewind must not take
                      for the plain DCGAN they look like
  generator_wplus.pt  the same with mapping(z) -> w and synthesis(w) -> x (one w, no num_ws)
  stylegan.pt         StyleGAN-like (Karras et al. 2020, scaled down): mapping MLP z 32 -> w 32, synthesis
                      from a learned constant 4x4 through modulated / demodulated 3x3 convs with
                      per-layer styles (num_ws 8), constant noise buffers, 3x32x32 tanh; w_avg buffer
  classifier.pt       nn.Module with `features` (Sequential) and `classifier` children, 1x28x28 -> 10
  classifier_ht.pt    the same split explicitly with head(x) / tail(a) methods
  embedder.pt         3x64x64 -> 32-d embedding, attributes input_size/channels
Weights are random but seeded, so files are reproducible for one torch version.
"""
import os
import sys

import torch
from torch import nn


class Generator(nn.Module):
    def __init__(self, latent_dim: int = 16):
        super().__init__()
        self.latent_dim: int = latent_dim
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 64, 4, 1, 0, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),
            nn.ConvTranspose2d(16, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.size(0), z.size(1), 1, 1))


class LinearGenerator(nn.Module):
    def __init__(self, latent_dim: int = 16):
        super().__init__()
        self.latent_dim: int = latent_dim
        self.fc = nn.Linear(latent_dim, 64 * 4 * 4)
        self.bn = nn.BatchNorm1d(64 * 4 * 4)
        self.act = nn.ReLU(True)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),
            nn.ConvTranspose2d(16, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.act(self.bn(self.fc(z))).view(z.size(0), 64, 4, 4))


class FlippedGenerator(Generator):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.size(0), z.size(1), 1, 1)).flip(3)


class ClampedGenerator(Generator):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.clamp(-2.0, 2.0)
        return self.net(z.view(z.size(0), z.size(1), 1, 1))


class StyleGenerator(nn.Module):
    def __init__(self, latent_dim: int = 16):
        super().__init__()
        self.latent_dim: int = latent_dim
        self.map = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.LeakyReLU(0.2), nn.Linear(latent_dim, latent_dim))
        self.synth = Generator(latent_dim)

    @torch.jit.export
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.map(z)

    @torch.jit.export
    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        return self.synth(w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z))


class ModConv(nn.Module):
    """Modulated 3x3 convolution with weight demodulation (StyleGAN2), a style per sample."""

    def __init__(self, cin: int, cout: int, w_dim: int, res: int, up: bool):
        super().__init__()
        self.up = up
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.affine = nn.Linear(w_dim, cin)
        nn.init.normal_(self.affine.weight, std=w_dim ** -0.5)
        nn.init.ones_(self.affine.bias)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.noise_strength = nn.Parameter(torch.tensor(0.1))
        self.register_buffer("noise", torch.randn(1, 1, res, res))  # noise_mode 'const'

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n = x.size(0)
        if self.up:
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        s = self.affine(w)  # [N, cin]
        wt = self.weight.unsqueeze(0) * s.view(n, 1, -1, 1, 1)  # [N, cout, cin, 3, 3]
        wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
        h, wd = x.size(2), x.size(3)
        y = nn.functional.conv2d(x.reshape(1, -1, h, wd), wt.reshape(-1, wt.size(2), 3, 3), padding=1, groups=n)
        y = y.view(n, -1, h, wd) + self.noise * self.noise_strength + self.bias.view(1, -1, 1, 1)
        return nn.functional.leaky_relu(y, 0.2) * 1.4142135


class StyleGAN(nn.Module):
    """The style-based generator contract: mapping(z) -> w [N, w_dim], synthesis(ws [N, num_ws, w_dim])."""

    def __init__(self, z_dim: int = 32, w_dim: int = 32, ch: int = 16):
        super().__init__()
        self.latent_dim: int = z_dim
        self.num_ws: int = 8
        layers = []
        for i in range(4):
            fc = nn.Linear(z_dim if i == 0 else w_dim, w_dim)
            nn.init.normal_(fc.weight, std=(2.0 / fc.in_features) ** 0.5)  # He init: w keeps z's scale
            nn.init.zeros_(fc.bias)
            layers += [fc, nn.LeakyReLU(0.2)]
        self.map = nn.Sequential(*layers)
        self.const = nn.Parameter(torch.randn(1, ch, 4, 4))
        specs = [(4, False), (8, True), (8, False), (16, True), (16, False), (32, True), (32, False)]
        self.convs = nn.ModuleList([ModConv(ch, ch, w_dim, res, up) for res, up in specs])
        self.to_rgb = nn.Linear(w_dim, ch)  # style of the last (1x1) RGB layer
        nn.init.normal_(self.to_rgb.weight, std=w_dim ** -0.5)
        nn.init.ones_(self.to_rgb.bias)
        self.rgb = nn.Conv2d(ch, 3, 1)
        nn.init.normal_(self.rgb.weight, std=ch ** -0.5)
        with torch.no_grad():
            self.register_buffer("w_avg", self.mapping(torch.randn(10000, z_dim)).mean(0))

    @torch.jit.export
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        return self.map(z)

    @torch.jit.export
    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.const.expand(ws.size(0), -1, -1, -1)
        i = 0
        for conv in self.convs:
            x = conv(x, ws[:, i])
            i += 1
        x = x * self.to_rgb(ws[:, 7]).unsqueeze(2).unsqueeze(3)
        return torch.tanh(self.rgb(x))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z)
        return self.synthesis(w.unsqueeze(1).expand(-1, self.num_ws, -1))


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class HeadTail(Classifier):
    @torch.jit.export
    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    @torch.jit.export
    def tail(self, a: torch.Tensor) -> torch.Tensor:
        return self.classifier(a)


class Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_size: int = 64
        self.channels: int = 3
        self.net = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    models = [("generator", Generator()), ("generator_wplus", StyleGenerator()), ("stylegan", StyleGAN()),
              ("classifier", Classifier()), ("classifier_ht", HeadTail()), ("embedder", Embedder()),
              ("generator_linear", LinearGenerator()), ("generator_flipped", FlippedGenerator()),
              ("generator_clamped", ClampedGenerator())]  # new ones last: the others' weights stay as they were
    for name, model in models:
        with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
            for mod in model.modules():
                if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    mod.running_mean.normal_(0, 0.3)
                    mod.running_var.uniform_(0.5, 2.0)
                    mod.weight.normal_(1, 0.2)
                    mod.bias.normal_(0, 0.2)
        model.eval()
        torch.jit.script(model).save(os.path.join(out, name + ".pt"))
    print("wrote", len(models), "TorchScript models to", out)


if __name__ == "__main__":
    main()
