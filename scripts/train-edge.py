#!/usr/bin/python3
"""Train tailor's edge-scale model: torchvision's MobileNetV2, its code
unchanged, on Fashion-MNIST at 176 x 176, as a weight-shared SuperNet whose
subnets are the ones tailor's compiler finds in its default ONNX export.

    scripts/train-edge.py models/fmnist-mobilenet_v2.onnx    # starts, or resumes
    scripts/train-edge.py models/fmnist-mobilenet_v2.onnx --export-only \\
        --check build/tailorctl/tailorctl

Hours of training on two cores, in chunks: a checkpoint
(OUT without .onnx + .ckpt: weights, momentum, the learning-rate schedule's
position, epoch and step, the epoch's summed loss) is written every
--save-every steps, at every epoch's end and when the process gets SIGTERM,
SIGINT or SIGHUP; a rerun of the same command resumes from it.  Every
step's randomness (batch order, augmentation, subnets, dropout) is a
function of (seed, epoch, step), so a resumed run takes the steps an
unbroken one would.  Progress goes to OUT + .log (and stdout): a line every
--log-every steps, and at each epoch's end the test top-1 of the largest
and of the smallest subnet, each with BatchNorm statistics recalibrated for
it, as tailor recalibrates a subnet before serving it.  After the last
epoch the model is exported to OUT.

The model: torchvision.models.mobilenet_v2(num_classes=10).  Its input is
what the box feeds it: (N, 3, 176, 176), pixels / 255, the Fashion-MNIST
image upsampled (bilinear, half-pixel centres: make-calib.py's upsample(),
so the calibration files hold the images training saw) and repeated into
three channels.  Exported with torch.onnx.export's defaults at opset 13
(BatchNorm folded into the convs), input "input", output "logits", dynamic
batch, like models/fmnist-folded.onnx.

What tailor's compiler finds in that export (core/supernet_graph.c), and so
what this training samples:
  depth       the InvertedResiduals with an identity skip are the blocks
              (features 3, 5-6, 8-10, 12-13, 15-16); runs of consecutive ones
              are the 5 stages, and a subnet keeps the first d of each
  width       a dense conv whose channels reach the next dense conv through
              BN, ReLU6 and depthwise convs only: every expansion conv, the
              stem (through block 1's depthwise conv) and the projections of
              blocks 1 and 17 (19 groups); a subnet keeps the first
              floor(w * C + 0.5), w in .25/.5/.75/1 per stage.  A group's
              stage is its consumer conv's block's, else the next stage,
              else the last
  resolution  the input resized (bilinear, half-pixel) to
              floor(176 * f + 0.5), f in .5/.625/.75/.875/1: 88-176
Training runs torchvision's own forward; the convs, BatchNorms and blocks
get a forward that cuts them to the current subnet.  --check runs
`tailorctl inspect` and `tailorctl run` on the export and compares both
with these subnets.

Each step follows the sandwich rule with in-place distillation, as
train-fmnist.py: the largest subnet on the labels, the smallest and two
random ones on its soft predictions.  Their summed gradient is clipped to
norm 5 (--max-grad-norm): unclipped at this learning rate the sandwich
diverged where training the largest subnet alone did not.  Each epoch
ends by recalibrating BatchNorm for the largest subnet and sorting each
group's channels by importance (L1 norm of the producing conv's filter
times |gamma|/sqrt(var+eps)), the order tailor's compiler computes from
the folded export, with the momentum buffers permuted alike.

Needs Debian's python3-torch, python3-torchvision, python3-onnx and
dataset-fashion-mnist; CPU only.
"""
import argparse
import ctypes
import datetime
import importlib.util
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.mobilenetv2 import InvertedResidual

HERE = os.path.dirname(os.path.abspath(__file__))


def script(name):
    """A script of this folder as a module (train-fmnist.py, make-calib.py)."""
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"),
                                                  os.path.join(HERE, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fm = script("train-fmnist")  # data, augmentation, recalibration, accuracy, sandwich step
calib = script("make-calib")  # the upsampling the calibration files are made with

WIDTHS = [0.25, 0.5, 0.75, 1.0]
CHECKPOINT_VERSION = 1

# ------------------------------------------------------ elastic forwards


def elastic_conv(conv, x):
    """A conv cut to the subnet: a dense conv reads the input channels it is
    given and makes its first conv.keep outputs (all when None); a depthwise
    conv keeps the channels it is given."""
    cin = x.shape[1]
    if conv.groups == 1:
        w, groups = conv.weight[:conv.keep, :cin], 1
    else:
        assert conv.groups == conv.in_channels == conv.out_channels, "depthwise only"
        w, groups = conv.weight[:cin], cin
    if w.shape == conv.weight.shape:
        return type(conv).forward(conv, x)
    bias = None if conv.bias is None else conv.bias[:w.shape[0]]
    return F.conv2d(x, w, bias, conv.stride, conv.padding, conv.dilation, groups)


def elastic_bn(bn, x):
    """BatchNorm of the first x.shape[1] channels; momentum None (a
    cumulative average, for recalibration) as nn.BatchNorm2d does it."""
    c = x.shape[1]
    if c == bn.num_features:
        return type(bn).forward(bn, x)
    momentum = 0.0
    if bn.training:
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / bn.num_batches_tracked.item()
    return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                        bn.training, momentum, bn.eps)


