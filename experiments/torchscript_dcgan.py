#!/usr/bin/env python3
"""A PyTorch-trained DCGAN-32, exported as TorchScript, for experiments/torchscript_calibrated.sh (#16).

usage:
  /usr/bin/python3 experiments/torchscript_dcgan.py sets --manifest FMNIST/manifest.csv --out DIR [--seed 1]
      [--per-set 64] [--sets members,nonmembers,ref1,ref2]   (NAME:N: that set has N images)
  /usr/bin/python3 experiments/torchscript_dcgan.py train --data MANIFEST --out G.pt [--steps 3000] [--batch 64]
      [--seed 1] [--latent-dim 100] [--width 32] [--lr 2e-4] [--threads 1]
  /usr/bin/python3 experiments/torchscript_dcgan.py analyse --runs OUT_DIR [--rotations target,ref1,ref2]
      [--labels MEMBERS.csv,NONMEMBERS.csv]

sets: from a `rewind data fashion-mnist` import (28x28 grey PNGs, manifest with a `label` column) draws, with a
  seeded shuffle per class, disjoint sets of PER_SET images with the same class mix (64 = 7 of each of classes
  0..3 and 6 of each of 4..9), pads each image with 2 black pixels a side to 32x32 (the usual MNIST -> DCGAN-32
  preparation; black is Fashion-MNIST's background) and writes DIR/images/<set>/<n>.png (8-bit grey) and
  DIR/<set>.csv (rewind manifest: path,identity,label; identity = the import's, e.g. train-123).
train: the usual DCGAN (Radford et al. 2016) at 32x32, 1 channel: generator z [N, D] -> ConvTranspose 4x4 to
  4x4 x 4W, then three stride-2 ConvTranspose (4W -> 2W -> W -> 1) with BatchNorm + ReLU between, tanh out;
  discriminator Conv 1 -> W -> 2W -> 4W (stride 2, BatchNorm from the second, LeakyReLU 0.2) -> Conv 4x4 -> logit.
  Non-saturating BCE loss, Adam lr 2e-4 betas (0.5, 0.999), one D and one G step per iteration, batches drawn
  with replacement. At the end BatchNorm's running statistics are recomputed exactly (cumulative average over
  50 batches of 256 z in train mode, no grad), the generator is put in eval mode and saved with
  torch.jit.script(g).save(out) (the discriminator, in eval mode, to out + ".disc"). rewind's TorchScript generator contract: forward(z [N, latent_dim]) ->
  [N, C, H, W] in [-1, 1], and an int attribute latent_dim. Progress (losses, the median over training images of
  the MSE to their nearest of 512 eval-mode samples) goes to stdout; the last line is a JSON summary.
analyse: reads the membership runs of torchscript_calibrated.sh (OUT_DIR/mia-NAME-k1, -k2, ...: report.json, scores.csv) and
  prints the markdown tables of experiments/results/torchscript-calibrated.md.
Needs only torch and numpy (PNGs are read and written here with zlib); CPU, deterministic for one torch version
and thread count.
"""
import argparse
import csv
import json
import math
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data-tools"))
from train_stylegan import read_png  # noqa: E402  (8-bit PNG decoder, numpy + zlib)


# ---------------------------------------------------------------- models

class Generator(nn.Module):
    """DCGAN-32 generator; the TorchScript contract rewind needs is forward(z) and `latent_dim: int`."""

    def __init__(self, latent_dim: int = 100, width: int = 32, channels: int = 1):
        super().__init__()
        self.latent_dim: int = latent_dim
        w = width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 4 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(True),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(True),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),
            nn.ConvTranspose2d(w, channels, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.size(0), z.size(1), 1, 1))


def discriminator(width: int = 32, channels: int = 1) -> nn.Module:
    w = width
    return nn.Sequential(
        nn.Conv2d(channels, w, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),
        nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True),
        nn.Conv2d(4 * w, 1, 4, 1, 0, bias=False), nn.Flatten())


def dcgan_init(m: nn.Module):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- images

