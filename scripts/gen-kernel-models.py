#!/usr/bin/python3
"""Write the small ONNX graphs that tests/test_kernels.c runs through fast and
reference plans, or one conv graph for measuring a kernel.

Usage: gen-kernel-models.py OUTDIR
       gen-kernel-models.py OUTDIR --conv NAME c=64,h=56,w=56,m=64,k=3,s=1,p=1,...

The first form writes every case below as OUTDIR/<case>.onnx (opset 13,
random weights from a fixed seed, BatchNormalization with non-trivial
statistics) and OUTDIR/STAMP; it does nothing when STAMP is newer than this
script.  Graph inputs are float32 with fixed shapes; the test fills them
with random data.  The second form writes OUTDIR/NAME.onnx for one conv
(keys: c h w m k kh kw s sh sw p pt pl pb pr d g bias bn act res).

Needs Debian's python3-onnx and python3-numpy (hence /usr/bin/python3).
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


class Graph:
    """A tiny builder: named values, nodes, initializers."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs = [], [], []
        self.n = 0

    def name(self, base):
        self.n += 1
        return "%s_%d" % (base, self.n)

    def input(self, shape, name="x"):
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def const(self, arr, base="w"):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def node(self, op, ins, n_out=1, **attrs):
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, name=self.name(op), **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, c, m, kh=3, kw=3, s=(1, 1), pads=(1, 1, 1, 1), d=(1, 1), g=1,
             bias=False):
        w = self.rng.standard_normal((m, c // g, kh, kw)) * np.sqrt(2.0 / (c // g * kh * kw))
        ins = [x, self.const(w)]
        if bias:
            ins.append(self.const(self.rng.standard_normal(m) * 0.1, "b"))
        return self.node("Conv", ins, kernel_shape=[kh, kw], strides=list(s),
                         pads=list(pads), dilations=list(d), group=g)

    def bn(self, x, c):
        r = self.rng
        ins = [x, self.const(r.random(c) + 0.5, "gamma"),
               self.const(r.standard_normal(c) * 0.1, "beta"),
               self.const(r.standard_normal(c) * 0.1, "mean"),
               self.const(r.random(c) + 0.5, "var")]
        return self.node("BatchNormalization", ins, epsilon=1e-5)

    def act(self, x, kind):
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", [x])
        if kind == "clip6":
            return self.node("Clip", [x, self.const(0.0, "lo"), self.const(6.0, "hi")])
        if kind == "hardswish":
            return self.node("HardSwish", [x])
        if kind == "hardsigmoid":
            return self.node("HardSigmoid", [x], alpha=0.2, beta=0.5)
        if kind == "sigmoid":
            return self.node("Sigmoid", [x])
        if kind == "hswish_pattern":  # what torchvision exports for Hardswish
            hs = self.node("HardSigmoid", [x], alpha=1.0 / 6, beta=0.5)
            return self.node("Mul", [x, hs])
        if kind == "hswish_pattern_swapped":
            hs = self.node("HardSigmoid", [x], alpha=1.0 / 6, beta=0.5)
            return self.node("Mul", [hs, x])
        raise ValueError(kind)

    def save(self, path, outs, out_shapes=None):
        outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs]
        graph = helper.make_graph(self.nodes, os.path.basename(path), self.inputs, outputs,
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.save(model, path)


def out_size(n, k, s, p0, p1, d):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


def conv_model(path, seed, c, h, w, m, kh=3, kw=3, sh=1, sw=1, pt=None, pl=None, pb=None,
               pr=None, dh=1, dw=1, g=1, bias=False, bn=True, act=None, res=False,
               act2=None):
    """Conv [+BN] [+act] [+Add(second input)] [+act2]."""
    pt = (kh // 2) * dh if pt is None else pt
    pl = (kw // 2) * dw if pl is None else pl
    pb = pt if pb is None else pb
    pr = pl if pr is None else pr
    G = Graph(seed)
    x = G.input([1, c, h, w])
    y = G.conv(x, c, m, kh, kw, (sh, sw), (pt, pl, pb, pr), (dh, dw), g, bias)
    if bn:
        y = G.bn(y, m)
    y = G.act(y, act)
    if res:
        oh, ow = out_size(h, kh, sh, pt, pb, dh), out_size(w, kw, sw, pl, pr, dw)
        r = G.input([1, m, oh, ow], "res")
        y = G.node("Add", [y, r])
        y = G.act(y, act2)
    G.save(path, [y])


def conv_cases():
    """name -> kwargs of conv_model."""
    C = {}
    # Implicit GEMM: odd sizes, channel counts not multiple of any tile.
    C["conv3x3_s1_odd_sizes_bn_relu"] = dict(c=13, h=11, w=9, m=17, act="relu")
    C["conv3x3_s1_c64_28x28_bn_add_relu"] = dict(c=64, h=28, w=28, m=64, res=True,
                                                  act2="relu")
    C["conv3x3_s1_c35_13x17_bias"] = dict(c=35, h=13, w=17, m=37, bn=False, bias=True)
    C["conv3x3_s1_7x7_c96"] = dict(c=96, h=7, w=7, m=40, act="relu")
    C["conv3x3_s1_large_k_blocks"] = dict(c=300, h=9, w=10, m=24, act="clip6")
    C["conv3x3_s2_p1_bias_clip"] = dict(c=8, h=15, w=15, m=16, sh=2, sw=2, bias=True, act="clip6")
    C["conv3x3_s2_even_input"] = dict(c=16, h=28, w=28, m=24, sh=2, sw=2, act="relu")
    C["conv7x7_s2_p3_stem"] = dict(c=3, h=33, w=31, m=16, kh=7, kw=7, sh=2, sw=2, act="relu")
    C["conv1x1_s1_tail_add_relu"] = dict(c=20, h=7, w=7, m=40, kh=1, kw=1, res=True, act2="relu")
    C["conv1x1_s1_many_blocks"] = dict(c=16, h=40, w=40, m=24, kh=1, kw=1, act="clip6")
    C["conv1x1_s1_k300"] = dict(c=300, h=6, w=11, m=20, kh=1, kw=1)
    C["conv1x1_s2_downsample"] = dict(c=16, h=14, w=13, m=32, kh=1, kw=1, sh=2, sw=2)
    C["conv1x1_p1_padded"] = dict(c=4, h=5, w=6, m=8, kh=1, kw=1, pt=1, pl=1)
    C["conv3x3_dilation2"] = dict(c=8, h=12, w=12, m=8, dh=2, dw=2)
    C["conv3x3_asymmetric_pads"] = dict(c=6, h=10, w=9, m=10, pt=0, pl=1, pb=2, pr=0)
    C["conv3x3_groups2"] = dict(c=8, h=9, w=9, m=12, g=2, act="relu")
    C["conv5x3_stride2x1"] = dict(c=5, h=13, w=11, m=7, kh=5, kw=3, sh=2, sw=1)
    C["conv3x3_no_pad_valid"] = dict(c=7, h=8, w=8, m=9, pt=0, pl=0)
    C["conv3x3_hardswish"] = dict(c=8, h=10, w=10, m=16, act="hardswish")
    C["conv3x3_sigmoid"] = dict(c=8, h=6, w=6, m=8, act="sigmoid")
    C["conv3x3_hswish_pattern"] = dict(c=8, h=10, w=10, m=16, act="hswish_pattern")
    C["conv1x1_hswish_pattern_swapped"] = dict(c=8, h=10, w=10, m=16, kh=1, kw=1,
                                               act="hswish_pattern_swapped")
    # Winograd-sized 3x3 stride-1 convs.
    C["winograd_3x3_56x56_c64"] = dict(c=64, h=56, w=56, m=64, act="relu")
    C["winograd_3x3_14x14_c256_res"] = dict(c=256, h=14, w=14, m=256, res=True, act2="relu")
    C["winograd_3x3_odd_15x13_c20"] = dict(c=20, h=15, w=13, m=20)
    # Depthwise.
    C["depthwise_3x3_stride1_clip"] = dict(c=24, h=17, w=19, m=24, g=24, act="clip6")
    C["depthwise_3x3_stride2_relu"] = dict(c=16, h=20, w=21, m=16, g=16, sh=2, sw=2, act="relu")
    C["depthwise_5x5_stride2"] = dict(c=12, h=15, w=13, m=12, g=12, kh=5, kw=5, sh=2, sw=2)
    C["depthwise_5x5_stride1_hswish_pattern"] = dict(c=10, h=14, w=14, m=10, g=10, kh=5, kw=5,
                                                     act="hswish_pattern")
    C["depthwise_7x7_stride1"] = dict(c=8, h=9, w=23, m=8, g=8, kh=7, kw=7)
    C["depthwise_3x3_dilation2"] = dict(c=8, h=12, w=11, m=8, g=8, dh=2, dw=2)
    C["depthwise_channel_multiplier2"] = dict(c=8, h=9, w=9, m=16, g=8, act="relu")
    C["depthwise_asymmetric_pads"] = dict(c=8, h=9, w=10, m=8, g=8, pt=0, pl=2, pb=1, pr=0)
    C["depthwise_3x3_residual"] = dict(c=16, h=8, w=8, m=16, g=16, res=True, act2="relu")
    C["depthwise_3x3_tiny_1x1_input"] = dict(c=8, h=1, w=1, m=8, g=8)
    C["depthwise_3x3_stride3"] = dict(c=4, h=16, w=17, m=4, g=4, sh=3, sw=3)
    C["depthwise_13x13_large_kernel"] = dict(c=3, h=20, w=20, m=3, g=3, kh=13, kw=13)
    return C


def expand_dw_model(path, seed, c, h, w, m, k, s, act, dw_bias=False):
    """1x1 expansion + BN + act, then depthwise k x k + (BN or bias) + act:
    an inverted-residual block's first half, large enough to be fused."""
    G = Graph(seed)
    x = G.input([1, c, h, w])
    y = G.act(G.bn(G.conv(x, c, m, 1, 1, pads=(0, 0, 0, 0)), m), act)
    p = k // 2
    y = G.conv(y, m, m, k, k, (s, s), (p, p, p, p), g=m, bias=dw_bias)
    if not dw_bias:
        y = G.bn(y, m)
    G.save(path, [G.act(y, act)])


def other_cases(out):
    expand_dw_model(os.path.join(out, "expand_dw_3x3_stride2_fuses.onnx"), 19, c=8, h=91, w=93,
                    m=48, k=3, s=2, act="clip6")
    expand_dw_model(os.path.join(out, "expand_dw_5x5_hswish_fuses.onnx"), 20, c=8, h=103,
                    w=99, m=40, k=5, s=1, act="hswish_pattern")
    expand_dw_model(os.path.join(out, "expand_dw_3x3_bias_fuses.onnx"), 21, c=6, h=83, w=79,
                    m=64, k=3, s=1, act="relu", dw_bias=True)

    # SE block as torchvision's MobileNetV3 exports it.
    G = Graph(11)
    x = G.input([1, 16, 9, 9])
    s = G.node("GlobalAveragePool", [x])
    s = G.act(G.conv(s, 16, 8, 1, 1, pads=(0, 0, 0, 0), bias=True), "relu")
    s = G.node("HardSigmoid", [G.conv(s, 8, 16, 1, 1, pads=(0, 0, 0, 0), bias=True)],
               alpha=1.0 / 6, beta=0.5)
    G.save(os.path.join(out, "se_block.onnx"), [G.node("Mul", [x, s])])

    # A conv whose output feeds the hardswish pattern and something else:
    # it must not fuse, and must still be right.
    G = Graph(12)
    x = G.input([1, 8, 10, 10])
    y = G.bn(G.conv(x, 8, 8), 8)
    hs = G.node("HardSigmoid", [y], alpha=1.0 / 6, beta=0.5)
    z = G.node("Mul", [y, hs])
    G.save(os.path.join(out, "hswish_pattern_shared_input.onnx"), [G.node("Add", [z, y])])

    # A HardSigmoid that is not 1/6, 1/2 must not become a hardswish.
    G = Graph(13)
    x = G.input([1, 8, 10, 10])
    y = G.bn(G.conv(x, 8, 8), 8)
    hs = G.node("HardSigmoid", [y], alpha=0.2, beta=0.5)
    G.save(os.path.join(out, "hardsigmoid_mul_not_hswish.onnx"), [G.node("Mul", [y, hs])])

    # Standalone activations.
    for kind in ("relu", "clip6", "hardswish", "hardsigmoid", "sigmoid"):
        G = Graph(14)
        x = G.input([1, 3, 17, 19])
        G.save(os.path.join(out, "unary_%s.onnx" % kind), [G.act(x, kind)])

    # Pools.
    pools = {
        "maxpool_3x3_s2_p1": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        "maxpool_2x2_s2": dict(kernel_shape=[2, 2], strides=[2, 2]),
        "maxpool_3x3_s1_p1": dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        "maxpool_3x3_s2_ceil": dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        "maxpool_3x2_s1x2_asym": dict(kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0]),
        "maxpool_3x3_dilation2": dict(kernel_shape=[3, 3], strides=[1, 1], dilations=[2, 2]),
        "maxpool_5x5_s3_p2": dict(kernel_shape=[5, 5], strides=[3, 3], pads=[2, 2, 2, 2]),
    }
    for name, attrs in pools.items():
        for (h, w) in ((17, 17), (10, 23)):
            G = Graph(15)
            x = G.input([1, 5, h, w])
            G.save(os.path.join(out, "%s_%dx%d.onnx" % (name, h, w)),
                   [G.node("MaxPool", [x], **attrs)])
    G = Graph(16)
    x = G.input([1, 4, 11, 12])
    G.save(os.path.join(out, "avgpool_3x3_s2_p1.onnx"),
           [G.node("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])])

    # Gemm with one row (a classifier): sgemv.
    for tb in (0, 1):
        for bias in (0, 1):
            G = Graph(17)
            x = G.input([1, 37])
            wshape = (29, 37) if tb else (37, 29)
            ins = [x, G.const(G.rng.standard_normal(wshape))]
            if bias:
                ins.append(G.const(G.rng.standard_normal(29), "c"))
            y = G.node("Gemm", ins, transB=tb, alpha=0.5, beta=2.0)
            G.save(os.path.join(out, "gemm_m1_transb%d_bias%d.onnx" % (tb, bias)), [y])
    G = Graph(18)
    x = G.input([3, 37])
    y = G.node("Gemm", [x, G.const(G.rng.standard_normal((29, 37)))], transB=1)
    G.save(os.path.join(out, "gemm_m3_transb1.onnx"), [y])


def parse_spec(spec):
    kw = {}
    for item in spec.split(","):
        k, v = item.split("=")
        if k in ("act", "act2"):
            kw[k] = v
        elif k == "k":
            kw["kh"] = kw["kw"] = int(v)
        elif k == "s":
            kw["sh"] = kw["sw"] = int(v)
        elif k == "p":
            kw["pt"] = kw["pl"] = int(v)
        elif k == "d":
            kw["dh"] = kw["dw"] = int(v)
        else:
            kw[k] = int(v)
    return kw


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    if len(sys.argv) == 5 and sys.argv[2] == "--conv":
        conv_model(os.path.join(out, sys.argv[3] + ".onnx"), 1, **parse_spec(sys.argv[4]))
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    stamp = os.path.join(out, "STAMP")
    if os.path.exists(stamp) and os.path.getmtime(stamp) > os.path.getmtime(__file__):
        return
    for i, (name, kw) in enumerate(sorted(conv_cases().items())):
        conv_model(os.path.join(out, name + ".onnx"), 100 + i, **kw)
    other_cases(out)
    with open(stamp, "w") as f:
        f.write("generated by gen-kernel-models.py\n")


if __name__ == "__main__":
    main()