def skippable(block, x):
    return x if block.skip else type(block).forward(block, x)


# ------------------------------------------------------ the SuperNet


def conv_units(feature):
    """(conv, its BN) of one entry of MobileNetV2.features, in dataflow order."""
    mods = list(feature.conv) if isinstance(feature, InvertedResidual) else [feature]
    units = []
    for m in mods:
        if isinstance(m, nn.BatchNorm2d):
            units[-1] = (units[-1][0], m)
        elif isinstance(m, nn.Conv2d):
            units.append((m, None))
        else:  # Conv2dNormActivation: conv, BN, activation
            units.append((m[0], m[1]))
    return units


def analyse(net):
    """The stages (lists of skippable blocks) and width groups tailor's
    compiler finds in net's export; see the file comment."""
    feats = list(net.features)
    residual = [i for i, f in enumerate(feats) if getattr(f, "use_res_connect", False)]
    stage_of, firsts = {}, []
    for i in residual:
        if not (firsts and stage_of.get(i - 1) is not None):
            firsts.append(i)
        stage_of[i] = len(firsts) - 1
    stages = [[feats[i] for i in residual if stage_of[i] == s] for s in range(len(firsts))]
    units = [(i, conv, bn) for i, f in enumerate(feats) for conv, bn in conv_units(f)]
    names = {m: n for n, m in net.named_modules()}
    groups = []
    for u, (fi, conv, bn) in enumerate(units):
        if conv.groups != 1:
            continue
        v, through = u + 1, []
        while v < len(units) and units[v][1].groups > 1:
            through.append(units[v][1:])
            v += 1
        if v == len(units):
            continue  # its channels reach the pooling, not a conv
        fj = units[v][0]
        # Channels that leave their block are its output and the next one's
        # input: a residual Add reads them there too.
        if fj > fi and any(k in stage_of for k in range(fi, fj + 1)):
            continue
        if fj in stage_of:
            stage = stage_of[fj]
        else:
            stage = next((s for s, f in enumerate(firsts) if f > fj), len(firsts) - 1)
        groups.append(types.SimpleNamespace(conv=conv, bn=bn, through=through,
                                            consumer=units[v][1], channels=conv.out_channels,
                                            stage=stage, name=names[conv],
                                            consumer_name=names[units[v][1]]))
    return stages, groups


