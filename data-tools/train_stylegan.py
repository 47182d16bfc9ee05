#!/usr/bin/env python3
"""Trains the StyleGAN-like client model of make_client_models.py as a GAN on a small image set, the way a
PyTorch user would, so that rewind can attack a style-based generator that has really memorised something.

usage: /usr/bin/python3 data-tools/train_stylegan.py --data MANIFEST --out FILE [--steps 3000] [--seed 1]
           [--batch 32] [--lr 2e-3] [--r1 1] [--disc-out FILE] [--threads 1]

MANIFEST is a rewind manifest.csv (header with a `path` column, paths relative to the manifest's folder) of
RGB or grey PNGs, resized to 32x32 if needed (nearest) and scaled to [-1, 1]. The generator is `StyleGAN`
from make_client_models.py (z 32 -> w 32, num_ws 8, 3x32x32 tanh), unchanged. Training: non-saturating
logistic loss, lazy R1 penalty on reals (every 16 steps), Adam betas (0, 0.99), mapping network at lr / 100
(StyleGAN's mapping lr multiplier), an exponential moving average of the generator's weights (half-life
10k images, StyleGAN's G_ema) which is what gets saved. At the end the w_avg buffer is recomputed (mean of
mapping over 10000 z) and the model is saved with torch.jit.script(model).save(out): attributes latent_dim
and num_ws, buffer w_avg, exported mapping(z) and synthesis(ws).

--disc-out also saves the discriminator as a TorchScript nn.Sequential (3x32x32 in [-1, 1] -> [N, 1]), whose
children run in order, so rewind can use it as a feature net: layer names are "0".."9" (see DISC_LAYERS).
Progress (losses, D outputs, nearest-training-image MSE of 256 samples) goes to stdout.
Needs only torch and numpy (PNG decoding is done here with zlib); CPU.
"""
import argparse
import csv
import copy
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_client_models import StyleGAN  # noqa: E402

DISC_LAYERS = ("discriminator children: 0 conv 3->16 @32x32, 1 lrelu, 2 conv 16->32 s2 @16, 3 lrelu, "
               "4 conv 32->64 s2 @8, 5 lrelu, 6 conv 64->128 s2 @4, 7 lrelu, 8 flatten, 9 linear 2048->1")


