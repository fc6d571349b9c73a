"""Tiny ONNX model builders and the ORT comparison used by the run-onnx tests."""

from __future__ import annotations

import functools

import numpy as np
from onnx import helper, numpy_helper

from qsim.onnxrun import run_onnx, run_ort


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def make_model(nodes, inputs: dict, outputs: dict, inits: dict | None = None, opset: int = 21):
    """nodes: NodeProtos; inputs: name -> example array; outputs: name -> dtype; inits: name -> array."""
    graph = helper.make_graph(
        nodes, "t",
        [_vi(n, a.dtype, a.shape) for n, a in inputs.items()],
        [_vi(n, d, None) for n, d in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def single(op, inputs: dict, inits: dict, out_dtype, input_order, opset=21, **attrs):
    """A one-node model: `input_order` lists the node's input names ('' for absent)."""
    return make_model([node(op, input_order, ["y"], **attrs)], inputs, {"y": out_dtype}, inits, opset)


def assert_matches_ort(model, feeds: dict, **options) -> dict:
    """qsim and ORT (graph as written) give identical dtypes, shapes and values."""
    ours = run_onnx(model, feeds, **options)
    theirs = run_ort(model, feeds)
    assert set(ours) == set(theirs)
    for name, b in theirs.items():
        a = ours[name]
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, a.shape, b.dtype, b.shape)
        diff = np.flatnonzero(a.astype(np.float64) != b.astype(np.float64))
        assert diff.size == 0, f"{name}: {diff.size} of {a.size} differ, e.g. qsim {a.ravel()[diff[:5]]} ORT {b.ravel()[diff[:5]]}"
    return ours


@functools.lru_cache(maxsize=None)
def ort_pair_saturates() -> bool:
    """Does ORT's u8×s8 MatMulInteger saturate adjacent product pairs on this CPU (AVX2, no VNNI)?"""
    a, b = np.full((1, 2), 255, np.uint8), np.full((2, 1), 127, np.int8)
    m = single("MatMulInteger", {"a": a}, {"b": b}, np.int32, ["a", "b"])
    return int(run_ort(m, {"a": a})["y"][0, 0]) == 32767


def s(v) -> np.ndarray:
    """A float32 scale array."""
    return np.asarray(v, np.float32)


def qdq_conv_net(rng) -> tuple:
    """Q → DQ → Conv → Relu → Q/DQ → MaxPool → Conv → Relu → Q/DQ → GlobalAveragePool → Flatten → Gemm → Q → DQ.

    Weights are int8 with per-channel power-of-two scales; every float product and sum is
    exact in float32, so the graph as written has one right answer.
    """
    f32 = np.float32
    # |w| <= 64: ORT's default optimizations fuse this graph into u8×s8 integer ops (AVX2 pairs).
    w1 = rng.integers(-64, 65, (8, 3, 3, 3)).astype(np.int8)
    w2 = rng.integers(-64, 65, (8, 8, 3, 3)).astype(np.int8)
    w3 = rng.integers(-64, 65, (8, 10)).astype(np.int8)
    inits = {
        "xs": s(2.0 ** -4), "xz": np.array(128, np.uint8),
        "w1q": w1, "w1s": s(2.0 ** -rng.integers(5, 8, 8)), "b1": (rng.integers(-64, 64, 8) * 2.0 ** -6).astype(f32),
        "a1s": s(2.0 ** -1), "a1z": np.array(0, np.uint8),
        "w2q": w2, "w2s": s(2.0 ** -rng.integers(6, 9, 8)), "b2": (rng.integers(-64, 64, 8) * 2.0 ** -4).astype(f32),
        "a2s": s(2.0 ** -1), "a2z": np.array(0, np.uint8),
        "g_s": s(2.0 ** -3), "g_z": np.array(0, np.uint8),
        "w3q": w3, "w3s": s(2.0 ** -7), "b3": (rng.integers(-64, 64, 10) * 2.0 ** -5).astype(f32),
        "ys": s(2.0 ** -1), "yz": np.array(0, np.int8),
    }
    nodes = [
        node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        node("DequantizeLinear", ["w1q", "w1s"], ["w1"], axis=0),
        node("Conv", ["xd", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        node("Relu", ["c1"], ["r1"]),
        node("QuantizeLinear", ["r1", "a1s", "a1z"], ["r1q"]),
        node("DequantizeLinear", ["r1q", "a1s", "a1z"], ["r1d"]),
        node("MaxPool", ["r1d"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        node("DequantizeLinear", ["w2q", "w2s"], ["w2"], axis=0),
        node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        node("Relu", ["c2"], ["r2"]),
        node("QuantizeLinear", ["r2", "a2s", "a2z"], ["r2q"]),
        node("DequantizeLinear", ["r2q", "a2s", "a2z"], ["r2d"]),
        node("GlobalAveragePool", ["r2d"], ["g"]),
        node("Flatten", ["g"], ["gf"]),
        node("QuantizeLinear", ["gf", "g_s", "g_z"], ["gq"]),
        node("DequantizeLinear", ["gq", "g_s", "g_z"], ["gd"]),
        node("DequantizeLinear", ["w3q", "w3s"], ["w3"]),
        node("Gemm", ["gd", "w3", "b3"], ["logits"]),
        node("QuantizeLinear", ["logits", "ys", "yz"], ["yq"]),
        node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    x = rng.normal(0, 3, (2, 3, 12, 12)).astype(f32)
    return make_model(nodes, {"x": x}, {"y": np.float32, "yq": np.int8}, inits), {"x": x}


def qoperator_net(rng) -> tuple:
    """QuantizeLinear → QLinearConv → depthwise QLinearConv → MaxPool → Flatten → QLinearMatMul → DequantizeLinear."""
    u8, s8 = np.uint8, np.int8
    inits = {
        "xs": s(0.0213), "xz": np.array(121, u8),
        "w1": rng.integers(-64, 65, (6, 3, 3, 3)).astype(s8), "w1s": s(rng.uniform(0.002, 0.02, 6)),
        "w1z": np.array(0, s8), "a1s": s(0.047), "a1z": np.array(5, u8), "b1": rng.integers(-3000, 3000, 6).astype(np.int32),
        "w2": rng.integers(0, 256, (6, 1, 3, 3)).astype(u8), "w2s": s(0.0078), "w2z": np.array(131, u8),
        "a2s": s(0.051), "a2z": np.array(128, u8),
        "w3": rng.integers(-64, 65, (54, 7)).astype(s8), "w3s": s(rng.uniform(0.001, 0.01, 7)), "w3z": np.array(0, s8),
        "ys": s(0.09), "yz": np.array(100, u8), "shape": np.array([0, -1], np.int64),
    }
    nodes = [
        node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        node("QLinearConv", ["xq", "xs", "xz", "w1", "w1s", "w1z", "a1s", "a1z", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        node("QLinearConv", ["c1", "a1s", "a1z", "w2", "w2s", "w2z", "a2s", "a2z"], ["c2"], group=6, strides=[2, 2]),
        node("MaxPool", ["c2"], ["p"], kernel_shape=[2, 2], strides=[1, 1]),
        node("Reshape", ["p", "shape"], ["f"]),
        node("QLinearMatMul", ["f", "a2s", "a2z", "w3", "w3s", "w3z", "ys", "yz"], ["yq"]),
        node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    x = rng.normal(0, 1, (2, 3, 9, 9)).astype(np.float32)
    return make_model(nodes, {"x": x}, {"y": np.float32, "yq": u8}, inits), {"x": x}


def ort_quantized_cnn(rng, path, quant_format: str = "QOperator"):
    """A small float CNN quantized by ORT's own `quantize_static` (u8 activations, per-channel
    s8 weights with reduce_range, i.e. |w| <= 64); returns (path, feeds)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    f32 = np.float32
    inits = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(f32), "b1": rng.normal(0, 0.1, 8).astype(f32),
             "w2": rng.normal(0, 0.2, (8, 8, 3, 3)).astype(f32), "b2": rng.normal(0, 0.1, 8).astype(f32),
             "w3": rng.normal(0, 0.2, (72, 10)).astype(f32), "shape": np.array([0, -1], np.int64)}
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
             node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]), node("Relu", ["c2"], ["r2"]),
             node("Reshape", ["r2", "shape"], ["f"]), node("MatMul", ["f", "w3"], ["y"])]
    x = rng.normal(0, 1, (2, 3, 12, 12)).astype(f32)
    float_path = str(path) + ".float.onnx"
    onnx.save(make_model(nodes, {"x": x}, {"y": f32}, inits, opset=17), float_path)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": rng.normal(0, 1, x.shape).astype(f32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(float_path, str(path), Reader(), quant_format=getattr(QuantFormat, quant_format),
                    per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return str(path), {"x": x}


def qdq_layer(rng, op="Conv", *, relu=True, w_lim=64, bias="int32", per_channel=True, y_zero=0, x_t=np.uint8,
              w_t=np.int8):
    """One QDQ layer with random (non power-of-two) scales: Q → DQ → op(DQ(w)[, bias]) [→ Relu] → Q → DQ."""
    f32 = np.float32
    lo, hi = (-w_lim, w_lim) if w_t == np.int8 else (0, 255)
    if op == "Conv":
        w = rng.integers(lo, hi + 1, (8, 6, 3, 3)).astype(w_t)
        x = rng.normal(0, 1, (2, 6, 9, 9)).astype(f32)
    else:
        w = rng.integers(lo, hi + 1, (48, 8)).astype(w_t)
        x = rng.normal(0, 1, (2, 5, 48)).astype(f32)
    n_out = w.shape[0] if op == "Conv" else w.shape[1]
    xs, ws = f32(rng.uniform(0.01, 0.03)), rng.uniform(0.002, 0.01, n_out if per_channel else 1).astype(f32)
    ws = ws if per_channel else ws.reshape(())
    inits = {"xs": s(xs), "xz": np.array(7 if x_t == np.uint8 else -3, x_t), "w": w, "ws": ws,
             "ys": s(rng.uniform(0.05, 0.2)), "yz": np.array(y_zero, x_t)}
    nodes = [node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             node("DequantizeLinear", ["w", "ws"], ["wd"], axis=0 if op == "Conv" else 1)]
    op_inputs = ["xd", "wd"]
    if bias == "int32":
        inits["bq"] = rng.integers(-3000, 3000, n_out).astype(np.int32)
        inits["bs"] = (xs * ws * np.ones(n_out, f32)).astype(f32)
        nodes.append(node("DequantizeLinear", ["bq", "bs"], ["bd"], axis=0))
        op_inputs.append("bd")
    elif bias == "float":
        inits["b"] = rng.normal(0, 0.5, n_out).astype(f32)
        op_inputs.append("b")
    nodes.append(node(op, op_inputs, ["c"], **({"pads": [1, 1, 1, 1], "name": "layer"} if op == "Conv" else {"name": "layer"})))
    last = "c"
    if relu:
        nodes.append(node("Relu", ["c"], ["r"]))
        last = "r"
    nodes += [node("QuantizeLinear", [last, "ys", "yz"], ["yq"]), node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    return make_model(nodes, {"x": x}, {"y": f32, "yq": x_t}, inits), {"x": x}
