#!/usr/bin/python3
"""Train tailor's bundled model: a small ResNet on Fashion-MNIST, as a
weight-shared SuperNet whose elastic dimensions are the ones tailor's
compiler finds in its graph.

    scripts/train-fmnist.py models/fmnist.onnx            # SuperNet (sandwich rule)
    scripts/train-fmnist.py models/fmnist-plain.onnx --plain

Architecture (all that tailor's compiler looks for is in the graph):
  stem     conv3x3 1->16, BN, ReLU                      28x28
  stage 1  2 residual blocks, 16 ch, identity skips      28x28
  stage 2  1 projection block 16->32 (stride 2) + 2 residual blocks, 14x14
  stage 3  1 projection block 32->64 (stride 2) + 2 residual blocks,  7x7
  head     global average pool, linear 64->10
A block is conv3x3-BN-ReLU-conv3x3-BN (+ skip) then ReLU.  Elastic:
  depth       per stage, keep the first d of its residual blocks (0..2)
  width       per stage, the first k of each block's internal channels
              (after its first conv), k = floor(w*C + 0.5), w in .25/.5/.75/1
  resolution  the input resized (bilinear, half-pixel centres) to
              floor(28*f + 0.5), f in .5/.625/.75/.875/1 -> 14/18/21/25/28

SuperNet training (BigNAS/OFA sandwich rule): each step trains the largest
subnet on the labels, then the smallest and two random subnets on the
largest's soft predictions (in-place distillation).  --plain trains only the
full network (the "training-free" baseline: its subnets get accuracy from BN
recalibration alone).

Every epoch ends, and training ends, by recalibrating BatchNorm statistics
for the largest subnet and sorting each block's internal channels by
importance -- L1 norm of the first conv's filter times |gamma/sqrt(var+eps)|
of its BN, descending -- the same order tailor's compiler computes, so the
compiler's sort finds the exported model already sorted.

Needs Debian's python3-torch and dataset-fashion-mnist; CPU only.
"""
import argparse
import gzip
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"
STAGE_CH = [16, 32, 64]
BLOCKS = 2  # residual blocks per stage
WIDTHS = [0.25, 0.5, 0.75, 1.0]
RES = [14, 18, 21, 25, 28]
NATIVE = 28


def load_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def keep(w, c):
    return max(1, int(math.floor(w * c + 0.5)))


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN, + skip (identity or 1x1 projection), ReLU.
    Internal channels (conv1 out = conv2 in) are elastic."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x, width=1.0):
        c = self.conv1.out_channels
        k = keep(width, c)
        if k == c:
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
        else:
            y = F.conv2d(x, self.conv1.weight[:k], None, self.conv1.stride, 1)
            y = F.batch_norm(y, self.bn1.running_mean[:k], self.bn1.running_var[:k],
                             self.bn1.weight[:k], self.bn1.bias[:k], self.training,
                             self.bn1.momentum, self.bn1.eps)
            y = F.relu(y)
            y = F.conv2d(y, self.conv2.weight[:, :k], None, 1, 1)
            y = self.bn2(y)
        return F.relu(y + (x if self.proj is None else self.proj(x)))

    @torch.no_grad()
    def sort_channels(self):
        """Internal channels by importance, descending (stable)."""
        scale = self.bn1.weight.abs() / torch.sqrt(self.bn1.running_var + self.bn1.eps)
        imp = self.conv1.weight.abs().sum(dim=(1, 2, 3)) * scale
        order = torch.from_numpy(np.argsort(-imp.numpy(), kind="stable"))
        self.conv1.weight.copy_(self.conv1.weight[order])
        for t in (self.bn1.weight, self.bn1.bias, self.bn1.running_mean, self.bn1.running_var):
            t.copy_(t[order])
        self.conv2.weight.copy_(self.conv2.weight[:, order])


class FmnistNet(nn.Module):
    def __init__(self):
        super().__init__()
        c0 = STAGE_CH[0]
        self.stem = nn.Sequential(nn.Conv2d(1, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0),
                                  nn.ReLU())
        self.heads = nn.ModuleList()   # projection block of each stage (or None)
        self.stages = nn.ModuleList()  # residual blocks of each stage
        cin = c0
        for i, c in enumerate(STAGE_CH):
            self.heads.append(Block(cin, c, 2) if i > 0 else nn.Identity())
            self.stages.append(nn.ModuleList([Block(c, c, 1) for _ in range(BLOCKS)]))
            cin = c
        self.fc = nn.Linear(cin, 10)

    def forward(self, x, cfg=None):
        """cfg = (res, depths, widths); None is the full network at 28."""
        if cfg is not None:
            res, depths, widths = cfg
            if res != x.shape[-1]:
                x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
        else:
            depths, widths = [BLOCKS] * len(STAGE_CH), [1.0] * len(STAGE_CH)
        x = self.stem(x)
        for i, (head, blocks) in enumerate(zip(self.heads, self.stages)):
            if isinstance(head, Block):
                x = head(x, widths[i])
            for b in blocks[:depths[i]]:
                x = b(x, widths[i])
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)

    def blocks(self):
        for head, blocks in zip(self.heads, self.stages):
            if isinstance(head, Block):
                yield head
            yield from blocks


