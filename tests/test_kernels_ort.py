"""Kernels against ONNX Runtime: MatMulInteger, ConvInteger, QLinearMatMul (fp32_rne ties), pair saturation."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qsim.kernels import conv2d_int, matmul_int, requantize
from qsim.kernels.cpu import ort_pair_saturates

ONNX_TYPE = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
             np.dtype(np.int32): TensorProto.INT32, np.dtype(np.float32): TensorProto.FLOAT}


def _run(op, inputs, consts, out_dtype, out_shape, **attrs):
    """One-node model: `inputs` become graph inputs, `consts` initializers (ORT prepacks weights)."""
    names = list(inputs) + list(consts)
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, ONNX_TYPE[v.dtype], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", ONNX_TYPE[np.dtype(out_dtype)], out_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)[0]


def _ort_matmul_integer(a, b, za, zb):
    consts = {"b": b, "za": np.array(za, a.dtype), "zb": np.asarray(zb, b.dtype)}
    return _run("MatMulInteger", {"a": a}, consts, np.int32, [a.shape[0], b.shape[1]])


def _codes(rng, dtype, shape, lim=None):
    info = np.iinfo(dtype)
    lo, hi = (info.min, info.max) if lim is None else (max(info.min, -lim), min(info.max, lim))
    x = rng.integers(lo, hi + 1, size=shape)
    x.flat[: min(4, x.size)] = [lo, hi, lo, hi][: min(4, x.size)]     # type limits always present
    return x.astype(dtype)


@pytest.mark.parametrize("adt,bdt", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
@pytest.mark.parametrize("per_column", [False, True])
def test_matmul_int_vs_ort_matmulinteger(adt, bdt, per_column):
    rng = np.random.default_rng(7)
    lim = 64 if (adt, bdt) == (np.uint8, np.int8) else None   # REFERENCE B1: AVX2 u8s8 is exact for |b| <= 64
    for M, K, N in [(3, 17, 5), (8, 64, 16), (1, 300, 7)]:
        a = _codes(rng, adt, (M, K))
        b = _codes(rng, bdt, (K, N), lim)
        ia, ib = np.iinfo(adt), np.iinfo(bdt)
        for za in (ia.min, ia.max):
            zb = _codes(rng, bdt, (N,)) if per_column else np.array(ib.max if za == ia.min else ib.min, bdt)
            if lim is not None and per_column:
                zb = _codes(rng, bdt, (N,), lim)
            acc, n = matmul_int(a, b, za, zb)
            np.testing.assert_array_equal(acc, _ort_matmul_integer(a, b, za, zb))
            assert n == 0


def test_pair_saturate16_vs_ort_full_range():
    """Full-range u8×s8. Where ORT saturates int16 pairs (AVX2 without VNNI: `vpmaddubsw`),
    pair_saturate16 reproduces it; on a VNNI host ORT's `vpdpbusd` sums quads exactly into
    int32, so there it equals the exact product (and pair_saturate16 differs)."""
    rng = np.random.default_rng(11)
    saturates = ort_pair_saturates()
    a = np.full((1, 2), 255, np.uint8)
    b = np.full((2, 1), 127, np.int8)
    assert _ort_matmul_integer(a, b, 0, np.array(0, np.int8))[0, 0] == (32767 if saturates else 2 * 255 * 127)
    for M, K, N, za, zb in [(4, 32, 8, 0, 0), (16, 256, 32, 255, -128), (5, 33, 9, 17, 100), (2, 1000, 16, 128, 127)]:
        a = _codes(rng, np.uint8, (M, K))
        b = _codes(rng, np.int8, (K, N))
        ort_acc = _ort_matmul_integer(a, b, za, np.array(zb, np.int8))
        paired, _ = matmul_int(a, b, za, zb, pair_saturate16=True)
        exact, _ = matmul_int(a, b, za, zb)
        np.testing.assert_array_equal(paired if saturates else exact, ort_acc)
    assert np.any(exact != paired)   # the data did trigger saturation


def _ort_conv_integer(x, w, zx, zw, **attrs):
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    top, left, bottom, right = attrs["pads"][0], attrs["pads"][1], attrs["pads"][2], attrs["pads"][3]
    s, d = attrs["strides"], attrs["dilations"]
    Ho = (H + top + bottom - d[0] * (kh - 1) - 1) // s[0] + 1
    Wo = (W + left + right - d[1] * (kw - 1) - 1) // s[1] + 1
    consts = {"w": w, "zx": np.array(zx, x.dtype), "zw": np.asarray(zw, w.dtype)}
    return _run("ConvInteger", {"x": x}, consts, np.int32, [N, O, Ho, Wo], **attrs)


@pytest.mark.parametrize("xdt,wdt", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
@pytest.mark.parametrize("geom", [
    dict(C=4, O=6, k=(3, 3), strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1),
    dict(C=4, O=4, k=(3, 3), strides=[2, 2], pads=[0, 1, 2, 1], dilations=[1, 1], group=2),
    dict(C=3, O=6, k=(3, 2), strides=[1, 2], pads=[2, 0, 1, 1], dilations=[2, 1], group=3),   # depthwise, mult 2
    dict(C=8, O=8, k=(3, 3), strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=8),   # depthwise
])
def test_conv2d_int_vs_ort_convinteger(xdt, wdt, geom):
    rng = np.random.default_rng(5)
    lim = 64 if (xdt, wdt) == (np.uint8, np.int8) else None
    x = _codes(rng, xdt, (2, geom["C"], 7, 6))
    w = _codes(rng, wdt, (geom["O"], geom["C"] // geom["group"]) + geom["k"], lim)
    zx = np.iinfo(xdt).max
    zw = np.iinfo(wdt).min if lim is None else -lim
    attrs = {k: geom[k] for k in ("strides", "pads", "dilations", "group")}
    ref = _ort_conv_integer(x, w, zx, np.array(zw, wdt), **attrs)
    pads = attrs["pads"]   # ONNX: (top, left, bottom, right) = (x1_begin, x2_begin, x1_end, x2_end)
    acc, n = conv2d_int(x, w, zx, zw, stride=tuple(attrs["strides"]), padding=tuple(pads),
                        dilation=tuple(attrs["dilations"]), groups=attrs["group"])
    np.testing.assert_array_equal(acc, ref)
    assert n == 0


def _ort_qlinear_matmul(a, sa, za, b, sb, zb, sy, zy, out_dtype):
    consts = {"a_scale": np.float32(sa), "a_zero_point": np.array(za, a.dtype), "b": b,
              "b_scale": np.asarray(sb, np.float32), "b_zero_point": np.asarray(zb, b.dtype),
              "y_scale": np.float32(sy), "y_zero_point": np.array(zy, out_dtype)}
    order = ["a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale", "y_zero_point"]
    names = ["a"] + order
    node = helper.make_node("QLinearMatMul", names, ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("a", ONNX_TYPE[a.dtype], a.shape)],
        [helper.make_tensor_value_info("y", ONNX_TYPE[np.dtype(out_dtype)], [a.shape[0], b.shape[1]])],
        [numpy_helper.from_array(np.asarray(consts[k]), k) for k in order])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"a": a})[0]


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
@pytest.mark.parametrize("per_column", [False, True])
def test_fp32_rne_vs_ort_qlinearmatmul_ties(dt, per_column):
    """Power-of-two scales put many outputs exactly on .5: only round-half-even matches ORT."""
    rng = np.random.default_rng(3)
    M, K, N = 12, 6, 8
    info = np.iinfo(dt)
    za, zy = (info.max, info.min + 3) if dt == np.uint8 else (info.min, 5)
    zb = _codes(rng, dt, (N,)) if per_column else np.array(info.max, dt)
    # operands near their zero points give small accumulators, so acc·2^-k lands on .5 often
    a = np.clip(za + rng.integers(-4, 5, (M, K)), info.min, info.max).astype(dt)
    b = np.clip(np.asarray(zb, np.int64) + rng.integers(-4, 5, (K, N)), info.min, info.max).astype(dt)
    a[0] = info.max if za == info.min else info.min                    # one row saturates the output
    sa, sy = 0.25, 0.5
    sb = 2.0 ** -rng.integers(0, 3, N) if per_column else np.float32(0.5)
    want = _ort_qlinear_matmul(a, sa, za, b, sb, zb, sy, zy, dt)
    acc, _ = matmul_int(a, b, za, zb)
    got = requantize(acc, sa, sb, sy, zy, policy="fp32_rne", qmin=info.min, qmax=info.max)
    np.testing.assert_array_equal(got, want)
    vals = acc.astype(np.float64) * sa * np.asarray(sb, np.float64) / sy
    assert np.sum(np.abs(vals - np.floor(vals)) == 0.5) >= 5        # real ties were exercised
    assert np.any(got == info.min) or np.any(got == info.max)      # output saturation too
    other = requantize(acc, sa, sb, sy, zy, policy="float64_half_away", qmin=info.min, qmax=info.max)
    assert np.any(other != want)                                     # the policies are distinguishable here


def test_fp32_rne_vs_ort_large_accumulator_rounding():
    """|acc| > 2^24: ORT rounds fl32(acc) first; fp32_rne reproduces the extra rounding."""
    a = np.full((1, 1100), -128, np.int8)
    b = np.full((1100, 3), -128, np.int8)
    b[:5, 1] = 127
    b[:3, 2] = 0
    acc, _ = matmul_int(a, b)
    assert np.all(np.abs(acc) > 1 << 24)
    for sy in (2.0 ** 17, 2.0 ** 17 * 3):
        want = _ort_qlinear_matmul(a, 1.0, 0, b, np.float32(1.0), np.array(0, np.int8), sy, 0, np.int8)
        got = requantize(acc, 1.0, 1.0, sy, 0, policy="fp32_rne")
        np.testing.assert_array_equal(got, want)
