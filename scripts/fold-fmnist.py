#!/usr/bin/python3
"""Re-export the bundled SuperNet the way a user's export would look: with
BatchNormalization folded into the convolutions.

    scripts/fold-fmnist.py [--src models/fmnist.onnx] [--out models/fmnist-folded.onnx]
                           [--images 256] [--no-engine]

models/fmnist.onnx keeps BatchNormalization as nodes (it was exported with
TrainingMode.PRESERVE), which is what lets tailor recalibrate a subnet's
statistics.  An operator's own model comes out of `torch.onnx.export` with
its defaults, where constant folding merges every eval-mode BN into the
weights and bias of the Conv before it.  To test tailor on such a file
without training another network, this script rebuilds FmnistNet (the class
in scripts/train-fmnist.py) from the ONNX file's initializers -- BatchNorm
parameters and running statistics included -- and exports it again with
the defaults (opset 13, the same input/output names and dynamic batch).

Checks, on the first --images test images (pixels / 255):
  - the rebuilt PyTorch model reproduces the source file (both files are
    evaluated by a small interpreter of their few ops, written here in
    torch, since Debian has no onnxruntime for Python);
  - the folded file reproduces the PyTorch model;
  - tailor's engine (`tailorctl run`) gives the same logits for both files,
    for the whole network and for cut subnets (without recalibration a BN is
    a fixed per-channel affine map, so slicing it commutes with folding);
  - `tailorctl inspect` finds the same subnet space in both;
  - the folded file has no BatchNormalization node.
"Same" is max |a - b| / max |a| over each image's logits <= 1e-4.  A report
of what the folded file holds (ops, initializers, aliases, duplicates) goes
to stdout.

Needs Debian's python3-torch, python3-onnx and dataset-fashion-mnist; the
engine checks need build/tailorctl/tailorctl (environment: TAILORCTL).
"""
import argparse
import collections
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAILORCTL = os.environ.get("TAILORCTL", os.path.join(ROOT, "build/tailorctl/tailorctl"))
TOLERANCE = 1e-4
# Cut subnets run through the engine on both files: width, depth, resolution
# and a mix, so that every elastic dimension is exercised.
ENGINE_SUBNETS = ["r=28 d=2,2,2 w=.5,.5,.5", "r=28 d=1,0,1 w=1,1,1",
                  "r=21 d=1,1,1 w=.5,.5,.5", "r=14 d=0,0,0 w=.25,.25,.25"]


def log(msg):
    print(f"fold-fmnist: {msg}", file=sys.stderr, flush=True)


def fail(msg):
    sys.exit(f"fold-fmnist: {msg}")


