#!/usr/bin/env python3
"""White-box split inversion on a ResNet-18 class classifier at 224 px: the plain-PyTorch reference of
rewind's featinv::white_box (Adam on the pixels, cosine schedule, relative feature error + 1e-4 TV + 1e-5 L2,
best loss per item kept), eager fp32 or as a tuned user writes it (--tuned: bf16 autocast + channels_last,
and on CUDA one whole step captured in a CUDA graph).

The network is torchvision's ResNet-18 layout written out here (no torchvision needed): conv1, bn1, relu,
maxpool, layer1..layer4 (two BasicBlocks each), avgpool, fc. --make-model saves it as TorchScript, seeded
random weights and BatchNorm statistics (speed does not depend on training), for rewind's loader, whose split
names enter the Sequential layers: after the max-pool is "maxpool", after layer2 is "layer2.1".

usage: split_reference_resnet.py --make-model R.pt [--seed 0]
       split_reference_resnet.py --make-targets N --targets T.npy [--seed 1]
       split_reference_resnet.py --classifier R.pt --targets T.npy --split maxpool|layer2 [--steps 100]
                                 [--device cpu|cuda] [--tuned]
Prints one JSON line like bench_split.
"""
import argparse
import json
import time

import numpy as np
import torch
from torch import nn

import tuned_loop


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.input_size: int = 224  # rewind's probe: the input is 3 x 224 x 224
        self.channels: int = 3
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    @torch.jit.ignore
    def head(self, x, split):
        for name in ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]:
            x = getattr(self, name)(x)
            if name == split:
                return x
        raise KeyError(split)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_model(path, seed):
    torch.manual_seed(seed)
    net = ResNet18()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics of a trained net's kind, not the identity
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    torch.jit.script(net).save(path)


def load(path, device):
    """The eager ResNet18 with the TorchScript file's weights."""
    net = ResNet18()
    net.load_state_dict(torch.jit.load(path, map_location="cpu").state_dict())
    net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def tv(x):
    dh = (x[:, :, 1:] - x[:, :, :-1]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def invert(net, split, acts, steps, tuned, lr=0.05, w_tv=1e-4, w_l2=1e-5):
    dev = acts.device
    cuda = dev.type == "cuda"
    n = acts.size(0)
    fmt = torch.channels_last if tuned else torch.contiguous_format
    if tuned:
        net = net.to(memory_format=torch.channels_last)
    x = torch.zeros(n, 3, 224, 224, device=dev).contiguous(memory_format=fmt).requires_grad_(True)
    denom = acts.float().pow(2).flatten(1).mean(1).clamp_min(1e-12)
    graphable = tuned and cuda
    opt, lr_t = tuned_loop.adam(x, lr, graphable)
    best = torch.full((n,), float("inf"), device=dev)
    best_x = x.detach().clone()

    def objective():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=tuned):
            a = net.head(x, split)
        return (a.float() - acts).pow(2).flatten(1).mean(1) / denom + w_tv * tv(x) + w_l2 * x.pow(2).flatten(1).mean(1)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = objective()
        loss.sum().backward()
        with torch.no_grad():
            better = loss < best
            best.copy_(torch.where(better, loss, best))
            best_x.copy_(torch.where(better[:, None, None, None], x, best_x))
        opt.step()

    tuned_loop.run(step, opt, lr_t, lr, steps, graphable)
    return best_x.clamp(-1, 1)


def psnr(a, b):
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1)
    return (-10 * torch.log10(mse)).clamp(max=100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--make-model")
    ap.add_argument("--make-targets", type=int, default=0)
    ap.add_argument("--classifier")
    ap.add_argument("--targets")
    ap.add_argument("--split", default="maxpool")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tuned", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.make_model:
        make_model(a.make_model, a.seed)
        return
    if a.make_targets:  # smooth images in [-1, 1]: upsampled low-resolution noise
        g = torch.Generator().manual_seed(a.seed + 1)
        low = torch.rand(a.make_targets, 3, 14, 14, generator=g) * 2 - 1
        x = nn.functional.interpolate(low, size=(224, 224), mode="bilinear", align_corners=False)
        np.save(a.targets, x.numpy().astype(np.float32))
        return
    net = load(a.classifier, a.device)
    split = a.split.split(".")[0]  # rewind's "layer2.1" is the end of layer2
    x = torch.from_numpy(np.load(a.targets)).float().to(a.device)
    with torch.no_grad():
        acts = net.head(x, split).float().clone()
    invert(net, split, acts[:2], 5, a.tuned)  # warm-up
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.time()
    rec = invert(net, split, acts, a.steps, a.tuned)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    s = time.time() - t0
    print(json.dumps({"impl": "pytorch-tuned" if a.tuned else "pytorch", "device": a.device, "split": a.split,
                      "targets": x.size(0), "steps": a.steps, "seconds": round(s, 4),
                      "image_steps_per_s": round(x.size(0) * a.steps / s, 1),
                      "ms_per_step": round(1000 * s / a.steps, 4),
                      "median_psnr": float(psnr(x, rec).median()), "build": "torch " + torch.__version__}))


if __name__ == "__main__":
    main()