class EdgeSuperNet(nn.Module):
    """torchvision's mobilenet_v2(num_classes=10) as the SuperNet tailor
    sees.  A subnet is cfg = (side, depths, widths) per stage; None is the
    whole network at the native side."""

    def __init__(self, side):
        super().__init__()
        self.side = side
        self.net = torchvision.models.mobilenet_v2(num_classes=10)
        self.stages, self.groups = analyse(self.net)
        self.sides = sorted({math.floor(side * (0.5 + 0.5 * i / 4) + 0.5) for i in range(5)})
        for m in self.net.features.modules():
            if isinstance(m, nn.Conv2d):
                m.keep = None
                m.forward = types.MethodType(elastic_conv, m)
            elif isinstance(m, nn.BatchNorm2d):
                m.forward = types.MethodType(elastic_bn, m)
        for block in (b for stage in self.stages for b in stage):
            block.skip = False
            block.forward = types.MethodType(skippable, block)
            # Each skippable block starts as the identity (its last BN's
            # scale zero, as BigNAS does), so that skipping it changes
            # nothing at first and the subnets start out agreeing.
            nn.init.zeros_(block.conv[-1].weight)
        self.largest = (side, [len(s) for s in self.stages], [1.0] * len(self.stages))
        self.smallest = (self.sides[0], [0] * len(self.stages), [WIDTHS[0]] * len(self.stages))

    def random_cfg(self, rng):
        return (rng.choice(self.sides), [rng.randint(0, len(s)) for s in self.stages],
                [rng.choice(WIDTHS) for _ in self.stages])

    def spec(self, cfg):
        """cfg in tailor's canonical text, "r=176 d=1,2,3,2,2 w=1,1,1,1,1"."""
        side, depths, widths = cfg
        w = ",".join(f"{x:g}".lstrip("0") for x in widths)
        return f"r={side} d={','.join(map(str, depths))} w={w}"

    def native(self, x):
        """Fashion-MNIST images (N, 1, 28, 28), pixels / 255, as the model's input."""
        u8 = x.squeeze(1).mul(255).round().to(torch.uint8).numpy()
        up = torch.from_numpy(calib.upsample(u8, self.side)).float().div_(255)
        return up.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)

    def subnet(self, x, cfg=None):
        """Runs subnet cfg on native input x (N, 3, side, side)."""
        side, depths, widths = cfg if cfg is not None else self.largest
        for s, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                block.skip = j >= depths[s]
        for g in self.groups:
            g.conv.keep = fm.keep(widths[g.stage], g.channels)
        if side != x.shape[-1]:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return self.net(x)

    def forward(self, x, cfg=None):
        return self.subnet(self.native(x), cfg)

    @torch.no_grad()
    def sort_channels(self, opt):
        """Each group's channels by importance, descending (stable), in every
        tensor that indexes them and in their momentum buffers."""
        def permute(t, order, dim):
            bufs = [t]
            if isinstance(t, nn.Parameter) and "momentum_buffer" in opt.state.get(t, {}):
                bufs.append(opt.state[t]["momentum_buffer"])
            for b in bufs:
                b.copy_(b.index_select(dim, order))

        for g in self.groups:
            bn = g.bn
            scale = bn.weight.double().abs() / torch.sqrt(bn.running_var.double() + bn.eps)
            imp = g.conv.weight.double().abs().sum(dim=(1, 2, 3)) * scale
            order = torch.from_numpy(np.argsort(-imp.numpy(), kind="stable"))
            for conv, bn in [(g.conv, g.bn)] + g.through:
                permute(conv.weight, order, 0)
                for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                    permute(t, order, 0)
            permute(g.consumer.weight, order, 1)

    def export(self, path):
        """torch.onnx.export's defaults (opset 13) of a fresh torchvision model
        holding these weights; names and dynamic batch as the bundled model."""
        import onnx
        plain = torchvision.models.mobilenet_v2(num_classes=10)
        plain.load_state_dict(self.net.state_dict())
        tmp = path + ".tmp"
        torch.onnx.export(plain.eval(), torch.zeros(1, 3, self.side, self.side), tmp,
                          opset_version=13, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        onnx.checker.check_model(onnx.load(tmp))
        os.replace(tmp, path)


# ------------------------------------------------------ checking against tailor


def onnx_scope(name):
    """The node-name prefix torch.onnx.export gives module `name`:
    "features.17.conv.2" -> "/features/features.17/conv/conv.2"."""
    parts, cur = [], None
    for p in name.split("."):
        cur = f"{cur}.{p}" if p.isdigit() and cur else p
        parts.append(cur)
    return "/" + "/".join(parts)


def check_with_tailor(model, path, tailorctl, log):
    """What `tailorctl inspect` finds in the export must be the SuperNet
    trained here, and `tailorctl run` must compute its subnets' logits."""
    def ctl(*args):
        r = subprocess.run([tailorctl, *args], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"train-edge: tailorctl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    info = json.loads(ctl("inspect", path, "--json"))
    want = {
        "stages": [{"blocks": len(s), "width_groups": sum(g.stage == i for g in model.groups)}
                   for i, s in enumerate(model.stages)],
        "widths": WIDTHS,
        "resolutions": model.sides,
        "width_groups": [{"producer": onnx_scope(g.name) + "/Conv",
                          "consumer": onnx_scope(g.consumer_name) + "/Conv",
                          "channels": g.channels, "stage": g.stage + 1} for g in model.groups],
        "largest": model.spec(model.largest),
        "smallest": model.spec(model.smallest),
    }
    got = {k: info[k] for k in want if k not in ("largest", "smallest")}
    got["largest"], got["smallest"] = info["largest"]["subnet"], info["smallest"]["subnet"]
    for k in want:
        if got[k] != want[k]:
            sys.exit(f"train-edge: tailor finds other {k} in {path}:\n  tailor {got[k]}\n"
                     f"  here   {want[k]}")
    log(f"check: tailor finds the same SuperNet in {path}: {len(model.stages)} stages, "
        f"{len(model.groups)} width groups, sides {model.sides}, "
        f"{info['space_size']:.6g} subnets; largest {info['largest']['macs'] / 1e6:.2f} MMAC, "
        f"smallest {info['smallest']['macs'] / 1e6:.2f} MMAC")
    x = torch.rand(2, 3, model.side, model.side, generator=torch.Generator().manual_seed(7))
    rng = random.Random(7)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "x.npy"), x.numpy())
        for cfg in [model.largest, model.smallest] + [model.random_cfg(rng) for _ in range(4)]:
            ctl("run", path, os.path.join(tmp, "x.npy"), "--subnet", model.spec(cfg), "--out", tmp)
            theirs = np.load(os.path.join(tmp, "logits.npy"))
            with torch.no_grad():
                ours = model.subnet(x.contiguous(memory_format=torch.channels_last), cfg).numpy()
            err = np.abs(theirs - ours).max() / np.abs(ours).max()
            log(f"check: {model.spec(cfg)}: tailor vs PyTorch logits {err:.1e} of max |logit|")
            if err > 1e-3:
                sys.exit(f"train-edge: subnet {model.spec(cfg)} differs in tailor")