def load_trainer():
    """scripts/train-fmnist.py as a module (its name is not an identifier)."""
    path = os.path.join(ROOT, "scripts/train-fmnist.py")
    spec = importlib.util.spec_from_file_location("train_fmnist", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def initializers(model):
    """name -> array, with the aliases torch's exporter makes resolved: it
    stores two identical initializers once and gives the second name by an
    Identity node (in fmnist.onnx, a projection BN's bias that training
    kept equal to the block's bn2 bias)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    aliases = {}
    for n in model.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            inits[n.output[0]] = inits[n.input[0]]
            aliases[n.output[0]] = n.input[0]
    return inits, aliases


def rebuild(trainer, src):
    """FmnistNet in eval mode with the state of the ONNX file src."""
    m = onnx.load(src)
    inits, aliases = initializers(m)
    net = trainer.FmnistNet()
    state = net.state_dict()
    new = {}
    for name, t in state.items():
        if name.endswith("num_batches_tracked"):
            new[name] = t  # training bookkeeping; not exported, not used in eval
            continue
        if name not in inits:
            fail(f"{src}: no initializer for {name}")
        a = inits[name]
        if tuple(a.shape) != tuple(t.shape):
            fail(f"{src}: {name} is {tuple(a.shape)}, FmnistNet has {tuple(t.shape)}")
        new[name] = torch.from_numpy(a.copy())
    unused = sorted(set(inits) - set(new))
    if unused:
        fail(f"{src}: initializers FmnistNet does not have: {', '.join(unused)}")
    net.load_state_dict(new, strict=True)
    return net.eval(), aliases


def export_folded(net, path):
    """The export a user would write: torch.onnx.export's defaults (constant
    folding on, so eval-mode BN goes into the Conv)."""
    x = torch.zeros(1, 1, 28, 28)
    tmp = path + ".tmp"
    torch.onnx.export(net.eval(), x, tmp, opset_version=13, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    m = onnx.load(tmp)
    onnx.checker.check_model(m)
    os.replace(tmp, path)
    return m


# ----------------------------------------------------------- a tiny ONNX runner

def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def run_onnx(model, x):
    """Evaluates model on x with torch, for the ops these two files use."""
    env = {k: torch.from_numpy(v.copy()) for k, v in initializers(model)[0].items()}
    env[model.graph.input[0].name] = x
    for n in model.graph.node:
        a = attrs(n)
        i = [env[name] if name else None for name in n.input]
        if n.op_type == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            if pads[:2] != pads[2:]:
                fail(f"node {n.name}: asymmetric pads {pads}")
            y = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, a.get("strides", 1),
                         pads[:2], a.get("dilations", 1), a.get("group", 1))
        elif n.op_type == "BatchNormalization":
            y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))
        elif n.op_type == "Relu":
            y = F.relu(i[0])
        elif n.op_type == "Add":
            y = i[0] + i[1]
        elif n.op_type == "Identity":
            y = i[0]
        elif n.op_type == "GlobalAveragePool":
            y = i[0].mean(dim=(2, 3), keepdim=True)
        elif n.op_type == "Flatten":
            y = i[0].flatten(a.get("axis", 1))
        elif n.op_type == "Gemm":
            A = i[0].t() if a.get("transA", 0) else i[0]
            B = i[1].t() if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(i) > 2:
                y = y + a.get("beta", 1.0) * i[2]
        else:
            fail(f"node {n.name}: op {n.op_type} is not in this script's runner")
        env[n.output[0]] = y
    return env[model.graph.output[0].name]


def rel_error(ref, got):
    """Worst over images of max |ref - got| / max |ref| (per image)."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    scale = np.abs(ref).max(axis=1)
    return float((np.abs(ref - got).max(axis=1) / scale).max())


def check(what, ref, got):
    e = rel_error(ref, got)
    agree = float((np.argmax(ref, 1) == np.argmax(got, 1)).mean())
    verdict = "ok" if e <= TOLERANCE else "MISMATCH"
    print(f"- {what}: max relative difference {e:.2e}, same top-1 on {100 * agree:.1f} % "
          f"of images ({verdict})")
    return e <= TOLERANCE


# ----------------------------------------------------------- tailor's engine