def write_png_grey(path: str, img: np.ndarray):
    """uint8 [H, W] -> 8-bit greyscale PNG (filter 0 on every row)."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)


def load_manifest(manifest: str) -> torch.Tensor:
    """rewind manifest of grey 32x32 PNGs -> [N, 1, 32, 32] in [-1, 1]."""
    root = os.path.dirname(os.path.abspath(manifest))
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    imgs = [read_png(os.path.join(root, r["path"]))[:, :, 0] for r in rows]
    x = torch.from_numpy(np.stack(imgs)).unsqueeze(1).float()
    return x / 127.5 - 1.0


def cmd_sets(a):
    root = os.path.dirname(os.path.abspath(a.manifest))
    with open(a.manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    names = a.sets.split(",")
    by_class = {}
    for r in rows:
        by_class.setdefault(int(r["label"]), []).append(r)
    classes = sorted(by_class)
    rng = np.random.default_rng(a.seed)
    for c in classes:  # seeded shuffle within each class
        idx = rng.permutation(len(by_class[c]))
        by_class[c] = [by_class[c][i] for i in idx]
    # the same class mix in every set: its size (PER_SET, or N for NAME:N) spread over the classes, the remainder
    # to the first classes
    def class_counts(n):
        base, extra = divmod(n, len(classes))
        return {c: base + (1 if i < extra else 0) for i, c in enumerate(classes)}
    taken = {c: 0 for c in classes}
    os.makedirs(a.out, exist_ok=True)
    used = set()
    for spec in names:
        name, _, size = spec.partition(":")
        counts = class_counts(int(size) if size else a.per_set)
        d = os.path.join(a.out, "images", name)
        os.makedirs(d, exist_ok=True)
        out_rows = []
        for c in classes:
            pool = by_class[c]
            if taken[c] + counts[c] > len(pool):
                sys.exit(f"class {c} has only {len(pool)} images; import more (--limit)")
            for r in pool[taken[c]:taken[c] + counts[c]]:
                assert r["identity"] not in used
                used.add(r["identity"])
                img = read_png(os.path.join(root, r["path"]))[:, :, 0]
                img = np.pad(img, 2, mode="constant", constant_values=0)  # 28x28 -> 32x32
                fn = f"{len(out_rows)}.png"
                write_png_grey(os.path.join(d, fn), img)
                out_rows.append({"path": f"images/{name}/{fn}", "identity": r["identity"], "label": c})
            taken[c] += counts[c]
        with open(os.path.join(a.out, name + ".csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["path", "identity", "label"])
            w.writeheader()
            w.writerows(out_rows)
        print(f"{name}: {len(out_rows)} images, classes {dict(sorted(counts.items()))}")
    print(f"sets are disjoint: {len(used)} distinct source images")


# ---------------------------------------------------------------- training

@torch.no_grad()
def nearest_mse(g: nn.Module, data: torch.Tensor, n: int = 512, seed: int = 12345) -> float:
    """Median over training images of the per-pixel MSE to their nearest of n generated samples (eval mode)."""
    was = g.training
    g.eval()
    gen = torch.Generator().manual_seed(seed)
    x = g(torch.randn(n, g.latent_dim, generator=gen)).flatten(1)
    g.train(was)
    d = torch.cdist(data.flatten(1), x).pow(2) / x.size(1)
    return d.min(1).values.median().item()


@torch.no_grad()
def recompute_bn(g: nn.Module, batches: int = 50, batch: int = 256, seed: int = 777):
    """Exact population statistics for BatchNorm (cumulative average, momentum None) over fresh z."""
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    g.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        g(torch.randn(batch, g.latent_dim, generator=gen))
    for m in bns:
        m.momentum = 0.1


def cmd_train(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    data = load_manifest(a.data)
    n = data.size(0)
    print(f"{n} training images {tuple(data.shape[1:])} from {a.data}; {a.steps} steps, batch {a.batch}, "
          f"latent {a.latent_dim}, width {a.width}, lr {a.lr}, seed {a.seed}, {a.threads} thread(s)", flush=True)
    g, d = Generator(a.latent_dim, a.width, data.size(1)), discriminator(a.width, data.size(1))
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    opt_g = torch.optim.Adam(g.parameters(), lr=a.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=a.lr, betas=(0.5, 0.999))
    bce = nn.functional.binary_cross_entropy_with_logits
    ones, zeros = torch.ones(a.batch, 1), torch.zeros(a.batch, 1)
    t0 = time.time()
    log = []
    for step in range(1, a.steps + 1):
        real = data[torch.randint(0, n, (a.batch,))]
        fake = g(torch.randn(a.batch, a.latent_dim))
        loss_d = bce(d(real), ones) + bce(d(fake.detach()), zeros)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = bce(d(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if step % a.log_every == 0 or step == a.steps:
            el = time.time() - t0
            nm = nearest_mse(g, data)
            log.append({"step": step, "loss_d": loss_d.item(), "loss_g": loss_g.item(), "nearest_mse": nm})
            print(f"step {step}/{a.steps}  D {loss_d.item():.3f}  G {loss_g.item():.3f}  nearest-sample MSE of "
                  f"training images (median, eval BN) {nm:.4f}  {el:.0f}s ({el / step * 1000:.0f} ms/step)", flush=True)
    train_s = time.time() - t0
    before = nearest_mse(g, data)
    recompute_bn(g)
    g.eval()
    after = nearest_mse(g, data)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.jit.script(g).save(a.out)
    # the discriminator too, as released GANs often ship it (rewind membership --discriminator OUT.disc)
    d.eval()
    torch.jit.script(d).save(a.out + ".disc")
    print(f"BatchNorm statistics recomputed: nearest-sample MSE {before:.4f} -> {after:.4f}; wrote {a.out}", flush=True)
    print(json.dumps({"out": a.out, "data": a.data, "steps": a.steps, "batch": a.batch, "latent_dim": a.latent_dim,
                      "width": a.width, "lr": a.lr, "seed": a.seed, "threads": a.threads, "train_s": round(train_s, 1),
                      "nearest_mse_final": after, "log": log}))


# ---------------------------------------------------------------- analysis

def read_scores(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def auc(pos, neg):
    """P(score of a member > score of a non-member), ties half."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def tpr_zero_fp(pos, neg):
    """Fraction of members scoring above every non-member: the TPR at FPR 0 of n_neg (the lowest FPR measurable)."""
    return float((np.asarray(pos) > np.max(neg)).mean())


