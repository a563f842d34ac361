#!/usr/bin/python3
"""Write Fashion-MNIST calibration and validation sets as .npy files.

    scripts/make-calib.py OUTDIR [--calib N] [--seed S]

OUTDIR/fmnist-calib-x.npy  N images from the train split (uint8, N x 1 x 28 x 28)
OUTDIR/fmnist-calib-y.npy  their labels (int64)
OUTDIR/fmnist-val-x.npy    the 10 000 images of the test split
OUTDIR/fmnist-val-y.npy    their labels

Images stay uint8: tailor scales them by 1/255, as the bundled model was
trained.  Needs Debian's dataset-fashion-mnist and python3-numpy.
"""
import argparse
import gzip
import os

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"


def load_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def save(path, array):
    tmp = path + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--calib", type=int, default=5000, help="calibration images (default 5000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    xtr = load_idx("train-images-idx3-ubyte.gz")
    ytr = load_idx("train-labels-idx1-ubyte.gz")
    pick = np.random.default_rng(args.seed).permutation(len(xtr))[:args.calib]
    save(os.path.join(args.outdir, "fmnist-calib-x.npy"), np.ascontiguousarray(xtr[pick][:, None]))
    save(os.path.join(args.outdir, "fmnist-calib-y.npy"), ytr[pick].astype(np.int64))
    xte = load_idx("t10k-images-idx3-ubyte.gz")
    yte = load_idx("t10k-labels-idx1-ubyte.gz")
    save(os.path.join(args.outdir, "fmnist-val-x.npy"), np.ascontiguousarray(xte[:, None]))
    save(os.path.join(args.outdir, "fmnist-val-y.npy"), yte.astype(np.int64))
    print(f"wrote {args.calib} calibration and {len(xte)} validation images to {args.outdir}")


if __name__ == "__main__":
    main()