def ctl(*args):
    r = subprocess.run([TAILORCTL, *args], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"tailorctl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def engine_logits(model, x_npy, tmp, subnet=None):
    out = os.path.join(tmp, "out")
    args = ["run", model, x_npy, "--out", out]
    if subnet:
        args += ["--subnet", subnet]
    ctl(*args)
    return np.load(os.path.join(out, "logits.npy"))


# ----------------------------------------------------------- report

def describe(m, path):
    """What the folded file holds, as Markdown lines."""
    ops = collections.Counter(n.op_type for n in m.graph.node)
    inits = list(m.graph.initializer)
    used = {name for n in m.graph.node for name in n.input}
    by_hash = collections.defaultdict(list)
    for i in inits:
        by_hash[hashlib.sha256(i.raw_data or numpy_helper.to_array(i).tobytes()).hexdigest()
                + str(list(i.dims))].append(i.name)
    dups = [names for names in by_hash.values() if len(names) > 1]
    idents = [n for n in m.graph.node if n.op_type == "Identity"]
    params = sum(int(np.prod(i.dims)) for i in inits)
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    with_bias = sum(1 for n in convs if len(n.input) > 2 and n.input[2])
    lines = [
        f"- {os.path.relpath(path, ROOT)}: {os.path.getsize(path)} bytes, opset "
        f"{m.opset_import[0].version}, producer {m.producer_name} {m.producer_version}",
        "- nodes: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())),
        f"- Conv with a bias input (the folded BN's shift): {with_bias} of {len(convs)}",
        f"- initializers: {len(inits)} ({params} values); unused: "
        f"{sum(1 for i in inits if i.name not in used)}; byte-identical groups: {len(dups)}"
        + (" (" + "; ".join(", ".join(d) for d in dups) + ")" if dups else ""),
        f"- Identity nodes: {len(idents)}"
        + (" (" + "; ".join(f"{n.input[0]} -> {n.output[0]}" for n in idents) + ")"
           if idents else ""),
        "- initializer names: " + ", ".join(i.name for i in inits[:6])
        + (", ..." if len(inits) > 6 else ""),
        "- graph inputs: " + ", ".join(i.name for i in m.graph.input)
        + "; outputs: " + ", ".join(o.name for o in m.graph.output),
    ]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=os.path.join(ROOT, "models/fmnist.onnx"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models/fmnist-folded.onnx"))
    ap.add_argument("--images", type=int, default=256, help="test images to compare on")
    ap.add_argument("--no-engine", action="store_true", help="skip the tailorctl checks")
    args = ap.parse_args()
    torch.set_num_threads(2)
    trainer = load_trainer()

    net, aliases = rebuild(trainer, args.src)
    log(f"rebuilt FmnistNet from {args.src}"
        + (f" ({len(aliases)} aliased initializers: "
           + ", ".join(f"{k} = {v}" for k, v in aliases.items()) + ")" if aliases else ""))
    folded = export_folded(net, args.out)
    log(f"wrote {args.out}")
    src = onnx.load(args.src)

    xte = trainer.load_idx("t10k-images-idx3-ubyte.gz")[:args.images]
    x = torch.from_numpy(xte.astype(np.float32) / 255.0).unsqueeze(1).contiguous()
    with torch.no_grad():
        ref = net(x).numpy()
        kept = run_onnx(src, x).numpy()
        fold = run_onnx(folded, x).numpy()

    print(f"Command: `scripts/fold-fmnist.py --images {args.images}`\n")
    print("What the folded file holds:\n")
    print("\n".join(describe(folded, args.out)))
    print(f"\nChecks on the first {args.images} test images (max |a - b| / max |a| per "
          f"image, worst image; tolerance {TOLERANCE:g}):\n")
    ok = "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    print(f"- BatchNormalization nodes in the folded file: "
          f"{sum(n.op_type == 'BatchNormalization' for n in folded.graph.node)}")
    ok &= check("PyTorch FmnistNet vs the BN-kept file (torch runner)", kept, ref)
    ok &= check("PyTorch FmnistNet vs the folded file (torch runner)", ref, fold)
    if not args.no_engine:
        with tempfile.TemporaryDirectory(prefix="tailor-fold-") as tmp:
            x_npy = os.path.join(tmp, "x.npy")
            np.save(x_npy, x.numpy())
            e_kept = engine_logits(args.src, x_npy, tmp)
            e_fold = engine_logits(args.out, x_npy, tmp)
            ok &= check("PyTorch FmnistNet vs tailor on the BN-kept file", ref, e_kept)
            ok &= check("PyTorch FmnistNet vs tailor on the folded file", ref, e_fold)
            ok &= check("tailor: BN-kept vs folded file, whole network", e_kept, e_fold)
            for s in ENGINE_SUBNETS:
                ok &= check(f"tailor: BN-kept vs folded file, `{s}` (model's statistics)",
                            engine_logits(args.src, x_npy, tmp, s),
                            engine_logits(args.out, x_npy, tmp, s))
        # Parameters are compared apart: tailor counts conv and classifier
        # weights, not BN's, so the folded file's conv biases (one per BN
        # channel) add to its count while the space itself stays the same.
        space, params = [], []
        for path in (args.src, args.out):
            info = json.loads(ctl("inspect", path, "--json"))
            space.append({k: info[k] for k in ("stages", "widths", "resolutions", "space_size",
                                               "elastic")}
                         | {"groups": [(g["channels"], g["stage"]) for g in info["width_groups"]],
                            "macs": (info["largest"]["macs"], info["smallest"]["macs"])})
            params.append(info["largest"]["params"])
        same = space[0] == space[1]
        ok &= same
        print(f"- tailorctl inspect: {'the same' if same else 'a DIFFERENT'} subnet space "
              f"({space[1]['space_size']:.0f} subnets, {len(space[1]['groups'])} width groups, "
              f"MACs of the extremes {'equal' if same else 'below'}); parameters of the largest "
              f"{params[0]} BN-kept, {params[1]} folded (+{params[1] - params[0]}: the conv "
              f"biases that hold BN's shift)")
        if not same:
            print(json.dumps(space, indent=1))
    if not ok:
        fail("the folded file does not reproduce the BN-kept model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
