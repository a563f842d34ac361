#!/usr/bin/python3
"""Export torchvision CNNs (random weights) to ONNX for tailor's tests/benchmarks.

Usage: export-models.py OUTDIR [--models resnet18,resnet50,mobilenet_v2,mobilenet_v3_small]

For each model NAME this writes, into OUTDIR:
  NAME.onnx         opset 13, input "input" 1x3x224x224, output "output" 1x1000,
                    BatchNormalization kept as separate (inference-form) nodes
  NAME.input.npy    fixed float32 input (torch.manual_seed(1234); randn(1,3,224,224))
  NAME.output.npy   PyTorch's float32 output for that input, shape (1, 1000)

Weights are random (weights=None, torch.manual_seed(0)); BatchNorm layers get
non-trivial statistics so that BN is not an identity. A model is skipped when
all three files exist and are newer than this script. Needs Debian's
python3-torch, python3-torchvision, python3-onnx, python3-numpy (hence
/usr/bin/python3 rather than whatever python3 is on PATH).
"""

import argparse
import collections
import fcntl
import os
import sys
import time
import warnings

# numpy/onnx/torch are imported lazily (see _import_heavy) so that the
# "everything is up to date" path stays fast.
np = onnx = torch = torchvision = None

ALL_MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small"]
OPSET = 13
INPUT_SHAPE = (1, 3, 224, 224)


def _import_heavy():
    global np, onnx, torch, torchvision
    import numpy as np
    import onnx
    import torch
    import torchvision
    torch.set_num_threads(2)


def build_model(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    model.eval()
    # Random init leaves BN as identity (mean 0, var 1, gamma 1, beta 0) which
    # would make a BN implementation untestable: give it real statistics.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c) * 0.1)
                m.running_var.copy_(torch.rand(c) + 0.5)
                m.weight.copy_(torch.rand(c) + 0.5)
                m.bias.copy_(torch.randn(c) * 0.1)
        # torchvision zero-initialises some biases (MobileNetV3's SE convs,
        # the MobileNet classifiers). Identical all-zero tensors get
        # de-duplicated by the exporter into Identity nodes, and zero biases
        # test nothing, so give them small random values too.
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) \
                    and m.bias is not None and not m.bias.any():
                m.bias.copy_(torch.randn(m.bias.shape) * 0.1)
    return model


def inline_identities(g):
    """Replace Identity nodes fed by an initializer with a copy of it."""
    inits = {t.name: t for t in g.graph.initializer}
    keep = []
    for n in g.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            g.graph.initializer.append(t)
            inits[t.name] = t
        else:
            keep.append(n)
    if len(keep) != len(g.graph.node):
        del g.graph.node[:]
        g.graph.node.extend(keep)
        return True
    return False


def fixed_input():
    torch.manual_seed(1234)
    return torch.randn(*INPUT_SHAPE, dtype=torch.float32)


def outputs_for(outdir, name):
    return [os.path.join(outdir, name + suffix)
            for suffix in (".onnx", ".input.npy", ".output.npy")]


def up_to_date(paths, ref_mtime):
    try:
        return all(os.path.getmtime(p) > ref_mtime for p in paths)
    except OSError:
        return False


def save_npy(path, array):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def export_one(name, outdir):
    onnx_path, in_path, out_path = outputs_for(outdir, name)
    model = build_model(name)
    x = fixed_input()

    with torch.no_grad():
        y = model(x).float().numpy()
    assert y.shape == (1, 1000), y.shape

    # TrainingMode.PRESERVE with the model in eval mode exports BN as the
    # inference-form BatchNormalization node (1 output). The default
    # TrainingMode.EVAL folds BN into the preceding Conv regardless of
    # do_constant_folding, which our engine does not want.
    tmp = f"{onnx_path}.{os.getpid()}.tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, x, tmp,
            export_params=True,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=True,
        )

    # Sanity-check the result before publishing it.
    g = onnx.load(tmp)
    if inline_identities(g):
        onnx.save(g, tmp)
    onnx.checker.check_model(g)
    ops = collections.Counter(n.op_type for n in g.graph.node)
    bns = [n for n in g.graph.node if n.op_type == "BatchNormalization"]
    if not bns:
        os.unlink(tmp)
        raise RuntimeError(f"{name}: exporter folded BatchNormalization away")
    bad = [n.name for n in bns if len(n.output) != 1]
    if bad:
        os.unlink(tmp)
        raise RuntimeError(f"{name}: training-form BatchNormalization {bad[:3]}")
    os.replace(tmp, onnx_path)

    save_npy(in_path, x.numpy().astype(np.float32))
    save_npy(out_path, y.astype(np.float32))
    return ops


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--models", default=",".join(ALL_MODELS),
                    help="comma-separated subset of " + ",".join(ALL_MODELS))
    ap.add_argument("--force", action="store_true",
                    help="re-export even if the outputs are up to date")
    args = ap.parse_args()

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in ALL_MODELS]
    if unknown:
        ap.error("unknown model(s): " + ", ".join(unknown))

    os.makedirs(args.outdir, exist_ok=True)
    # Tests that need the models run in parallel under meson and each may
    # call this script: one exporter at a time per folder, and the others
    # then find the models up to date.
    lock = open(os.path.join(args.outdir, ".export.lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    script_mtime = os.path.getmtime(os.path.abspath(__file__))

    for name in names:
        paths = outputs_for(args.outdir, name)
        if not args.force and up_to_date(paths, script_mtime):
            print(f"{name}: up to date ({paths[0]})", flush=True)
            continue
        if torch is None:
            _import_heavy()
        t0 = time.monotonic()
        ops = export_one(name, args.outdir)
        size = os.path.getsize(paths[0]) / 2**20
        print(f"{name}: exported {paths[0]} ({size:.1f} MiB, "
              f"{sum(ops.values())} nodes, "
              f"{ops.get('BatchNormalization', 0)} BatchNormalization) "
              f"in {time.monotonic() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
