#!/usr/bin/python3
"""Write Fashion-MNIST calibration and validation sets as .npy files.

    scripts/make-calib.py OUTDIR [--calib N] [--seed S] [--side S --channels C]

OUTDIR/fmnist-calib-x.npy  N images from the train split (uint8, N x 1 x 28 x 28)
OUTDIR/fmnist-calib-y.npy  their labels (int64)
OUTDIR/fmnist-val-x.npy    the 10 000 images of the test split
OUTDIR/fmnist-val-y.npy    their labels

Images stay uint8: tailor scales them by 1/255, as the bundled model was
trained.  With --side and --channels, for a model whose input is larger
(models/fmnist-mobilenet_v2.onnx: --side 176 --channels 3), the same
images are upsampled to S x S (bilinear with half-pixel centres, as
PyTorch's interpolate with align_corners=False), rounded back to uint8 and
repeated into C channels, into fmnist-CxS-calib-x.npy and so on (labels
alongside, the same as the 28-pixel files').  scripts/train-edge.py trains
on images made by upsample() below, so a model trained there sees on the
box what it saw in training.  Needs Debian's dataset-fashion-mnist and
python3-numpy.
"""
import argparse
import gzip
import os

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"
SIDE = 28


def load_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def bilinear_matrix(n_in, n_out):
    """(n_out, n_in) float32: one axis of a bilinear resize with half-pixel
    centres, source coordinate (i + 0.5) * n_in / n_out - 0.5 clamped at 0,
    as PyTorch's interpolate(align_corners=False) and tailor's resize."""
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = min(int(src), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        lam = src - lo
        m[i, lo] += 1.0 - lam
        m[i, hi] += lam
    return m


def upsample(images, side, chunk=1000):
    """uint8 images (N, H, W) resized to (N, side, side), rounded to uint8."""
    n, h, w = images.shape
    rows, cols = bilinear_matrix(h, side), bilinear_matrix(w, side).T
    out = np.empty((n, side, side), np.uint8)
    for i in range(0, n, chunk):
        x = rows @ images[i:i + chunk].astype(np.float32) @ cols
        out[i:i + chunk] = np.clip(np.rint(x), 0, 255)
    return out


def as_input(images, side, channels):
    """uint8 images (N, 28, 28) as a model with input (N, channels, side, side) takes them."""
    if side != images.shape[-1]:
        images = upsample(images, side)
    return np.ascontiguousarray(np.repeat(images[:, None], channels, axis=1))


def save(path, array):
    tmp = path + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--calib", type=int, default=5000, help="calibration images (default 5000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--side", type=int, default=SIDE, help="image side (default 28)")
    ap.add_argument("--channels", type=int, default=1, help="channels (default 1)")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    name = "fmnist"
    if (args.side, args.channels) != (SIDE, 1):
        name = f"fmnist-{args.channels}x{args.side}"
    xtr = load_idx("train-images-idx3-ubyte.gz")
    ytr = load_idx("train-labels-idx1-ubyte.gz")
    pick = np.random.default_rng(args.seed).permutation(len(xtr))[:args.calib]
    save(os.path.join(args.outdir, f"{name}-calib-x.npy"),
         as_input(xtr[pick], args.side, args.channels))
    save(os.path.join(args.outdir, f"{name}-calib-y.npy"), ytr[pick].astype(np.int64))
    xte = load_idx("t10k-images-idx3-ubyte.gz")
    yte = load_idx("t10k-labels-idx1-ubyte.gz")
    save(os.path.join(args.outdir, f"{name}-val-x.npy"), as_input(xte, args.side, args.channels))
    save(os.path.join(args.outdir, f"{name}-val-y.npy"), yte.astype(np.int64))
    print(f"wrote {args.calib} calibration and {len(xte)} validation images "
          f"({args.channels} x {args.side} x {args.side}) to {args.outdir}")


if __name__ == "__main__":
    main()
