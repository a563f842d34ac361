#!/usr/bin/python3
"""Make tailor's corpus of torchvision CNNs exported to ONNX the ways users do it.

Usage: make-corpus.py OUTDIR [--archs resnet18,...] [--force]

For each architecture NAME (random weights, 10 classes, input 1x3x64x64)
this writes, into OUTDIR:
  NAME.default.onnx   torch.onnx.export(model, x, path, opset_version=13) and
                      nothing else: constant folding on, BatchNormalization
                      folded into the Conv before it, repeated initializers
                      shared through Identity nodes, names as the exporter
                      chooses them ("input.1", "495", ...)
  NAME.untrained.onnx the same export of the model exactly as torchvision
                      builds it, BatchNorm untouched: every folded bias is
                      zero, and the exporter shares each set of equal
                      tensors through Identity nodes, as it does for anyone
                      who exports a fresh model to try it out
  NAME.preserve.onnx  the default with training=TrainingMode.PRESERVE: the model
                      is in eval mode, so BatchNormalization stays a node of
                      its own, in its inference form (one output)
  NAME.dynbatch.onnx  opset 13, input "input" and output "output" with a
                      symbolic batch axis "N"
  NAME.opset11.onnx   the default export at opset 11
  NAME.opset17.onnx   the default export at opset 17
  NAME.input.npy      a fixed float32 input (torch.manual_seed(1234))
  NAME.output.npy     PyTorch's float32 output for it, shape (1, 10)
  NAME.untrained.output.npy   the untrained model's output for it
and manifest.tsv, one row per .onnx file: its architecture, variant, opset,
batch axis, node counts by op type and size.

Weights: torch.manual_seed(0), weights=None, then (but for "untrained")
BatchNorm gets random running statistics and affine parameters so that
folding it into a conv is not an identity.  Conv and Linear biases keep
torchvision's initialisation: the zero biases of squeeze-excitation layers
are equal tensors that the exporter shares through Identity nodes even
then.

The side, 64, keeps the corpus quick to run while global pooling still
averages over space; every architecture is also checked to run at half of
it, the smallest resolution tailor offers.  An architecture is skipped when
all its files exist, are newer than this script and are in the manifest.
Needs Debian's python3-torch, python3-torchvision, python3-onnx and
python3-numpy (hence /usr/bin/python3 rather than whatever python3 is on
PATH).
"""

import argparse
import collections
import fcntl
import os
import sys
import time
import warnings

# numpy/onnx/torch are imported lazily (see _import_heavy) so that the
# "everything is up to date" path stays fast: tests call this every run.
np = onnx = torch = torchvision = None

ALL_ARCHS = ["resnet18", "resnet34", "mobilenet_v2", "mobilenet_v3_large",
             "efficientnet_b0", "regnet_x_400mf", "resnext50_32x4d"]
VARIANTS = ["default", "untrained", "preserve", "dynbatch", "opset11", "opset17"]
SIDE = 64
NUM_CLASSES = 10
MANIFEST = "manifest.tsv"
MANIFEST_COLUMNS = ["file", "arch", "variant", "opset", "batch", "nodes",
                    "Identity", "BatchNormalization", "Constant", "ops", "bytes"]


def _import_heavy():
    global np, onnx, torch, torchvision
    import numpy as np
    import onnx
    import torch
    import torchvision
    # The machine running the tests is small and shared; export is
    # single-threaded work anyway.
    torch.set_num_threads(1)


def export_kwargs(variant):
    """What a user passes to torch.onnx.export for each variant."""
    if variant in ("default", "untrained"):
        return {"opset_version": 13}
    if variant == "preserve":
        return {"opset_version": 13, "training": torch.onnx.TrainingMode.PRESERVE}
    if variant == "dynbatch":
        return {"opset_version": 13,
                "input_names": ["input"], "output_names": ["output"],
                "dynamic_axes": {"input": {0: "N"}, "output": {0: "N"}}}
    if variant == "opset11":
        return {"opset_version": 11}
    if variant == "opset17":
        return {"opset_version": 17}
    raise ValueError(variant)


def expected_opset(variant):
    return {"opset11": 11, "opset17": 17}.get(variant, 13)


