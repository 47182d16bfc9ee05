#!/usr/bin/env python3
"""Makes TorchScript models the way a PyTorch user would, to check that rewind loads them.

usage: /usr/bin/python3 data-tools/make_client_models.py OUT_DIR

Writes (all with torch.jit.script(model).save(path), Debian's python3-torch):
  generator.pt        DCGAN-style generator, latent_dim 16, 3x32x32, tanh output
  generator_wplus.pt  the same with mapping(z) -> w and synthesis(w) -> x (style-based contract)
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
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for name, model in [("generator", Generator()), ("generator_wplus", StyleGenerator()),
                        ("classifier", Classifier()), ("classifier_ht", HeadTail()), ("embedder", Embedder())]:
        model.eval()
        torch.jit.script(model).save(os.path.join(out, name + ".pt"))
    print("wrote 5 TorchScript models to", out)


if __name__ == "__main__":
    main()
