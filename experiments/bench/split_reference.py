#!/usr/bin/env python3
"""Plain-PyTorch reference of rewind's white-box feature inversion, for the side-by-side benchmark.

The same algorithm as `rewind split-attack --attack white-box` with its defaults: all targets in one
batch (grey start, one restart), Adam on the pixels with a cosine learning-rate schedule, per-item
objective = relative feature error |head(x) - a|^2 / |a|^2 + 1e-4 TV + 1e-5 L2 (+ with --w-bn DeepInversion's
BatchNorm prior, first layer x10: per-item channel mean/var of every BatchNorm input up to the
split vs the running statistics, 2-norms), the best loss per item tracked every step. The classifier
is rewind's own native file (a LibTorch archive that torch.jit.load reads); the cnn28 architecture
below mirrors make_cnn in src/models/nets.cpp and loads its weights.

usage: split_reference.py --classifier C.pt --targets T.npy --split relu2 [--steps 100] [--threads 0]
       split_reference.py --classifier C.pt --targets T.npy --make-targets N --from MANIFEST_NPY
Prints one JSON line like bench_split.
"""
import argparse
import json
import math
import time
from collections import OrderedDict

import numpy as np
import torch
from torch import nn


def make_cnn(arch):
    w, c, res = arch["width"], arch["channels"], arch["resolution"]
    assert arch["name"] == "cnn28", "the reference mirrors cnn28 only"
    blocks = [(w, False), (w, True), (2 * w, False), (2 * w, True)]
    layers, cin, side, pool = [], c, res, 0
    for i, (cout, p) in enumerate(blocks, 1):
        layers += [("conv%d" % i, nn.Conv2d(cin, cout, 3, padding=1, bias=False)), ("bn%d" % i, nn.BatchNorm2d(cout)),
                   ("relu%d" % i, nn.ReLU(True))]
        cin = cout
        if p:
            pool += 1
            layers.append(("pool%d" % pool, nn.MaxPool2d(2)))
            side //= 2
    layers += [("flatten", nn.Flatten()), ("fc1", nn.Linear(cin * side * side, 256)), ("relu_fc", nn.ReLU(True)),
               ("fc2", nn.Linear(256, arch["outputs"]))]
    return nn.Sequential(OrderedDict(layers))


def load_native(path):
    archive = torch.jit.load(path, map_location="cpu")
    arch = json.loads(archive.rewind_arch)
    net = make_cnn(arch)
    state = {k: v for k, v in archive.named_parameters()}
    state.update({k: v for k, v in archive.named_buffers()})
    net.load_state_dict(state)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def head(net, x, split, bn_inputs):
    for name, m in net.named_children():
        if isinstance(m, nn.BatchNorm2d):
            bn_inputs.append((m, x))
        x = m(x)
        if name == split:
            return x
    raise KeyError(split)


def tv(x):
    dh = (x[:, :, 1:] - x[:, :, :-1]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def invert(net, split, acts, steps, lr=0.05, w_tv=1e-4, w_l2=1e-5, w_bn=0.0, first_bn=10.0):
    n = acts.size(0)
    x = torch.zeros(n, 1, 28, 28, requires_grad=True)
    denom = acts.pow(2).flatten(1).mean(1).clamp_min(1e-12)
    opt = torch.optim.Adam([x], lr=lr)
    best = torch.full((n,), float("inf"))
    best_x = x.detach().clone()

    def objective():
        bns = []
        a = head(net, x, split, bns if w_bn > 0 else [])
        loss = (a - acts).pow(2).flatten(1).mean(1) / denom + w_tv * tv(x) + w_l2 * x.pow(2).flatten(1).mean(1)
        for k, (m, f) in enumerate(bns):
            mean = f.mean((2, 3))
            var = (f - mean[:, :, None, None]).pow(2).mean((2, 3))
            term = (mean - m.running_mean).norm(2, 1) + (var - m.running_var).norm(2, 1)
            loss = loss + w_bn * (first_bn if k == 0 else 1.0) * term
        return loss

    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
        opt.zero_grad()
        loss = objective()
        loss.sum().backward()
        with torch.no_grad():
            better = loss < best
            best = torch.where(better, loss, best)
            best_x = torch.where(better[:, None, None, None], x, best_x)
        opt.step()
    with torch.no_grad():
        loss = objective()
        better = loss < best
        best_x = torch.where(better[:, None, None, None], x, best_x)
    return best_x.clamp(-1, 1)


def psnr(a, b):
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1)
    return (-10 * torch.log10(mse)).clamp(max=100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--split", default="relu2")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--w-bn", type=float, default=0.0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    net = load_native(a.classifier)
    x = torch.from_numpy(np.load(a.targets)).float()
    with torch.no_grad():
        acts = head(net, x, a.split, []).clone()
    invert(net, a.split, acts[:2], 2, w_bn=a.w_bn)  # warm-up
    t0 = time.time()
    rec = invert(net, a.split, acts, a.steps, w_bn=a.w_bn)
    s = time.time() - t0
    print(json.dumps({"impl": "pytorch", "split": a.split, "targets": x.size(0), "steps": a.steps,
                      "threads": torch.get_num_threads(), "seconds": round(s, 4),
                      "image_steps_per_s": round(x.size(0) * a.steps / s, 1),
                      "median_psnr": float(psnr(x, rec).median()), "build": "torch " + torch.__version__}))


if __name__ == "__main__":
    main()