def build_model(name, trained):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=NUM_CLASSES)
    model.eval()
    if not trained:
        return model
    # A fresh BatchNorm is the identity (mean 0, var 1, gamma 1, beta 0):
    # folded into a conv it changes nothing and every folded bias is zero.
    # Give it statistics a trained model would have.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c) * 0.1)
                m.running_var.copy_(torch.rand(c) + 0.5)
                m.weight.copy_(torch.rand(c) + 0.5)
                m.bias.copy_(torch.randn(c) * 0.1)
    return model


def fixed_input(side):
    torch.manual_seed(1234)
    return torch.randn(1, 3, side, side, dtype=torch.float32)


def onnx_path(outdir, name, variant):
    return os.path.join(outdir, f"{name}.{variant}.onnx")


def outputs_for(outdir, name):
    return ([onnx_path(outdir, name, v) for v in VARIANTS] +
            [os.path.join(outdir, name + s)
             for s in (".input.npy", ".output.npy", ".untrained.output.npy")])


def up_to_date(paths, ref_mtime):
    try:
        return all(os.path.getmtime(p) > ref_mtime for p in paths)
    except OSError:
        return False


def save_npy(path, array):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def describe(path, name, variant, g):
    """One manifest row for the model g loaded from path."""
    ops = collections.Counter(n.op_type for n in g.graph.node)
    opset = next(o.version for o in g.opset_import if o.domain in ("", "ai.onnx"))
    dim0 = g.graph.input[0].type.tensor_type.shape.dim[0]
    return {
        "file": os.path.basename(path), "arch": name, "variant": variant,
        "opset": str(opset), "batch": dim0.dim_param or str(dim0.dim_value),
        "nodes": str(sum(ops.values())), "Identity": str(ops.get("Identity", 0)),
        "BatchNormalization": str(ops.get("BatchNormalization", 0)),
        "Constant": str(ops.get("Constant", 0)),
        "ops": ",".join(f"{op}:{n}" for op, n in sorted(ops.items())),
        "bytes": str(os.path.getsize(path)),
    }


def check_export(g, name, variant):
    """Raises unless g is the export its variant promises."""
    where = f"{name}.{variant}"
    onnx.checker.check_model(g)
    opset = next(o.version for o in g.opset_import if o.domain in ("", "ai.onnx"))
    if opset != expected_opset(variant):
        raise RuntimeError(f"{where}: opset {opset}, expected {expected_opset(variant)}")
    bns = [n for n in g.graph.node if n.op_type == "BatchNormalization"]
    if variant == "preserve":
        if not bns:
            raise RuntimeError(f"{where}: PRESERVE folded BatchNormalization away")
        training = [n.name for n in bns if len(n.output) != 1]
        if training:
            raise RuntimeError(f"{where}: training-form BatchNormalization {training[:3]}")
    elif bns:
        raise RuntimeError(f"{where}: {len(bns)} BatchNormalization nodes were not folded")
    dim0 = g.graph.input[0].type.tensor_type.shape.dim[0]
    if variant == "dynbatch":
        if dim0.dim_param != "N" or g.graph.input[0].name != "input":
            raise RuntimeError(f"{where}: input is not 'input' with batch axis 'N'")
    elif dim0.dim_value != 1:
        raise RuntimeError(f"{where}: batch is not fixed at 1")