# ------------------------------------------------------ training


class Stop:
    """Set by SIGTERM, SIGINT or SIGHUP: save at the next step and exit."""

    signum = None

    @classmethod
    def install(cls):
        def handler(signum, frame):
            cls.signum = signum
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, handler)


def keep_freed_memory():
    """Each step allocates and frees gigabytes of activations; glibc hands
    large blocks back to the kernel (mmap, heap trimming), and the next step
    faults every page in again: half a step's CPU time was the kernel's
    (2.3 M page faults a step at 176 px, batch 128).  Kept in the heap, the
    memory is reused: a step took 4x less CPU time."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-4, 0)  # M_MMAP_MAX: no block of its own for large requests
    libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: keep freed memory up to 2 GiB


def step_seed(seed, epoch, step):
    return (seed * 1000 + epoch) * 100_000 + step


SETTINGS = ("epochs", "batch", "lr", "weight_decay", "max_grad_norm", "seed", "side", "limit")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="ONNX file to write at the end")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05, help="peak of the one-cycle schedule")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--max-grad-norm", type=float, default=5.0,
                    help="clip each step's summed gradient to this norm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--side", type=int, default=176, help="the model's input side")
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images (tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt", help="checkpoint (default: OUT with .ckpt)")
    ap.add_argument("--log", help="progress log (default: OUT with .log)")
    ap.add_argument("--save-every", type=int, default=25, help="steps between checkpoints")
    ap.add_argument("--log-every", type=int, default=10, help="steps between progress lines")
    ap.add_argument("--eval-images", type=int, default=10000, help="test images at epoch end")
    ap.add_argument("--max-steps", type=int, default=0, help="stop (resumably) after N steps")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop (resumably) after M min")
    ap.add_argument("--export-only", action="store_true",
                    help="export the checkpoint's model to OUT (recalibrated, sorted) and stop")
    ap.add_argument("--check", metavar="TAILORCTL",
                    help="after exporting, compare tailor's SuperNet and subnets with these")
    args = ap.parse_args()
    stem = args.out[:-5] if args.out.endswith(".onnx") else args.out
    ckpt_path, log_path = args.ckpt or stem + ".ckpt", args.log or stem + ".log"

    def log(msg):
        line = f"{datetime.datetime.utcnow():%Y-%m-%dT%H:%M:%SZ} {msg}"
        print(line, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    settings = {k: getattr(args, k) for k in SETTINGS}
    state = torch.load(ckpt_path) if os.path.exists(ckpt_path) else None
    if state is not None and state["settings"] != settings:
        differ = [f"--{k.replace('_', '-')} {state['settings'][k]} (not {settings[k]})"
                  for k in SETTINGS if state["settings"][k] != settings[k]]
        sys.exit(f"train-edge: {ckpt_path} was trained with {', '.join(differ)}; "
                 "give those, or another --ckpt")

    xtr, ytr, xte, yte = fm.load_fmnist()
    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    xte, yte = xte[:args.eval_images], yte[:args.eval_images]
    recal_images = xtr[:20 * args.batch]  # BN recalibration uses training images only
    steps_per_epoch = len(xtr) // args.batch

    torch.manual_seed(args.seed)
    model = EdgeSuperNet(args.side).to(memory_format=torch.channels_last)
    opt = fm.make_optimizer(model, args.lr, args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.15)
    epoch, step, loss_sum, train_s = 0, 0, 0.0, 0.0
    if state is not None:
        if state["version"] != CHECKPOINT_VERSION:
            sys.exit(f"train-edge: {ckpt_path}: checkpoint version {state['version']}")
        model.net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        epoch, step, loss_sum, train_s = (state[k] for k in ("epoch", "step", "loss_sum",
                                                               "train_seconds"))

    def checkpoint():
        """Written whole, then renamed: a kill leaves the last one intact.
        OneCycleLR's state holds its annealing function, a bound method
        whose pickle would carry the optimizer, every weight, once more."""
        schedule = {k: v for k, v in sched.state_dict().items() if k != "anneal_func"}
        torch.save({"version": CHECKPOINT_VERSION, "settings": settings,
                    "model": model.net.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": schedule, "epoch": epoch, "step": step,
                    "loss_sum": loss_sum, "train_seconds": train_s}, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    def settle():
        """The end of an epoch: BN for the largest subnet, channels sorted."""
        fm.recalibrate(model, recal_images, bs=args.batch)
        model.sort_channels(opt)

    def finish():
        settle()
        model.export(args.out)
        log(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)")
        if args.check:
            check_with_tailor(model, args.out, args.check, log)

    if args.export_only:
        if state is None:
            sys.exit(f"train-edge: no checkpoint {ckpt_path} to export")
        return finish()
    if epoch == args.epochs:
        log(f"{ckpt_path}: training is complete ({args.epochs} epochs)")
        return finish()

    log(f"{'resuming at' if state else 'starting'} epoch {epoch + 1}/{args.epochs} step "
        f"{step}/{steps_per_epoch}: MobileNetV2 at {args.side}, {len(model.stages)} stages, "
        f"{len(model.groups)} width groups, sides {model.sides}; batch {args.batch}, "
        f"{args.threads} threads, checkpoint {ckpt_path}")
    Stop.install()
    t_run, steps_run = time.time(), 0
    while epoch < args.epochs:
        perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(
            step_seed(args.seed, epoch, 99_999)))
        while step < steps_per_epoch:
            if (Stop.signum or (args.max_steps and steps_run >= args.max_steps) or
                    (args.max_minutes and time.time() - t_run >= 60 * args.max_minutes)):
                checkpoint()
                why = f"signal {Stop.signum}" if Stop.signum else f"after {steps_run} steps"
                log(f"stopped ({why}) at epoch {epoch + 1} step {step}; rerun to resume")
                return
            t0 = time.time()
            seed = step_seed(args.seed, epoch, step)
            torch.manual_seed(seed)  # dropout
            rng, rng_t = random.Random(seed), torch.Generator().manual_seed(seed)
            idx = perm[step * args.batch:(step + 1) * args.batch]
            x, y = fm.augment(xtr[idx], rng_t), ytr[idx]
            students = [model.smallest, model.random_cfg(rng), model.random_cfg(rng)]
            loss_sum += fm.sandwich_step(model, opt, x, y, model.largest, students,
                                         args.max_grad_norm)
            sched.step()
            step, steps_run = step + 1, steps_run + 1
            train_s += time.time() - t0
            if step % args.log_every == 0 or step == steps_per_epoch:
                log(f"epoch {epoch + 1}/{args.epochs} step {step}/{steps_per_epoch} "
                    f"loss {loss_sum / step:.4f} lr {sched.get_last_lr()[0]:.4f} "
                    f"{time.time() - t0:.1f} s/step, {train_s:.0f} s training")
            if step % args.save_every == 0 or step == steps_per_epoch:
                checkpoint()
        t0 = time.time()
        settle()
        largest = fm.accuracy(model, xte, yte, bs=250)
        kept = {k: v.clone() for k, v in model.net.state_dict().items()
                if "running" in k or "num_batches" in k}
        fm.recalibrate(model, recal_images, bs=args.batch, cfg=model.smallest)
        smallest = fm.accuracy(model, xte, yte, model.smallest, bs=250)
        model.net.load_state_dict(kept, strict=False)
        log(f"epoch {epoch + 1}/{args.epochs} done: loss {loss_sum / steps_per_epoch:.4f}, "
            f"test top-1 on {len(xte)} images (BN recalibrated for each): largest "
            f"{largest:.4f} ({model.spec(model.largest)}), smallest {smallest:.4f} "
            f"({model.spec(model.smallest)}); {time.time() - t0:.0f} s evaluating, "
            f"{train_s:.0f} s training")
        epoch, step, loss_sum = epoch + 1, 0, 0.0
        checkpoint()
    finish()


if __name__ == "__main__":
    main()