def read_png(path):
    """8-bit, non-interlaced grey / grey+alpha / RGB / RGBA PNG -> uint8 array [H, W, 3]."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, w = 8, [], 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace != 0 or ctype not in (0, 2, 4, 6):
                raise ValueError(f"{path}: only 8-bit non-interlaced grey/RGB(A) PNGs are supported")
            bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + w * bpp)
    out = np.zeros((h, w * bpp), np.int32)
    prev = np.zeros(w * bpp, np.int32)
    for y in range(h):
        ft, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if ft == 0:
            cur = line
        elif ft == 2:
            cur = (line + prev) & 255
        else:  # 1 sub, 3 average, 4 paeth: depend on the pixel to the left, so go byte by byte
            cur = np.zeros_like(line)
            for i in range(len(line)):
                a = cur[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                if ft == 1:
                    p = a
                elif ft == 3:
                    p = (a + b) >> 1
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (line[i] + p) & 255
        out[y] = cur
        prev = cur
    img = out.reshape(h, w, bpp).astype(np.uint8)
    if bpp in (1, 2):
        img = np.repeat(img[:, :, :1], 3, axis=2)
    return img[:, :, :3]


def load_manifest(manifest, size=32):
    root = os.path.dirname(os.path.abspath(manifest))
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0]:
        raise SystemExit(f"{manifest}: expected a CSV with a 'path' column")
    imgs = []
    for r in rows:
        a = read_png(os.path.join(root, r["path"]))
        if a.shape[0] != size or a.shape[1] != size:  # nearest resize
            yi = (np.arange(size) * a.shape[0] // size)
            xi = (np.arange(size) * a.shape[1] // size)
            a = a[yi][:, xi]
        imgs.append(a)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def discriminator():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 1, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(16, 32, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(128 * 4 * 4, 1))


@torch.no_grad()
def nearest_mse(g, data, n=256, seed=12345):
    """Per training image, the MSE of its nearest of n samples; and per sample, its nearest training image."""
    gen = torch.Generator().manual_seed(seed)
    x = g(torch.randn(n, g.latent_dim, generator=gen)).flatten(1)
    d = torch.cdist(data.flatten(1), x).pow(2) / x.size(1)  # [N_data, n]
    return d.min(1).values.median().item(), d.min(0).values.median().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="rewind manifest.csv of the training images")
    ap.add_argument("--out", required=True, help="TorchScript generator to write")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--r1", type=float, default=1.0, help="R1 gamma (0 = off), applied lazily every 16 steps")
    ap.add_argument("--disc-out", help="also save the discriminator (TorchScript nn.Sequential)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=250)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    data = load_manifest(a.data)
    n = data.size(0)
    print(f"{n} training images {tuple(data.shape[1:])} from {a.data}; {a.steps} steps, batch {a.batch}, "
          f"lr {a.lr}, R1 gamma {a.r1}, seed {a.seed}", flush=True)

    g = StyleGAN()
    d = discriminator()
    g_ema = copy.deepcopy(g).eval()
    for p in g_ema.parameters():
        p.requires_grad_(False)
    ema_beta = 0.5 ** (a.batch / 10000.0)
    betas = (0.0, 0.99)
    map_params = list(g.map.parameters())
    map_ids = {id(p) for p in map_params}
    opt_g = torch.optim.Adam([{"params": [p for p in g.parameters() if id(p) not in map_ids]},
                              {"params": map_params, "lr": a.lr * 0.01}], lr=a.lr, betas=betas)
    r1_every = 16
    c = r1_every / (r1_every + 1)  # StyleGAN2's lazy-regularisation correction of lr and betas
    opt_d = torch.optim.Adam(d.parameters(), lr=a.lr * c, betas=(0.0, 0.99 ** c))
    sp = nn.functional.softplus
    t0 = time.time()
    for step in range(1, a.steps + 1):
        real = data[torch.randint(0, n, (a.batch,))]
        # discriminator
        z = torch.randn(a.batch, g.latent_dim)
        with torch.no_grad():
            fake = g(z)
        loss_d = sp(d(fake)).mean() + sp(-d(real)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if a.r1 > 0 and step % r1_every == 0:
            rr = real.detach().requires_grad_(True)
            out = d(rr)
            grad, = torch.autograd.grad(out.sum(), rr, create_graph=True)
            r1 = grad.pow(2).sum([1, 2, 3]).mean() * (a.r1 / 2) * r1_every
            r1.backward()
        opt_d.step()
        # generator
        z = torch.randn(a.batch, g.latent_dim)
        loss_g = sp(-d(g(z))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():
            for pe, p in zip(g_ema.parameters(), g.parameters()):
                pe.lerp_(p, 1.0 - ema_beta)
        if step % a.log_every == 0 or step == a.steps:
            g_ema.eval()
            mem, smp = nearest_mse(g_ema, data)
            el = time.time() - t0
            print(f"step {step}/{a.steps}  D {loss_d.item():.3f}  G {loss_g.item():.3f}  "
                  f"nearest-sample MSE of training images (median) {mem:.4f}, nearest-training MSE of samples "
                  f"{smp:.4f}  {el:.0f}s ({el / step * 1000:.0f} ms/step)", flush=True)

    g_ema.eval()
    with torch.no_grad():
        g_ema.w_avg.copy_(g_ema.mapping(torch.randn(10000, g_ema.latent_dim)).mean(0))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.jit.script(g_ema).save(a.out)
    print(f"wrote {a.out} (EMA generator, w_avg recomputed)", flush=True)
    if a.disc_out:
        d.eval()
        torch.jit.script(d).save(a.disc_out)
        print(f"wrote {a.disc_out} ({DISC_LAYERS})", flush=True)


if __name__ == "__main__":
    main()
