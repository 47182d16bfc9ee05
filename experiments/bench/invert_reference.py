#!/usr/bin/env python3
"""Plain-PyTorch reference of rewind's latent recovery, for the side-by-side benchmark.

The same algorithm as `rewind invert` with its defaults: all targets x restarts in one batch, Adam on
z with a cosine learning-rate schedule, per-item MSE, the best loss per item tracked every step, the
best restart per target kept. The generator is rewind's own native file (a LibTorch archive that
torch.jit.load reads): the architecture below mirrors src/models/nets.cpp and loads its weights.

usage: invert_reference.py --generator G.pt --targets T.npy [--restarts 4] [--steps 200] [--lr 0.05]
                           [--device cpu|cuda] [--threads 0] [--make-targets N --seed S] [--tuned]
Prints one JSON line like bench_invert.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

import tuned_loop


class Generator(nn.Module):
    """rewind's DcganGenerator: linear+BN1d+ReLU, then (nearest x2, conv3x3, BN, ReLU) per doubling, tanh."""

    def __init__(self, arch):
        super().__init__()
        w, c, name = arch["width"], arch["channels"], arch["name"]
        chans = {"dcgan28": [w * 4, w * 2], "dcgan32": [w * 4, w * 2, w], "dcgan64": [w * 8, w * 4, w * 2, w]}[name]
        self.base = 7 if name == "dcgan28" else 4
        self.c0 = chans[0]
        self.fc = nn.Linear(arch["latent_dim"], chans[0] * self.base * self.base, bias=False)
        self.bn0 = nn.BatchNorm1d(chans[0] * self.base * self.base)
        layers = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1, bias=False),
                       nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(chans[-1], c, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        h = torch.relu(self.bn0(self.fc(z)))
        return self.net(h.view(z.size(0), self.c0, self.base, self.base))


def load_generator(path, device, scripted=False):
    """A rewind native generator as the eager module above; a user's TorchScript DCGAN-32 (no rewind_arch) as
    the eager experiments/torchscript_dcgan.py Generator its weights fit, or, with --scripted or when they do
    not fit, the TorchScript module itself. Returns (module, latent_dim)."""
    archive = torch.jit.load(path, map_location="cpu")
    if not hasattr(archive, "rewind_arch"):
        g = archive
        if not scripted:
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
            from torchscript_dcgan import Generator as TsGenerator
            state = archive.state_dict()
            width = state["net.0.weight"].shape[1] // 4 if "net.0.weight" in state else 0
            channels = state["net.9.weight"].shape[1] if "net.9.weight" in state else 0
            try:
                eager = TsGenerator(int(archive.latent_dim), width, channels)
                eager.load_state_dict(state)
                g = eager
            except (RuntimeError, ValueError):
                g = archive
        g.eval().to(device)
        for p in g.parameters():
            p.requires_grad_(False)
        return g, int(archive.latent_dim)
    arch = json.loads(archive.rewind_arch)
    g = Generator(arch)
    state = {k: v for k, v in archive.named_parameters()}
    state.update({k: v for k, v in archive.named_buffers()})
    g.load_state_dict(state)
    g.eval().to(device)
    for p in g.parameters():
        p.requires_grad_(False)
    return g, arch["latent_dim"]


def invert(g, d, targets, restarts, steps, lr):
    n = targets.size(0)
    tgt = targets.repeat_interleave(restarts, 0)
    z = torch.randn(n * restarts, d, device=targets.device, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    best = torch.full((n * restarts,), float("inf"), device=targets.device)
    best_z = z.detach().clone()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
        opt.zero_grad(set_to_none=False)
        loss = (g(z) - tgt).pow(2).flatten(1).mean(1)
        loss.sum().backward()
        with torch.no_grad():
            better = loss < best
            best = torch.where(better, loss, best)
            best_z = torch.where(better.unsqueeze(1), z, best_z)
        opt.step()
    with torch.no_grad():
        loss = (g(z) - tgt).pow(2).flatten(1).mean(1)
        better = loss < best
        best = torch.where(better, loss, best)
        best = best.view(n, restarts).min(1).values
    return best


def invert_tuned(g, d, targets, restarts, steps, lr):
    """The same search as a tuned PyTorch user writes it: the generator in channels_last under bf16 autocast
    (latents, Adam state and the loss in fp32), and on CUDA one whole step (forward, backward, best tracking,
    a capturable Adam with a tensor learning rate) captured in a CUDA graph and replayed."""
    dev = targets.device
    cuda = dev.type == "cuda"
    g = g.to(memory_format=torch.channels_last)
    n = targets.size(0)
    tgt = targets.repeat_interleave(restarts, 0).contiguous(memory_format=torch.channels_last)
    z = torch.randn(n * restarts, d, device=dev, requires_grad=True)
    opt, lr_t = tuned_loop.adam(z, lr, cuda)
    best = torch.full((n * restarts,), float("inf"), device=dev)
    best_z = z.detach().clone()

    def step():
        opt.zero_grad(set_to_none=False)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            out = g(z)
        loss = (out.float() - tgt).pow(2).flatten(1).mean(1)
        loss.sum().backward()
        with torch.no_grad():
            better = loss < best
            best.copy_(torch.where(better, loss, best))
            best_z.copy_(torch.where(better.unsqueeze(1), z, best_z))
        opt.step()

    tuned_loop.run(step, opt, lr_t, lr, steps, cuda)
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
        loss = (g(z).float() - tgt).pow(2).flatten(1).mean(1)
    best = torch.minimum(best, loss)
    return best.view(n, restarts).min(1).values


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", required=True)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--make-targets", type=int, default=0, help="write N generator samples to --targets and exit")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scripted", action="store_true", help="a user's TorchScript file: run the scripted module, not eager")
    ap.add_argument("--tuned", action="store_true",
                    help="a tuned PyTorch user's loop: bf16 autocast + channels_last, and on CUDA a CUDA graph")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g, latent_dim = load_generator(a.generator, a.device, a.scripted)
    if a.make_targets:
        with torch.no_grad():
            x = g(torch.randn(a.make_targets, latent_dim, device=a.device))
        np.save(a.targets, x.cpu().numpy().astype(np.float32))
        return
    targets = torch.from_numpy(np.load(a.targets)).to(a.device)
    run = invert_tuned if a.tuned else invert
    run(g, latent_dim, targets[: max(1, min(2, targets.size(0)))], a.restarts, 5, a.lr)  # warm-up
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.time()
    best = run(g, latent_dim, targets, a.restarts, a.steps, a.lr)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    s = time.time() - t0
    impl = "pytorch-scripted" if isinstance(g, torch.jit.ScriptModule) else "pytorch"
    if a.tuned:
        impl += "-tuned"
    print(json.dumps({"impl": impl, "device": a.device, "graph": bool(a.tuned and a.device.startswith("cuda")),
                      "precision": "bf16-autocast" if a.tuned else "fp32", "targets": targets.size(0),
                      "restarts": a.restarts, "steps": a.steps, "threads": torch.get_num_threads(),
                      "seconds": round(s, 4), "image_steps_per_s": round(targets.size(0) * a.restarts * a.steps / s, 1),
                      "ms_per_step": round(1000 * s / a.steps, 4), "median_mse": float(best.median()),
                      "build": "torch " + torch.__version__}))


if __name__ == "__main__":
    main()