def export_arch(name, outdir):
    """Writes every file of one architecture; returns its manifest rows."""
    models = {True: build_model(name, True), False: build_model(name, False)}
    x = fixed_input(SIDE)
    y = {}
    for trained, model in models.items():
        with torch.no_grad():
            y[trained] = model(x).float().numpy()
            # tailor offers input sides down to 50 %: the architecture must
            # still reach its classifier with something left to pool.
            half = model(fixed_input(SIDE // 2)).float().numpy()
        if y[trained].shape != (1, NUM_CLASSES) or half.shape != (1, NUM_CLASSES):
            raise RuntimeError(f"{name}: output {y[trained].shape} at {SIDE}, "
                               f"{half.shape} at {SIDE // 2}")
        if not (np.isfinite(y[trained]).all() and np.isfinite(half).all()):
            raise RuntimeError(f"{name}: output is not finite")

    rows = []
    for variant in VARIANTS:
        model = models[variant != "untrained"]
        path = onnx_path(outdir, name, variant)
        tmp = f"{path}.{os.getpid()}.tmp"
        t0 = time.monotonic()
        # The exporter warns about things users see and ignore (constant
        # folding with training modes, dynamic axes); so does this script.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, x, tmp, **export_kwargs(variant))
        g = onnx.load(tmp)
        try:
            check_export(g, name, variant)
        except Exception:
            os.unlink(tmp)
            raise
        os.replace(tmp, path)
        row = describe(path, name, variant, g)
        rows.append(row)
        print(f"  {row['file']}: {int(row['bytes']) / 2**20:.1f} MiB, opset {row['opset']}, "
              f"{row['nodes']} nodes ({row['Identity']} Identity, "
              f"{row['BatchNormalization']} BatchNormalization) "
              f"in {time.monotonic() - t0:.1f}s", flush=True)

    save_npy(os.path.join(outdir, name + ".input.npy"), x.numpy().astype(np.float32))
    save_npy(os.path.join(outdir, name + ".output.npy"), y[True].astype(np.float32))
    save_npy(os.path.join(outdir, name + ".untrained.output.npy"),
             y[False].astype(np.float32))
    return rows


def read_manifest(path):
    """Rows of an existing manifest, or [] when there is none to trust."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    if not lines or lines[0].split("\t") != MANIFEST_COLUMNS:
        return []
    return [dict(zip(MANIFEST_COLUMNS, line.split("\t"))) for line in lines[1:]
            if len(line.split("\t")) == len(MANIFEST_COLUMNS)]


def write_manifest(path, rows):
    order = {(a, v): (i, j) for i, a in enumerate(ALL_ARCHS) for j, v in enumerate(VARIANTS)}
    rows = sorted(rows, key=lambda r: order[(r["arch"], r["variant"])])
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write("\t".join(MANIFEST_COLUMNS) + "\n")
        for r in rows:
            f.write("\t".join(r[c] for c in MANIFEST_COLUMNS) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--archs", default=",".join(ALL_ARCHS),
                    help="comma-separated subset of " + ",".join(ALL_ARCHS))
    ap.add_argument("--force", action="store_true",
                    help="export again even if the files are up to date")
    args = ap.parse_args()

    names = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = [a for a in names if a not in ALL_ARCHS]
    if unknown:
        ap.error("unknown architecture(s): " + ", ".join(unknown))

    os.makedirs(args.outdir, exist_ok=True)
    # The release and the sanitizer builds' tests may both call this on
    # one folder at once: one writer at a time, and the others then find
    # the corpus up to date.
    lock = open(os.path.join(args.outdir, ".corpus.lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    script_mtime = os.path.getmtime(os.path.abspath(__file__))
    manifest_path = os.path.join(args.outdir, MANIFEST)
    manifest = read_manifest(manifest_path) if up_to_date([manifest_path], script_mtime) else []
    listed = {r["arch"] for r in manifest if r["variant"] in VARIANTS}

    t_start = time.monotonic()
    made = 0
    for name in names:
        paths = outputs_for(args.outdir, name)
        if not args.force and name in listed and up_to_date(paths, script_mtime):
            print(f"{name}: up to date", flush=True)
            continue
        if torch is None:
            _import_heavy()
        t0 = time.monotonic()
        print(f"{name}: exporting", flush=True)
        rows = export_arch(name, args.outdir)
        manifest = [r for r in manifest if r["arch"] != name] + rows
        # Written after each architecture, so an interrupted run keeps
        # what it finished.
        write_manifest(manifest_path, manifest)
        made += 1
        print(f"{name}: done in {time.monotonic() - t0:.1f}s", flush=True)

    if made:
        total = sum(os.path.getsize(p) for n in names for p in outputs_for(args.outdir, n))
        print(f"corpus: {made} architecture(s) exported in {time.monotonic() - t_start:.1f}s; "
              f"{len(names)} architecture(s) take {total / 2**20:.0f} MiB in {args.outdir}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