LARGEST = (NATIVE, [BLOCKS] * 3, [1.0] * 3)
SMALLEST = (RES[0], [0] * 3, [WIDTHS[0]] * 3)


def random_cfg(rng):
    return (rng.choice(RES), [rng.randint(0, BLOCKS) for _ in range(3)],
            [rng.choice(WIDTHS) for _ in range(3)])


def augment(x, rng_t):
    """Random 2-pixel shifts and horizontal flips, per image."""
    n = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (n,), generator=rng_t)
    dy = torch.randint(0, 5, (n,), generator=rng_t)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    flip = torch.rand(n, generator=rng_t) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def recalibrate(model, x, batches=20, bs=256, cfg=None):
    """BatchNorm statistics of subnet cfg (the largest by default), averaged
    over batches."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    for i in range(min(batches, len(x) // bs)):
        model(x[i * bs:(i + 1) * bs].contiguous(memory_format=torch.channels_last), cfg)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    model.eval()


@torch.no_grad()
def accuracy(model, x, y, cfg=None, bs=1000):
    model.eval()
    right = 0
    for i in range(0, len(x), bs):
        xb = x[i:i + bs].contiguous(memory_format=torch.channels_last)
        right += (model(xb, cfg).argmax(1) == y[i:i + bs]).sum().item()
    return right / len(x)


def load_fmnist():
    """Train and test splits: images (N, 1, 28, 28) as pixels / 255, labels int64."""
    def images(name):
        return torch.from_numpy(load_idx(name).copy()).float().div_(255).unsqueeze(1)

    def labels(name):
        return torch.from_numpy(load_idx(name).astype(np.int64))

    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def make_optimizer(model, lr, weight_decay):
    """SGD with Nesterov momentum; weight decay on conv and linear weights only."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                            {"params": no_decay, "weight_decay": 0}],
                           lr=lr, momentum=0.9, nesterov=True)


def sandwich_step(model, opt, x, y, largest, students, max_grad_norm=None):
    """One optimizer step of the sandwich rule: the largest subnet learns the
    labels (label smoothing 0.1), each student subnet the largest's soft
    predictions (in-place distillation); the summed gradient is clipped to
    max_grad_norm when given.  Returns the largest's loss."""
    opt.zero_grad(set_to_none=True)
    logits = model(x, largest)
    loss = F.cross_entropy(logits, y, label_smoothing=0.1)
    loss.backward()
    soft = F.softmax(logits.detach(), dim=1)
    for cfg in students:
        out = model(x, cfg)
        F.kl_div(F.log_softmax(out, dim=1), soft, reduction="batchmean").backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    return loss.item()


def export(model, path):
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    tmp = path + ".tmp"
    torch.onnx.export(model, dummy, tmp, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=13, training=torch.onnx.TrainingMode.PRESERVE,
                      do_constant_folding=True)
    import onnx
    m = onnx.load(tmp)
    ops = [n.op_type for n in m.graph.node]
    if "BatchNormalization" not in ops:
        sys.exit("export folded BatchNormalization into Conv; tailor needs it separate")
    onnx.checker.check_model(m)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="ONNX file to write")
    ap.add_argument("--plain", action="store_true", help="train only the full network")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images (smoke test)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    rng_t = torch.Generator().manual_seed(args.seed)

    xtr, ytr, xte, yte = load_fmnist()
    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    calib = xtr[:5120]  # BN recalibration uses training images only

    model = FmnistNet().to(memory_format=torch.channels_last)
    opt = make_optimizer(model, args.lr, 5e-4)
    steps_per_epoch = len(xtr) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch,
                                                pct_start=0.15)
    mode = "plain" if args.plain else "supernet (sandwich rule, in-place distillation)"
    print(f"training {mode}: {args.epochs} epochs of {steps_per_epoch} steps, "
          f"batch {args.batch}, {args.threads} threads", flush=True)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=rng_t)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = perm[step * args.batch:(step + 1) * args.batch]
            x = augment(xtr[idx], rng_t).contiguous(memory_format=torch.channels_last)
            y = ytr[idx]
            students = [] if args.plain else [SMALLEST, random_cfg(rng), random_cfg(rng)]
            total += sandwich_step(model, opt, x, y, LARGEST, students)
            sched.step()
            if step % 50 == 0:
                el = time.time() - t0
                print(f"  epoch {epoch + 1} step {step}/{steps_per_epoch} "
                      f"loss {total / (step + 1):.3f} ({el:.0f}s)", flush=True)
        recalibrate(model, calib)
        for b in model.blocks():
            b.sort_channels()
        acc = accuracy(model, xte[:2000], yte[:2000])
        msg = f"epoch {epoch + 1}: loss {total / steps_per_epoch:.3f}, largest top-1 {acc:.4f}"
        if not args.plain:
            msg += f", smallest {accuracy(model, xte[:2000], yte[:2000], SMALLEST):.4f} (shared BN)"
        print(f"{msg} ({time.time() - t0:.0f}s)", flush=True)
    recalibrate(model, calib)
    for b in model.blocks():
        b.sort_channels()
    print(f"test top-1 of the largest subnet: {accuracy(model, xte, yte):.4f}", flush=True)
    export(model.to(memory_format=torch.contiguous_format), args.out)
    print(f"wrote {args.out} ({time.time() - t0:.0f}s in all)", flush=True)


if __name__ == "__main__":
    main()