def spearman(x, y):
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = np.argsort(np.argsort(y)).astype(float)
    return float(np.corrcoef(rx, ry)[0, 1])


def load_run(d):
    rep = json.load(open(os.path.join(d, "report.json")))
    rows = read_scores(os.path.join(d, "scores.csv"))
    return rep, rows


def column(rows, name):
    return np.array([float(r[name]) for r in rows])


def paired_auc_gain(sa, sb, member, boot=2000, seed=1):
    """AUC(sa) - AUC(sb) with a 95% bootstrap interval; members and non-members resampled separately, the same
    draw for both scores (as rewind's bootstrap resamples each class)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.where(member)[0], np.where(~member)[0]
    d = []
    for _ in range(boot):
        p, n = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
        d.append(auc(sa[p], sa[n]) - auc(sb[p], sb[n]))
    d = np.sort(d)
    return auc(sa[pos], sa[neg]) - auc(sb[pos], sb[neg]), d[int(0.025 * (boot - 1))], d[int(0.975 * (boot - 1))]


def rotation_errors(w, name):
    """Per-image errors of one rotation: target, and each reference's (from the K=1 and K=2 calibrated statistic,
    which scores.csv writes as target - mean_k ref_k: ref_a = target - cal1, ref_b = 2 (target - cal2) - ref_a)."""
    _, s1 = load_run(os.path.join(w, f"mia-{name}-k1"))
    _, s2 = load_run(os.path.join(w, f"mia-{name}-k2"))
    assert [r["identity"] for r in s1] == [r["identity"] for r in s2]
    tgt = column(s2, "recovery_error")
    assert np.allclose(tgt, column(s1, "recovery_error"))
    ra = tgt - column(s1, "calibrated_error")
    rb = 2 * (tgt - column(s2, "calibrated_error")) - ra
    return column(s2, "member") == 1, tgt, ra, rb, s2


def cmd_analyse(a):
    w = a.runs
    rots = a.rotations.split(",")
    main = rots[0]

    def attack_cells(name, k, attack, base_scores, member):
        rep, rows = load_run(os.path.join(w, f"mia-{name}-k{k}"))
        m = rep["metrics"]["image"][attack]
        x = m["auc"]
        t = m.get("tpr_at_fpr", {}).get("0.1")
        t10 = f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]" if isinstance(t, list) else "n/a"
        sc = column(rows, attack + "_score")
        g = paired_auc_gain(sc, base_scores, member)
        return m, f"{x[0]:.3f} [{x[1]:.3f}, {x[2]:.3f}]", t10, tpr_zero_fp(sc[member], sc[~member]), g

    # ---- the main rotation: every attack
    member, tgt, ra, rb, rows = rotation_errors(w, main)
    rep2, _ = load_run(os.path.join(w, f"mia-{main}-k2"))
    rep1, _ = load_run(os.path.join(w, f"mia-{main}-k1"))
    n_non = int((~member).sum())
    base = -tgt
    m0 = rep2["metrics"]["image"]["recovery"]
    print(f"### Target GAN `{main}`: every attack\n")
    print(f"| attack | K | AUC [95% CI] | AUC gain over recovery [95% paired CI] | TPR at FPR 0/{n_non} (<= 1%) | "
          "TPR@10%FPR [95% CI] | median error member / non-member |")
    print("|---|---|---|---|---|---|---|")
    x = m0["auc"]
    t = m0["tpr_at_fpr"]["0.1"]
    print(f"| recovery (uncalibrated) | 0 | {x[0]:.3f} [{x[1]:.3f}, {x[2]:.3f}] | | {tpr_zero_fp(base[member], base[~member]):.3f} | "
          f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}] | {m0['median_error_members']:.4f} / {m0['median_error_nonmembers']:.4f} |")
    for k in (1, 2):
        for attack in ("calibrated", "lira", "rmia"):
            m, ac, t10, z, g = attack_cells(main, k, attack, base, member)
            print(f"| {attack} | {k} | {ac} | {g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}] | {z:.3f} | {t10} | |")
    print(f"\n(recovery AUC in the K=1 run {rep1['metrics']['image']['recovery']['auc'][0]:.3f}, in the K=2 run "
          f"{x[0]:.3f}: the same target recovery, seed 1.)\n")

    # ---- per-image errors of the main rotation
    lt, la, lb = np.log(tgt), np.log(ra), np.log(rb)
    lr = np.log((ra + rb) / 2)
    mem, non = member, ~member
    print("Per-image recovery errors (per-pixel MSE, pixels in [-1, 1]); correlations: Pearson on log errors "
          "(Spearman in brackets).\n")
    print("| | members | non-members | all |")
    print("|---|---|---|---|")
    for nm, v in [("median error, target GAN", tgt), ("median error, reference 1", ra), ("median error, reference 2", rb)]:
        print(f"| {nm} | {np.median(v[mem]):.4f} | {np.median(v[non]):.4f} | {np.median(v):.4f} |")
    for nm, xx, yy in [("corr(target, ref 1)", lt, la), ("corr(target, ref 2)", lt, lb),
                       ("corr(target, mean of refs)", lt, lr), ("corr(ref 1, ref 2)", la, lb)]:
        cs = [f"{np.corrcoef(xx[s], yy[s])[0, 1]:.3f} ({spearman(xx[s], yy[s]):.3f})" for s in (mem, non, mem | non)]
        print(f"| {nm} | {' | '.join(cs)} |")
    d = lr - lt
    print(f"| median log(mean ref error / target error) | {np.median(d[mem]):.3f} | {np.median(d[non]):.3f} | |")
    print(f"| sd of log target error | {np.std(lt[mem], ddof=1):.3f} | {np.std(lt[non], ddof=1):.3f} | "
          f"{np.std(lt, ddof=1):.3f} |")
    print(f"| sd of log(mean ref / target) | {np.std(d[mem], ddof=1):.3f} | {np.std(d[non], ddof=1):.3f} | "
          f"{np.std(d, ddof=1):.3f} |")
    print()
    print(f"- each reference alone as the score (it saw none of these images): AUC ref 1 "
          f"{auc(-ra[mem], -ra[non]):.3f}, ref 2 {auc(-rb[mem], -rb[non]):.3f} (below 0.5: this member set is harder "
          "to recover than the non-member set for GANs that saw neither)" if min(auc(-ra[mem], -ra[non]),
                                                                            auc(-rb[mem], -rb[non])) < 0.5 else
          f"- each reference alone as the score: AUC ref 1 {auc(-ra[mem], -ra[non]):.3f}, ref 2 {auc(-rb[mem], -rb[non]):.3f}")
    # the same recovery run again with another seed (restarts): how much of an image's error is optimiser noise
    # a binormal model of the log errors: log error = shared difficulty of the image + each GAN's own deviation
    # (+ a member shift for the target). Fitted on this run, it says what more references could give.
    ve = 0.5 * np.var(la[non] - lb[non], ddof=1)  # one reference's own deviation (the difference of two removes the shared part)
    s_ = np.log(ra) / 2 + np.log(rb) / 2 - lt  # LiRA's statistic up to scale: mean log ref - log target
    vn, vm = np.var(s_[non], ddof=1), np.var(s_[mem], ddof=1)
    vt = vn - ve / 2  # the target's own deviation on non-members
    shift = s_[mem].mean() - s_[non].mean()
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    proj = {k: phi(shift / math.sqrt(2 * (vt + ve / k) + (vm - vn))) for k in (1, 2, 8, 10 ** 9)}
    d0 = lt[non].mean() - lt[mem].mean()
    p0 = phi(d0 / math.sqrt(np.var(lt[mem], ddof=1) + np.var(lt[non], ddof=1)))
    print(f"- binormal model of the log errors (non-members): shared per-image difficulty variance "
          f"{np.var(lt[non], ddof=1) - vt:.3f} of {np.var(lt[non], ddof=1):.3f} (the part calibration removes); "
          f"the target's own deviation variance {vt:.3f} (sd {math.sqrt(max(vt, 0)):.3f}), each reference's {ve:.3f}; "
          f"member shift of mean log ref - log target {shift:.3f}, extra member variance {vm - vn:.3f}. Projected AUC: "
          f"uncalibrated {p0:.3f}; log-ratio calibration K=1 {proj[1]:.3f}, K=2 {proj[2]:.3f}, K=8 {proj[8]:.3f}, "
          f"K=infinity {proj[10 ** 9]:.3f}")
    rs = os.path.join(w, f"mia-{main}-recovery-seed2")
    if os.path.exists(os.path.join(rs, "scores.csv")):
        _, s = load_run(rs)
        assert [r["identity"] for r in s] == [r["identity"] for r in rows]
        t2 = column(s, "recovery_error")
        l2 = np.log(t2)
        print(f"- target recovery repeated with --seed 2 (other restarts): AUC {auc(-t2[mem], -t2[non]):.3f}; corr of "
              f"log errors seed 1 vs 2: members {np.corrcoef(lt[mem], l2[mem])[0, 1]:.3f}, non-members "
              f"{np.corrcoef(lt[non], l2[non])[0, 1]:.3f}; sd of log(seed 2 / seed 1) {np.std(l2 - lt, ddof=1):.3f}; "
              f"AUC of the mean of both seeds' errors {auc(-(tgt + t2)[mem], -(tgt + t2)[non]):.3f}")
    rr = os.path.join(w, f"mia-{main}-k2-restarts8")
    if os.path.exists(os.path.join(rr, "report.json")):
        rep8, s8 = load_run(rr)
        b8 = -column(s8, "recovery_error")
        parts = []
        for attack in ("recovery", "calibrated", "lira", "rmia"):
            x8 = rep8["metrics"]["image"][attack]["auc"]
            parts.append(f"{attack} {x8[0]:.3f} [{x8[1]:.3f}, {x8[2]:.3f}]")
        g8 = paired_auc_gain(column(s8, "calibrated_score"), b8, member)
        m8 = rep8["metrics"]["image"]["recovery"]
        print(f"- K=2 with 8 restarts instead of 2: {'; '.join(parts)}; calibrated gain {g8[0]:+.3f} "
              f"[{g8[1]:+.3f}, {g8[2]:+.3f}]; median recovery error member / non-member "
              f"{m8['median_error_members']:.4f} / {m8['median_error_nonmembers']:.4f}")
    if a.labels:
        lab = np.array([int(r["label"]) for r in read_manifest_labels(a, rows)])
        print("\nPer class, median errors (target GAN; mean of the two references):\n")
        print("| class | target, members | target, non-members | refs, members | refs, non-members |")
        print("|---|---|---|---|---|")
        rm = (ra + rb) / 2
        for c in sorted(set(lab.tolist())):
            s_ = lab == c
            print(f"| {c} | {np.median(tgt[s_ & mem]):.4f} | {np.median(tgt[s_ & non]):.4f} | "
                  f"{np.median(rm[s_ & mem]):.4f} | {np.median(rm[s_ & non]):.4f} |")
    json.dump({"identity": [r["identity"] for r in rows], "member": member.astype(int).tolist(), "target": tgt.tolist(),
               "ref1": ra.tolist(), "ref2": rb.tolist()}, open(os.path.join(w, f"per-image-errors-{main}.json"), "w"))

    # ---- every rotation: each GAN in turn as the target, the other two as references
    if len(rots) > 1:
        print("\n### Each GAN in turn as the target (members: its own training set; non-members: the same 64; "
              "references: the other two GANs)\n")
        print("| target GAN | recovery AUC | median error mem / non | calibrated K=1 | calibrated K=2 | lira K=2 | "
              "rmia K=2 | calibrated K=2 gain [95% paired CI] | lira K=2 gain [95% paired CI] |")
        print("|---|---|---|---|---|---|---|---|---|")
        gains = []
        for name in rots:
            member, tgt, ra, rb, rows = rotation_errors(w, name)
            rep1, s1 = load_run(os.path.join(w, f"mia-{name}-k1"))
            rep2, s2 = load_run(os.path.join(w, f"mia-{name}-k2"))
            im1, im2 = rep1["metrics"]["image"], rep2["metrics"]["image"]
            f = lambda m: f"{m['auc'][0]:.3f}"
            g = paired_auc_gain(column(s2, "calibrated_score"), -tgt, member)
            gl = paired_auc_gain(column(s2, "lira_score"), -tgt, member)
            gains.append([im2["recovery"]["auc"][0], im1["calibrated"]["auc"][0], im2["calibrated"]["auc"][0],
                          im2["lira"]["auc"][0], im2["rmia"]["auc"][0]])
            print(f"| {name} | {f(im2['recovery'])} | {im2['recovery']['median_error_members']:.4f} / "
                  f"{im2['recovery']['median_error_nonmembers']:.4f} | {f(im1['calibrated'])} | {f(im2['calibrated'])} | "
                  f"{f(im2['lira'])} | {f(im2['rmia'])} | {g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}] | "
                  f"{gl[0]:+.3f} [{gl[1]:+.3f}, {gl[2]:+.3f}] |")
        gm = np.mean(gains, 0)
        print(f"| mean of {len(rots)} | {gm[0]:.3f} | | {gm[1]:.3f} | {gm[2]:.3f} | {gm[3]:.3f} | {gm[4]:.3f} | "
              f"{gm[2] - gm[0]:+.3f} | {gm[3] - gm[0]:+.3f} |")


def read_manifest_labels(a, rows):
    """Manifest rows (with labels) of the scored rows, matched by identity (unique: one image per source image)."""
    lab = {}
    for m in a.labels.split(","):
        for r in read_scores(m):
            lab[r["identity"]] = r
    return [lab[r["identity"]] for r in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sets")
    s.add_argument("--manifest", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--per-set", type=int, default=64)
    s.add_argument("--sets", default="members,nonmembers,ref1,ref2")
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--latent-dim", type=int, default=100)
    t.add_argument("--width", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--log-every", type=int, default=250)
    n = sub.add_parser("analyse")
    n.add_argument("--runs", required=True)
    n.add_argument("--labels", help="member,non-member manifests of the first rotation: adds a per-class table")
    n.add_argument("--rotations", default="target", help="run names mia-NAME-k1 / -k2; the first gets every table")
    a = ap.parse_args()
    {"sets": cmd_sets, "train": cmd_train, "analyse": cmd_analyse}[a.cmd](a)


if __name__ == "__main__":
    main()
