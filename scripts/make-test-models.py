#!/usr/bin/python3
"""Writes the small ONNX models of tests/data/models: one good model and a
corpus of broken ones, each broken in exactly one way.

Run by Debian's python3 (python3-onnx, python3-numpy):
    scripts/make-test-models.py tests/data/models
The files are committed; rerun this after changing it.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def w(name, shape, seed):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)


def bn_params(prefix, c, seed):
    rng = np.random.default_rng(seed)
    return [
        numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), prefix + ".scale"),
        numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), prefix + ".bias"),
        numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), prefix + ".mean"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), prefix + ".var"),
    ]


def tiny_cnn_graph():
    """conv-bn-relu, maxpool, a residual block, global pool, classifier."""
    nodes = [
        helper.make_node("Conv", ["input", "c1.w"], ["c1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn1.scale", "bn1.bias", "bn1.mean",
                                                "bn1.var"], ["b1"], name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2.w"], ["c2"], name="conv2", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "bn2.scale", "bn2.bias", "bn2.mean",
                                                "bn2.var"], ["b2"], name="bn2"),
        helper.make_node("Add", ["b2", "p1"], ["a2"], name="add"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["output"], name="fc", transB=1),
    ]
    inits = [w("c1.w", (8, 1, 3, 3), 1), w("c2.w", (8, 8, 3, 3), 2), w("fc.w", (10, 8), 3),
             w("fc.b", (10,), 4)]
    inits += bn_params("bn1", 8, 5) + bn_params("bn2", 8, 6)
    return helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)


def fold_chain_graph():
    """x -> Shape -> Gather(0) -> Unsqueeze -> Concat(.., [-1]) -> Reshape(x):
    the flatten chain older exporters write; it must fold to a view."""
    nodes = [
        helper.make_node("Shape", ["input"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"], name="unsqueeze"),
        helper.make_node("Concat", ["batch1", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["input", "target"], ["flat"], name="reshape"),
        helper.make_node("Relu", ["flat"], ["output"], name="relu"),
    ]
    inits = [numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0"),
             numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one")]
    return helper.make_graph(
        nodes, "fold_chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 3, 4, 5])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [2, 60])], inits)


def no_elastic_graph():
    """conv -> relu -> flatten -> gemm: no residual block, no channels
    between two convs, no global pooling."""
    nodes = [
        helper.make_node("Conv", ["input", "c.w"], ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.w"], ["output"], name="fc", transB=1),
    ]
    inits = [w("c.w", (4, 1, 3, 3), 1), w("fc.w", (10, 4 * 6 * 6), 2)]
    return helper.make_graph(
        nodes, "no_elastic",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)


def exported_graph():
    """What torch.onnx.export's defaults write, in small: BatchNorm folded
    into conv biases, identical initializers shared through Identity
    nodes, SiLU as Mul(x, Sigmoid(x)), a grouped conv, and a
    squeeze-and-excitation gate.  Two residual blocks on a stem:

      stem: conv s (8->8, 3x3) -> relu                                 = x0
      block 1: conv a (8->16, 1x1) -> SiLU -> conv g (16->16, 3x3,
               4 groups) -> relu -> SE (GAP, conv r 16->4, relu, conv
               e 4->16, sigmoid, mul) -> conv p (16->8, 1x1) + x0      = x1
      block 2: conv a2 (weights Identity(a's)) -> relu -> conv p2 + x1 -> relu
      head: GAP -> Flatten -> Gemm (10)

    a2 reads a's weights and p reads a zero bias that a also reads, as
    the exporter's de-duplication leaves them.  Returns the graph and
    the initializers by name (for the expected outputs)."""
    rng = np.random.default_rng(11)

    def t(shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    arrays = {
        "s.w": t((8, 8, 3, 3)), "s.b": t(8),
        "a.w": t((16, 8, 1, 1)), "zeros8": np.zeros(16, np.float32),
        "g.w": t((16, 4, 3, 3)), "g.b": t(16),
        "r.w": t((4, 16, 1, 1)), "r.b": t(4),
        "e.w": t((16, 4, 1, 1)), "e.b": t(16),
        "p.w": t((8, 16, 1, 1)),
        "p2.w": t((8, 16, 1, 1)), "p2.b": t(8),
        "fc.w": t((10, 8)), "fc.b": t(10),
    }
    nodes = [
        helper.make_node("Identity", ["a.w"], ["a2.w"], name="dedup_a"),
        helper.make_node("Identity", ["zeros8"], ["a2.b"], name="dedup_zeros"),
        helper.make_node("Conv", ["input", "s.w", "s.b"], ["s"], name="s", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["x0"], name="s_relu"),
        helper.make_node("Conv", ["x0", "a.w", "zeros8"], ["a"], name="a", kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["a"], ["a_sig"], name="a_sigmoid"),
        helper.make_node("Mul", ["a", "a_sig"], ["a_silu"], name="a_silu"),
        helper.make_node("Conv", ["a_silu", "g.w", "g.b"], ["g"], name="g", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], group=4),
        helper.make_node("Relu", ["g"], ["g_relu"], name="g_relu"),
        helper.make_node("GlobalAveragePool", ["g_relu"], ["se_pool"], name="se_pool"),
        helper.make_node("Conv", ["se_pool", "r.w", "r.b"], ["r"], name="r", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["r"], ["r_relu"], name="r_relu"),
        helper.make_node("Conv", ["r_relu", "e.w", "e.b"], ["e"], name="e", kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["e"], ["gate"], name="gate"),
        helper.make_node("Mul", ["gate", "g_relu"], ["se"], name="se_mul"),
        helper.make_node("Conv", ["se", "p.w"], ["p"], name="p", kernel_shape=[1, 1]),
        helper.make_node("Add", ["p", "x0"], ["x1"], name="add1"),
        helper.make_node("Conv", ["x1", "a2.w", "a2.b"], ["a2"], name="a2", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["a2"], ["a2_relu"], name="a2_relu"),
        helper.make_node("Conv", ["a2_relu", "p2.w", "p2.b"], ["p2"], name="p2",
                         kernel_shape=[1, 1]),
        helper.make_node("Add", ["x1", "p2"], ["x2"], name="add2"),
        helper.make_node("Relu", ["x2"], ["x2_relu"], name="x2_relu"),
        helper.make_node("GlobalAveragePool", ["x2_relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], name="fc", transB=1),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
    graph = helper.make_graph(
        nodes, "exported",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)
    return graph, arrays


def exported_forward(a, x, depth=2, keep=16):
    """exported_graph's network in PyTorch, with its first `depth` blocks
    and the first `keep` channels of every internal group: what tailor's
    subnet computes when the channels are left in file order (no sort)."""
    import torch
    import torch.nn.functional as F
    T = {k: torch.from_numpy(v) for k, v in a.items()}
    x = torch.from_numpy(x)
    x0 = F.relu(F.conv2d(x, T["s.w"], T["s.b"], padding=1))
    x1 = x0
    if depth >= 1:
        k, groups = keep, keep // 4
        y = F.conv2d(x0, T["a.w"][:k], T["zeros8"][:k])
        y = y * torch.sigmoid(y)
        y = F.relu(F.conv2d(y, T["g.w"][:k], T["g.b"][:k], padding=1, groups=groups))
        se = F.adaptive_avg_pool2d(y, 1)
        rk = keep * 4 // 16  # the gate's own hidden channels are a group too
        se = F.relu(F.conv2d(se, T["r.w"][:rk, :k], T["r.b"][:rk]))
        se = torch.sigmoid(F.conv2d(se, T["e.w"][:k, :rk], T["e.b"][:k]))
        x1 = F.conv2d(y * se, T["p.w"][:, :k]) + x0
    x2 = x1
    if depth >= 2:
        y = F.relu(F.conv2d(x1, T["a.w"][:keep], T["zeros8"][:keep]))
        x2 = x1 + F.conv2d(y, T["p2.w"][:, :keep], T["p2.b"])
    x2 = F.relu(x2)  # x1 can be negative: the Relu stays when block 2 goes
    pooled = F.adaptive_avg_pool2d(x2, 1).flatten(1)
    return (pooled @ T["fc.w"].T + T["fc.b"]).numpy()


def reshape_input_graph():
    """Reshape whose target shape is a graph input (as in ONNX's own
    conformance cases): the plan binds it from the tensor given."""
    nodes = [helper.make_node("Reshape", ["data", "shape"], ["reshaped"], name="reshape"),
             helper.make_node("Relu", ["reshaped"], ["output"], name="relu")]
    return helper.make_graph(
        nodes, "reshape_input",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [2, 3, 4]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [4, 6])])


def resize_graph(n, c, h, w, oh, ow):
    """Resize as an exported subnet at a smaller side starts: mode linear,
    half-pixel coordinates, constant sizes."""
    sizes = numpy_helper.from_array(np.array([n, c, oh, ow], dtype=np.int64), "sizes")
    nodes = [helper.make_node("Resize", ["input", "", "", "sizes"], ["output"], name="resize",
                              mode="linear", coordinate_transformation_mode="half_pixel")]
    return helper.make_graph(
        nodes, "resize",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, c, h, w])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [n, c, oh, ow])], [sizes])


def resize_reference(x, oh, ow):
    """ONNX's definition of Resize (linear, half_pixel), in float64: the
    source coordinate (i + 0.5) / (out / in) - 0.5, the two nearest
    pixels on each axis, the edge repeated beyond the border."""
    def axis(n_in, n_out):
        scale = n_out / n_in
        x_orig = (np.arange(n_out) + 0.5) / scale - 0.5
        lo = np.floor(x_orig).astype(np.int64)
        ratio = x_orig - lo
        return (np.clip(lo, 0, n_in - 1), np.clip(lo + 1, 0, n_in - 1), ratio)
    y0, y1, ry = axis(x.shape[2], oh)
    x0, x1, rx = axis(x.shape[3], ow)
    xd = x.astype(np.float64)
    top = xd[:, :, y0, :] * (1 - ry)[None, None, :, None] + \
        xd[:, :, y1, :] * ry[None, None, :, None]
    return top[:, :, :, x0] * (1 - rx) + top[:, :, :, x1] * rx


def model(graph, opset=OPSET):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="tailor-tests")
    m.ir_version = 7
    return m


def save(m, path, check=True):
    if check:
        onnx.checker.check_model(m)
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/models"
    bad = os.path.join(out, "bad")
    os.makedirs(bad, exist_ok=True)

    save(model(tiny_cnn_graph()), os.path.join(out, "tiny_cnn.onnx"))
    rng = np.random.default_rng(7)
    np.save(os.path.join(out, "tiny_cnn.input.npy"),
            rng.standard_normal((1, 1, 8, 8)).astype(np.float32))

    save(model(fold_chain_graph()), os.path.join(out, "fold_chain.onnx"))
    save(model(no_elastic_graph()), os.path.join(out, "no_elastic.onnx"))

    save(model(reshape_input_graph()), os.path.join(out, "reshape_input.onnx"))
    np.save(os.path.join(out, "reshape_input.data.npy"),
            np.arange(-12, 12, dtype=np.float32).reshape(2, 3, 4))
    np.save(os.path.join(out, "reshape_input.shape.npy"), np.array([4, -1], dtype=np.int64))

    graph, arrays = exported_graph()
    save(model(graph), os.path.join(out, "exported.onnx"))
    x = np.random.default_rng(12).standard_normal((1, 8, 8, 8)).astype(np.float32)
    np.save(os.path.join(out, "exported.input.npy"), x)
    np.save(os.path.join(out, "exported.full.npy"), exported_forward(arrays, x))
    # d=1 w=.5, channels in file order: block 2 dropped, 2 of 4 groups kept.
    np.save(os.path.join(out, "exported.d1w50.npy"), exported_forward(arrays, x, 1, 8))

    # Resize down (28 to 21x17) and up (6 to 11x9), with ONNX's answer.
    for name, shape, out_hw in (("resize_down", (1, 2, 28, 28), (21, 17)),
                                ("resize_up", (1, 2, 6, 6), (11, 9))):
        save(model(resize_graph(*shape, *out_hw)), os.path.join(out, name + ".onnx"))
        x = np.random.default_rng(21).standard_normal(shape).astype(np.float32)
        np.save(os.path.join(out, name + ".input.npy"), x)
        np.save(os.path.join(out, name + ".output.npy"),
                np.ascontiguousarray(resize_reference(x, *out_hw), dtype=np.float32))

    # An op the engine does not run.
    g = tiny_cnn_graph()
    g.node[2].op_type = "Tanh"
    save(model(g), os.path.join(bad, "unsupported_op.onnx"))

    # A weight that no initializer defines.
    g = tiny_cnn_graph()
    del g.initializer[1]  # c2.w
    save(model(g), os.path.join(bad, "missing_initializer.onnx"), check=False)

    # An opset newer than the engine knows.
    save(model(tiny_cnn_graph(), opset=99), os.path.join(bad, "opset_99.onnx"), check=False)

    # raw_data shorter than the declared shape.
    g = tiny_cnn_graph()
    g.initializer[0].raw_data = g.initializer[0].raw_data[:-8]
    save(model(g), os.path.join(bad, "raw_data_short.onnx"), check=False)

    # Weights in an external file.
    g = tiny_cnn_graph()
    t = g.initializer[0]
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    e = t.external_data.add()
    e.key, e.value = "location", "weights.bin"
    save(model(g), os.path.join(bad, "external_data.onnx"), check=False)

    # Two nodes defining the same value.
    g = tiny_cnn_graph()
    g.node[3].output[0] = "r1"
    save(model(g), os.path.join(bad, "duplicate_output.onnx"), check=False)

    # A cycle: conv1 reads what relu2 writes.
    g = tiny_cnn_graph()
    g.node[0].input[0] = "r2"
    save(model(g), os.path.join(bad, "cycle.onnx"), check=False)

    # A 5x5 kernel over a 2x2 input with no padding (fails at plan time).
    g = tiny_cnn_graph()
    g.node[4].ClearField("attribute")
    g.node[4].attribute.extend([helper.make_attribute("kernel_shape", [5, 5])])
    g.initializer[1].CopyFrom(w("c2.w", (8, 8, 5, 5), 2))
    g.input[0].type.tensor_type.shape.dim[2].dim_value = 4
    g.input[0].type.tensor_type.shape.dim[3].dim_value = 4
    save(model(g), os.path.join(bad, "kernel_too_large.onnx"), check=False)

    # Weights for 3 input channels on a 1-channel input.
    g = tiny_cnn_graph()
    g.initializer[0].CopyFrom(w("c1.w", (8, 3, 3, 3), 1))
    save(model(g), os.path.join(bad, "channel_mismatch.onnx"), check=False)

    # An attribute of the wrong type (kernel_shape as a string).
    g = tiny_cnn_graph()
    g.node[3].ClearField("attribute")
    g.node[3].attribute.extend([helper.make_attribute("kernel_shape", "two")])
    save(model(g), os.path.join(bad, "attribute_type.onnx"), check=False)

    # No outputs.
    g = tiny_cnn_graph()
    del g.output[:]
    save(model(g), os.path.join(bad, "no_outputs.onnx"), check=False)


if __name__ == "__main__":
    main()
