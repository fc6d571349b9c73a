"""`qsim run-onnx`: every supported op equals ONNX Runtime bit for bit (exact equality).

Models are built here with onnx.helper. ORT runs the graph as written (no fusion).
Where ORT's u8×s8 kernel saturates int16 pairs (AVX2 without VNNI) the exact tests keep
|w| ≤ 64; pair saturation itself is tested against ORT with full-range data.
"""

from __future__ import annotations

import platform

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper

from qsim.cli import main
from qsim.onnxrun import OnnxExecutor, run_onnx, run_ort
from tests.onnx_models import (
    assert_matches_ort, make_model, node, ort_pair_saturates, ort_quantized_cnn, qdq_conv_net, qdq_layer,
    qoperator_net, s, single,
)

RNG = np.random.default_rng(1234)
U8, S8, U16, S16, I32, F32 = np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32


def rnd(dtype, shape, lo=None, hi=None, rng=RNG):
    info = np.iinfo(dtype)
    return rng.integers(info.min if lo is None else lo, (info.max if hi is None else hi) + 1, shape).astype(dtype)


def limits(dtype):
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


# -- QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear ---------------------------
def _param_shape(mode, shape, axis, block):
    if mode == "tensor":
        return ()
    if mode == "axis":
        return (shape[axis],)
    p = list(shape)
    p[axis] = -(-shape[axis] // block)
    return tuple(p)


def _expand(p, mode, shape, axis, block):
    if mode == "tensor":
        return np.broadcast_to(p, shape)
    if mode == "axis":
        v = [1] * len(shape)
        v[axis] = -1
        return np.broadcast_to(p.reshape(v), shape)
    return np.take(np.repeat(p, block, axis=axis), np.arange(shape[axis]), axis=axis)


@pytest.mark.parametrize("dtype", [U8, S8, U16, S16])
@pytest.mark.parametrize("mode", ["tensor", "axis", "block"])
def test_quantize_linear_ties_saturation_and_limits(dtype, mode):
    shape, axis, block = (2, 6, 5), (1 if mode != "block" else 2), 2
    qmin, qmax = limits(dtype)
    pshape = _param_shape(mode, shape, axis, block)
    scale = s(2.0 ** RNG.integers(-6, 2, pshape))  # powers of two: x/scale is exact, so .5 ties survive
    zp = RNG.choice([qmin, qmax, (qmin + qmax) // 2], pshape).astype(dtype)
    sf, zf = _expand(scale, mode, shape, axis, block), _expand(zp.astype(np.int64), mode, shape, axis, block)
    k = RNG.integers(qmin - 40, qmax + 41, shape) - zf  # beyond both ends: saturation
    frac = RNG.choice([0.0, 0.5, -0.5, 0.25, 0.75], shape)
    x = ((k + frac) * sf).astype(F32)
    x.ravel()[:7] = RNG.normal(0, 50, 7).astype(F32)  # and some values that are not ties
    attrs = {} if mode == "tensor" else {"axis": axis} | ({"block_size": block} if mode == "block" else {})
    m = single("QuantizeLinear", {"x": x}, {"s": scale, "z": zp}, dtype, ["x", "s", "z"], **attrs)
    assert_matches_ort(m, {"x": x})


@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_quantize_linear_equals_qsim_quantize(granularity):
    """run-onnx and qsim.quant.quantize are one quantizer, not two that happen to agree on ORT's tests."""
    from qsim.quant import QuantSpec, quantize

    x = (RNG.normal(0, 40, (4, 6, 8)) * RNG.choice([1.0, 0.5], (4, 6, 8))).astype(F32)
    spec = QuantSpec(bits=8, signed=True, scheme="affine", granularity=granularity,
                     group_size=4 if granularity == "group" else None)
    axis = {"tensor": None, "channel": 1, "group": 2}[granularity]
    pshape = {"tensor": (), "channel": (6,), "group": (4, 6, 2)}[granularity]
    scale, zp = s(2.0 ** RNG.integers(-3, 2, pshape)), RNG.integers(-128, 128, pshape).astype(S8)
    want = quantize(x, spec, axis, scale=scale, zero_point=zp).q
    attrs = {} if axis is None else {"axis": axis} | ({"block_size": 4} if granularity == "group" else {})
    m = single("QuantizeLinear", {"x": x}, {"s": scale, "z": zp}, S8, ["x", "s", "z"], **attrs)
    assert np.array_equal(run_onnx(m, {"x": x})["y"], want)


def test_quantize_linear_default_uint8_and_output_dtype():
    x = (np.arange(-20, 20, dtype=F32) * 0.5 + 0.25).reshape(4, 10)
    m = single("QuantizeLinear", {"x": x}, {"s": s(0.5)}, U8, ["x", "s"])
    assert_matches_ort(m, {"x": x})
    m = single("QuantizeLinear", {"x": x}, {"s": s(0.5)}, S8, ["x", "s"], output_dtype=helper.np_dtype_to_tensor_dtype(np.dtype(S8)))
    assert_matches_ort(m, {"x": x})


@pytest.mark.parametrize("dtype", [U8, S8, U16, S16, I32])
@pytest.mark.parametrize("mode", ["tensor", "axis", "block"])
def test_dequantize_linear(dtype, mode):
    shape, axis, block = (3, 4, 7), (1 if mode != "block" else 2), 3
    pshape = _param_shape(mode, shape, axis, block)
    x = rnd(dtype, shape)
    qmin, qmax = limits(dtype)
    scale = s(RNG.uniform(1e-3, 2.0, pshape))
    inits = {"s": scale}
    order = ["x", "s"]
    if dtype != I32:
        inits["z"] = RNG.choice([qmin, qmax, 0 if qmin < 0 else qmax // 2], pshape).astype(dtype)
        order.append("z")
    attrs = {} if mode == "tensor" else {"axis": axis} | ({"block_size": block} if mode == "block" else {})
    m = single("DequantizeLinear", {"x": x}, inits, F32, order, **attrs)
    assert_matches_ort(m, {"x": x})


@pytest.mark.parametrize("case", ["normal", "positive", "negative", "zeros", "ties"])
def test_dynamic_quantize_linear(case):
    x = {
        "normal": RNG.normal(0.3, 2.0, (4, 9)),
        "positive": RNG.uniform(0.5, 3.0, (4, 9)),
        "negative": -RNG.uniform(0.5, 3.0, (4, 9)),
        "zeros": np.zeros((4, 9)),
        "ties": np.concatenate([[-127.5, 127.5], np.arange(-127, 127, 7.5)]),  # scale 1: exact .5 ties
    }[case].astype(F32)
    m = make_model([node("DynamicQuantizeLinear", ["x"], ["y", "ys", "yz"])], {"x": x},
                   {"y": U8, "ys": F32, "yz": U8})
    assert_matches_ort(m, {"x": x})



@pytest.mark.parametrize("dtype", [ml_dtypes.int4, ml_dtypes.uint4])
def test_blocked_int4_weights_and_int4_quantize(dtype):
    """The LLM weight pattern: blocked int4 DequantizeLinear → MatMul; and QuantizeLinear to int4
    (ORT cannot return int4 tensors, so the codes are Cast to 8 bits inside the graph)."""
    lo, hi = int(ml_dtypes.iinfo(dtype).min), int(ml_dtypes.iinfo(dtype).max)
    w = RNG.integers(lo, hi + 1, (40, 6)).astype(dtype)
    inits = {"w": w, "ws": s(2.0 ** RNG.integers(-5, -1, (3, 6))), "wz": RNG.integers(lo, hi + 1, (3, 6)).astype(dtype)}
    x = exact_f32((3, 40))
    m = make_model([node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0, block_size=16),
                    node("MatMul", ["x", "wd"], ["y"])], {"x": x}, {"y": F32}, inits)
    assert_matches_ort(m, {"x": x})
    xq = ((RNG.integers(-40, 40, (4, 10)) + RNG.choice([0, 0.5], (4, 10))) * 0.5).astype(F32)
    to = S8 if lo < 0 else U8
    m = make_model([node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                    node("Cast", ["q"], ["y"], to=helper.np_dtype_to_tensor_dtype(np.dtype(to)))],
                   {"x": xq}, {"y": to}, {"s": s(0.5), "z": np.array(lo + 3, dtype)})
    y = assert_matches_ort(m, {"x": xq})["y"]
    assert y.min() == lo and y.max() == hi  # saturation at the 4-bit limits


def test_float16_quantize_and_dequantize():
    x = (RNG.integers(-300, 300, (4, 8)) * 0.5).astype(np.float16)
    m = single("QuantizeLinear", {"x": x}, {"s": np.array(0.25, np.float16), "z": np.array(3, S8)}, S8, ["x", "s", "z"])
    assert_matches_ort(m, {"x": x})
    q = rnd(S8, (4, 8))
    m = single("DequantizeLinear", {"x": q}, {"s": np.array(0.0123, np.float16), "z": np.array(3, S8)}, np.float16,
               ["x", "s", "z"])
    assert_matches_ort(m, {"x": q})

# -- MatMulInteger / QLinearMatMul ---------------------------------------------------------
def _weights(dtype, shape, a_dtype=U8):
    """Full range, except |w| <= 64 for u8×s8 where ORT's AVX2 kernel saturates int16 pairs."""
    if a_dtype == U8 and dtype == S8:
        return rnd(S8, shape, -64, 64)
    return rnd(dtype, shape)


MATMUL_SHAPES = [((3, 5), (5, 4)), ((2, 1, 3, 17), (3, 17, 4)), ((17,), (17, 6)), ((2, 3, 8), (8,)), ((1, 33), (33, 1))]


@pytest.mark.parametrize("a_dtype,b_dtype", [(U8, U8), (S8, S8), (S8, U8), (U8, S8)])
@pytest.mark.parametrize("shapes", MATMUL_SHAPES)
def test_matmul_integer(a_dtype, b_dtype, shapes):
    a = rnd(a_dtype, shapes[0])
    b = _weights(b_dtype, shapes[1], a_dtype)
    za = np.array(limits(a_dtype)[1], a_dtype)  # zero points at the type limits
    zb = np.array(limits(b_dtype)[0], b_dtype)
    m = single("MatMulInteger", {"a": a}, {"b": b, "za": za, "zb": zb}, I32, ["a", "b", "za", "zb"])
    assert_matches_ort(m, {"a": a})


def test_matmul_integer_per_column_b_zero_point_and_no_zero_points():
    a, b = rnd(U8, (4, 9)), rnd(U8, (9, 5))
    zb = np.array([0, 255, 7, 128, 3], U8)
    m = single("MatMulInteger", {"a": a}, {"b": b, "zb": zb}, I32, ["a", "b", "", "zb"])
    assert_matches_ort(m, {"a": a})
    m = single("MatMulInteger", {"a": a}, {"b": b}, I32, ["a", "b"])
    assert_matches_ort(m, {"a": a})


QLMM_PARAMS = {
    # (a_scale, b_scale, y_scale): powers of two give acc/8 and acc/16: exact .5 ties everywhere
    "ties": (0.5, 0.25, 1.0),
    "ties_per_column": (0.25, [0.5, 0.25, 0.125, 1.0], 2.0),
    "random": (0.0123, 0.0311, 0.071),
    "saturating": (0.5, 0.5, 0.125),
    "random_per_column": (0.02, [0.011, 0.037, 0.0051, 0.09], 0.3),
}


@pytest.mark.parametrize("types", [(U8, U8, U8), (U8, S8, U8), (S8, S8, S8)])
@pytest.mark.parametrize("params", list(QLMM_PARAMS))
def test_qlinear_matmul(types, params):
    a_t, b_t, y_t = types
    a_s, b_s, y_s = QLMM_PARAMS[params]
    a, b = rnd(a_t, (2, 5, 12)), _weights(b_t, (12, 4), a_t)
    amin, amax = limits(a_t)
    bmin, bmax = limits(b_t)
    ymin, ymax = limits(y_t)
    sat = params == "saturating"  # mid-range zero points give both signs of acc
    az, bz = ((amin + amax) // 2, (bmin + bmax) // 2) if sat else (amin, bmax if b_t == U8 else 0)
    inits = {"as": s(a_s), "az": np.array(az, a_t), "b": b, "bs": s(b_s), "bz": np.array(bz, b_t),
             "ys": s(y_s), "yz": np.array((ymin + ymax) // 2 + 1, y_t)}
    order = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
    m = single("QLinearMatMul", {"a": a}, inits, y_t, order)
    y = assert_matches_ort(m, {"a": a})["y"]
    if sat:
        assert (y == ymin).any() and (y == ymax).any()


def test_qlinear_matmul_vector_operands():
    a, b = rnd(U8, (12,)), rnd(U8, (12,))
    inits = {"as": s(0.5), "az": np.array(3, U8), "b": b, "bs": s(0.25), "bz": np.array(250, U8), "ys": s(64.0),
             "yz": np.array(128, U8)}
    m = single("QLinearMatMul", {"a": a}, inits, U8, ["a", "as", "az", "b", "bs", "bz", "ys", "yz"])
    assert assert_matches_ort(m, {"a": a})["y"].shape == ()


def test_qlinear_matmul_per_column_b_zero_point():
    a, b = rnd(U8, (3, 6, 10)), rnd(U8, (10, 5))
    inits = {"as": s(0.5), "az": np.array(255, U8), "b": b, "bs": s([0.25, 0.5, 0.125, 0.25, 1.0]),
             "bz": np.array([0, 255, 128, 7, 200], U8), "ys": s(64.0), "yz": np.array(128, U8)}
    m = single("QLinearMatMul", {"a": a}, inits, U8, ["a", "as", "az", "b", "bs", "bz", "ys", "yz"])
    assert_matches_ort(m, {"a": a})


# -- ConvInteger / QLinearConv -------------------------------------------------------------
CONV_CASES = {
    # name: (x shape, w shape, attrs)
    "plain": ((1, 3, 7, 8), (4, 3, 3, 3), {}),
    "stride_pad": ((2, 3, 9, 8), (5, 3, 3, 2), {"strides": [2, 3], "pads": [1, 0, 2, 1]}),
    "dilation": ((1, 2, 10, 9), (3, 2, 3, 3), {"dilations": [2, 3], "pads": [2, 1, 2, 1]}),
    "groups": ((1, 6, 6, 6), (4, 3, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    "depthwise": ((2, 4, 7, 7), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    "multiplier": ((1, 3, 6, 5), (6, 1, 3, 3), {"group": 3}),
    "same_upper": ((1, 2, 7, 6), (3, 2, 3, 4), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "valid": ((1, 2, 7, 6), (3, 2, 2, 3), {"auto_pad": "VALID"}),
    "conv1d": ((2, 3, 11), (4, 3, 3), {"strides": [2], "pads": [1, 2]}),
}


@pytest.mark.parametrize("x_dtype,w_dtype", [(U8, U8), (U8, S8), (S8, S8)])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_integer(x_dtype, w_dtype, case):
    xs, ws, attrs = CONV_CASES[case]
    x, w = rnd(x_dtype, xs), _weights(w_dtype, ws, x_dtype)
    zx = np.array(limits(x_dtype)[1], x_dtype)  # the zero point fills the padding
    zw = np.array(limits(w_dtype)[0] // 2, w_dtype)
    m = single("ConvInteger", {"x": x}, {"w": w, "zx": zx, "zw": zw}, I32, ["x", "w", "zx", "zw"], **attrs)
    assert_matches_ort(m, {"x": x})


@pytest.mark.parametrize("types", [(U8, U8, U8), (U8, S8, U8), (S8, S8, S8)])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_qlinear_conv(types, case):
    x_t, w_t, y_t = types
    xs, ws, attrs = CONV_CASES[case]
    o = ws[0]
    x, w = rnd(x_t, xs), _weights(w_t, ws, x_t)
    ymin, ymax = limits(y_t)
    per_channel = case in ("plain", "depthwise", "groups", "conv1d")
    w_s = s(2.0 ** RNG.integers(-4, 0, o)) if per_channel else s(0.125)  # power-of-two: ties
    inits = {"xs": s(0.25), "xz": np.array(limits(x_t)[0], x_t), "w": w, "ws": w_s,
             "wz": np.array(0 if w_t == S8 else 128, w_t), "ys": s(2.0),
             "yz": np.array(ymax - 20, y_t), "b": rnd(I32, (o,), -5000, 5000)}
    order = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"]
    m = single("QLinearConv", {"x": x}, inits, y_t, order, **attrs)
    y = assert_matches_ort(m, {"x": x})["y"]
    assert ((y == ymax).any() and (y == ymin).any()) or case in ("depthwise", "multiplier")  # saturation


def test_qlinear_conv_random_scales_no_bias():
    x, w = rnd(U8, (1, 4, 9, 9)), rnd(U8, (8, 4, 3, 3))
    inits = {"xs": s(0.0173), "xz": np.array(131, U8), "w": w, "ws": s(RNG.uniform(0.001, 0.01, 8)),
             "wz": np.array(120, U8), "ys": s(0.093), "yz": np.array(0, U8)}
    m = single("QLinearConv", {"x": x}, inits, U8, ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], pads=[1, 1, 1, 1])
    assert_matches_ort(m, {"x": x})


# -- ORT's AVX2 u8×s8 pair saturation -------------------------------------------------------
def _pair_check(model, feeds):
    """Full-range u8×s8: where ORT saturates int16 pairs, pair_saturate16 reproduces it exactly."""
    if ort_pair_saturates():
        assert_matches_ort(model, feeds, pair_saturate16=True)
        exact = run_onnx(model, feeds)["y"]
        assert not np.array_equal(exact, run_onnx(model, feeds, pair_saturate16=True)["y"])
    else:  # a VNNI (or non-x86) CPU: ORT is exact
        assert_matches_ort(model, feeds)


def test_pair_saturate16_matmul_integer_and_qlinear_matmul():
    a, b = rnd(U8, (2, 7, 40)), rnd(S8, (40, 9))
    m = single("MatMulInteger", {"a": a}, {"b": b, "za": np.array(3, U8), "zb": np.array(-5, S8)}, I32,
               ["a", "b", "za", "zb"])
    _pair_check(m, {"a": a})
    inits = {"as": s(0.1), "az": np.array(3, U8), "b": b, "bs": s(RNG.uniform(0.01, 0.1, 9)), "bz": np.array(0, S8),
             "ys": s(30.0), "yz": np.array(128, U8)}
    m = single("QLinearMatMul", {"a": a}, inits, U8, ["a", "as", "az", "b", "bs", "bz", "ys", "yz"])
    _pair_check(m, {"a": a})


@pytest.mark.parametrize("case", ["plain", "stride_pad", "groups", "multiplier", "conv1d"])
def test_pair_saturate16_qlinear_conv(case):
    xs, ws, attrs = CONV_CASES[case]
    xs = (xs[0], xs[1] * 4) + xs[2:]  # more channels: more pairs
    ws = (ws[0] * 2, ws[1] * 4) + ws[2:] if case != "multiplier" else (ws[0] * 4, 4) + ws[2:]
    attrs = dict(attrs, group=attrs.get("group", 1) if case != "multiplier" else 3)
    x, w = rnd(U8, xs), rnd(S8, ws)
    inits = {"xs": s(0.1), "xz": np.array(7, U8), "w": w, "ws": s(0.05), "wz": np.array(-3, S8), "ys": s(20.0),
             "yz": np.array(128, U8), "b": rnd(I32, (ws[0],), -9000, 9000)}
    m = single("QLinearConv", {"x": x}, inits, U8, ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], **attrs)
    _pair_check(m, {"x": x})


@pytest.mark.parametrize("pair", [False, True])
def test_full_range_u8s8_conv_integer_and_depthwise_are_exact_in_ort(pair):
    """ORT's ConvInteger and depthwise QLinearConv do not saturate pairs; qsim follows ORT."""
    x, w = rnd(U8, (1, 16, 6, 6)), rnd(S8, (8, 16, 3, 3))
    m = single("ConvInteger", {"x": x}, {"w": w, "xz": np.array(9, U8)}, I32, ["x", "w", "xz"], pads=[1, 1, 1, 1])
    assert_matches_ort(m, {"x": x}, pair_saturate16=pair)
    x, w = rnd(U8, (1, 6, 7, 7)), rnd(S8, (6, 1, 3, 3))
    inits = {"xs": s(0.1), "xz": np.array(7, U8), "w": w, "ws": s(0.05), "wz": np.array(0, S8), "ys": s(2.0),
             "yz": np.array(128, U8)}
    m = single("QLinearConv", {"x": x}, inits, U8, ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], group=6)
    assert_matches_ort(m, {"x": x}, pair_saturate16=pair)


# -- float ops around quantized nodes (exact data: small integers times powers of two) -------
def exact_f32(shape, lo=-8, hi=8, step=0.25):
    return (RNG.integers(lo, hi + 1, shape) * step).astype(F32)


FLOAT_CASES = {
    "conv": (("Conv", ["x", "w", "b"]), (1, 3, 8, 7), {"w": exact_f32((4, 3, 3, 3)), "b": exact_f32((4,))},
             {"strides": [2, 1], "pads": [1, 2, 0, 1], "dilations": [1, 2]}),
    "conv_groups_same": (("Conv", ["x", "w"]), (2, 4, 7, 7), {"w": exact_f32((4, 2, 3, 3))},
                         {"group": 2, "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "conv_same_lower": (("Conv", ["x", "w"]), (1, 2, 6, 7), {"w": exact_f32((3, 2, 2, 3))},
                        {"auto_pad": "SAME_LOWER", "strides": [1, 2]}),
    "conv_depthwise_valid": (("Conv", ["x", "w"]), (1, 3, 6, 6), {"w": exact_f32((6, 1, 3, 2))},
                             {"group": 3, "auto_pad": "VALID"}),
    "gemm": (("Gemm", ["x", "w", "c"]), (5, 6), {"w": exact_f32((4, 6)), "c": exact_f32((4,))},
             {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    "gemm_transA": (("Gemm", ["x", "w"]), (6, 5), {"w": exact_f32((6, 3))}, {"transA": 1}),
    "matmul": (("MatMul", ["x", "w"]), (2, 3, 4, 6), {"w": exact_f32((3, 6, 2))}, {}),
    "add": (("Add", ["x", "w"]), (2, 3, 4), {"w": exact_f32((3, 1))}, {}),
    "relu": (("Relu", ["x"]), (3, 5), {}, {}),
    "clip": (("Clip", ["x", "lo", "hi"]), (3, 5), {"lo": np.array(-1.0, F32), "hi": np.array(0.5, F32)}, {}),
    "clip_min_only": (("Clip", ["x", "lo"]), (3, 5), {"lo": np.array(-0.25, F32)}, {}),
    "reshape": (("Reshape", ["x", "shape"]), (2, 3, 4), {"shape": np.array([0, -1, 2], np.int64)}, {}),
    "flatten": (("Flatten", ["x"]), (2, 3, 4, 5), {}, {"axis": 2}),
    "flatten_0": (("Flatten", ["x"]), (2, 3, 4), {}, {"axis": 0}),
    "maxpool": (("MaxPool", ["x"]), (1, 2, 7, 8), {}, {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1]}),
    "maxpool_ceil_dilated": (("MaxPool", ["x"]), (1, 2, 8, 9), {},
                             {"kernel_shape": [2, 3], "strides": [2, 2], "dilations": [2, 1], "ceil_mode": 1}),
    "maxpool_same": (("MaxPool", ["x"]), (1, 2, 7, 8), {}, {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "maxpool_same_lower": (("MaxPool", ["x"]), (1, 2, 7, 8), {}, {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}),
    "avgpool": (("AveragePool", ["x"]), (1, 2, 7, 8), {}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "avgpool_include_pad": (("AveragePool", ["x"]), (1, 2, 7, 8), {},
                            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    "avgpool_ceil": (("AveragePool", ["x"]), (1, 2, 8, 7), {},
                     {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 0, 1], "ceil_mode": 1}),
    "avgpool_ceil_include_pad": (("AveragePool", ["x"]), (1, 2, 8, 7), {},
                                 {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 0, 1], "ceil_mode": 1,
                                  "count_include_pad": 1}),
    "global_avgpool": (("GlobalAveragePool", ["x"]), (2, 3, 5, 7), {}, {}),
}


@pytest.mark.parametrize("case", list(FLOAT_CASES))
def test_float_ops(case):
    (op, order), xshape, inits, attrs = FLOAT_CASES[case]
    x = exact_f32(xshape)
    m = single(op, {"x": x}, inits, F32, order, **attrs)
    assert_matches_ort(m, {"x": x})


def test_exported_flatten_pattern_and_shape_ops():
    """PyTorch-style flatten of uint8 codes: Shape → Gather → Unsqueeze → Concat → Reshape; plus Squeeze."""
    x = rnd(U8, (2, 3, 1, 4))
    nodes = [node("Shape", ["x"], ["shp"]), node("Constant", [], ["i0"], value_int=0),
             node("Gather", ["shp", "i0"], ["n"], axis=0), node("Constant", [], ["ax"], value_ints=[0]),
             node("Unsqueeze", ["n", "ax"], ["n1"]), node("Constant", [], ["m1"], value_ints=[-1]),
             node("Concat", ["n1", "m1"], ["new_shape"], axis=0), node("Reshape", ["x", "new_shape"], ["flat"]),
             node("Constant", [], ["sq"], value_ints=[2]), node("Squeeze", ["x", "sq"], ["squeezed"]),
             node("Transpose", ["squeezed"], ["t"], perm=[2, 0, 1])]
    m = make_model(nodes, {"x": x}, {"flat": U8, "t": U8})
    out = assert_matches_ort(m, {"x": x})
    assert out["flat"].shape == (2, 12) and out["t"].shape == (4, 2, 3)


def test_maxpool_on_uint8_codes():
    x = rnd(U8, (1, 3, 6, 6))
    m = single("MaxPool", {"x": x}, {}, U8, ["x"], kernel_shape=[2, 2], strides=[2, 2])
    assert_matches_ort(m, {"x": x})


# -- whole networks ------------------------------------------------------------------------------
@pytest.mark.parametrize("ort_opt", ["disable", "all"])
def test_qdq_conv_net_end_to_end(ort_opt):
    """Also against ORT's default optimizations, which fuse the QDQ pattern into integer ops."""
    model, feeds = qdq_conv_net(np.random.default_rng(5))
    ours = run_onnx(model, feeds)
    theirs = run_ort(model, feeds, optimization=ort_opt)
    for name in ("y", "yq"):
        assert ours[name].dtype == theirs[name].dtype and np.array_equal(ours[name], theirs[name])
    assert len(np.unique(ours["yq"])) > 5  # a non-degenerate output


def test_model_from_ort_quantize_static_qoperator(tmp_path):
    """A model written by ORT's own quantizer runs here bit-exactly, ops qsim did not choose."""
    path, feeds = ort_quantized_cnn(np.random.default_rng(8), tmp_path / "q.onnx")
    ops = {n.op_type for n in OnnxExecutor(path).model.graph.node}
    assert {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "DequantizeLinear"} <= ops
    y = assert_matches_ort(OnnxExecutor(path).model, feeds)["y"]
    assert np.unique(y).size > 5


def test_dynamic_quantization_net_end_to_end():
    """ORT's quantize_dynamic pattern: DynamicQuantizeLinear → MatMulInteger → Cast → Mul → Mul → Add."""
    w = rnd(S8, (24, 7), -64, 64)
    inits = {"w": w, "wz": np.array(0, S8), "ws": s(0.0173), "b": RNG.normal(0, 1, 7).astype(F32)}
    nodes = [node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"]),
             node("Cast", ["acc"], ["accf"], to=helper.np_dtype_to_tensor_dtype(np.dtype(F32))),
             node("Mul", ["xs", "ws"], ["s"]), node("Mul", ["accf", "s"], ["z"]), node("Add", ["z", "b"], ["y"])]
    x = RNG.normal(0, 2, (3, 5, 24)).astype(F32)
    model = make_model(nodes, {"x": x}, {"y": F32}, inits)
    assert_matches_ort(model, {"x": x})


def test_qoperator_net_end_to_end():
    model, feeds = qoperator_net(np.random.default_rng(6))
    ours = assert_matches_ort(model, feeds)
    assert len(np.unique(ours["yq"])) > 5


# -- properties: random geometry, zero points and scales ------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.data())
def test_property_qlinear_conv_matches_ort(data):
    d = st.integers
    rng = np.random.default_rng(data.draw(d(0, 2**32 - 1)))
    types = data.draw(st.sampled_from([(U8, U8), (U8, S8), (S8, S8)]))
    g = data.draw(d(1, 3))
    cg, og = data.draw(d(1, 3)), data.draw(d(1, 3))
    kh, kw, sh, sw, dh, dw = (data.draw(d(1, 3)) for _ in range(6))
    pads = [data.draw(d(0, k - 1)) for k in (kh, kw, kh, kw)]
    h = data.draw(d((kh - 1) * dh + 1, 9))
    wd = data.draw(d((kw - 1) * dw + 1, 9))
    x = rnd(types[0], (data.draw(d(1, 2)), g * cg, h, wd), rng=rng)
    w = _weights(types[1], (g * og, cg, kh, kw), types[0]) if types == (U8, S8) else rnd(types[1], (g * og, cg, kh, kw), rng=rng)
    inits = {"xs": s(2.0 ** data.draw(d(-4, 0))), "xz": np.array(rnd(types[0], (), rng=rng), types[0]), "w": w,
             "ws": s(rng.uniform(0.001, 0.1, g * og)), "wz": np.array(0 if types[1] == S8 else rnd(U8, (), rng=rng), types[1]),
             "ys": s(data.draw(st.sampled_from([0.5, 1.0, 0.37, 2.0]))), "yz": np.array(rnd(types[0], (), rng=rng), types[0]),
             "b": rnd(I32, (g * og,), -2000, 2000, rng=rng)}
    m = single("QLinearConv", {"x": x}, inits, types[0], ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
               group=g, strides=[sh, sw], dilations=[dh, dw], pads=pads)
    assert_matches_ort(m, {"x": x})


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_property_matmul_integer_broadcasting_matches_ort(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    dims = st.integers(1, 4)
    batch_a = data.draw(st.lists(st.sampled_from([1, 2, 3]), max_size=2))
    batch_b = [data.draw(st.sampled_from([1, b])) for b in batch_a[len(batch_a) - data.draw(st.integers(0, len(batch_a))):]]
    m_, k, n = data.draw(dims), data.draw(st.integers(1, 40)), data.draw(dims)
    a_t, b_t = data.draw(st.sampled_from([(U8, U8), (S8, S8), (S8, U8)]))
    a, b = rnd(a_t, tuple(batch_a) + (m_, k), rng=rng), rnd(b_t, tuple(batch_b) + (k, n), rng=rng)
    zb = rnd(b_t, (n,) if not batch_b else (), rng=rng)  # ORT takes a per-column zb only for 2-D B
    inits = {"b": b, "za": np.array(rnd(a_t, (), rng=rng), a_t), "zb": zb}
    m = single("MatMulInteger", {"a": a}, inits, I32, ["a", "b", "za", "zb"])
    assert_matches_ort(m, {"a": a})


# -- narrow accumulators --------------------------------------------------------------------------
@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_narrow_accumulator_is_the_kernels_and_counts_per_node(overflow):
    from qsim.kernels import matmul_int

    a, b = rnd(U8, (4, 64)), rnd(S8, (64, 5))
    m = single("MatMulInteger", {"a": a}, {"b": b, "za": np.array(0, U8)}, I32, ["a", "b", "za"])
    ex = OnnxExecutor(m, acc_bits=16, overflow=overflow)
    y = ex.run({"a": a})["y"]
    want, count = matmul_int(a, b, 0, 0, acc_bits=16, overflow=overflow)
    assert np.array_equal(y, want) and count > 0
    assert list(ex.overflows.values()) == [("MatMulInteger", count)]
    if overflow == "saturate":
        assert y.min() >= -(2**15) and y.max() <= 2**15 - 1


# -- CLI and errors --------------------------------------------------------------------------------
def _save(tmp_path, model, feeds):
    import onnx

    mp, ip = tmp_path / "m.onnx", tmp_path / "in.npz"
    onnx.save(model, mp)
    np.savez(ip, **feeds)
    return str(mp), str(ip)


def test_cli_compare_ort_zero_mismatches_and_out_npz(tmp_path, capsys):
    model, feeds = qoperator_net(np.random.default_rng(7))
    mp, ip = _save(tmp_path, model, feeds)
    out = tmp_path / "out.npz"
    assert main(["run-onnx", mp, "--inputs", ip, "--out", str(out), "--compare-ort"]) == 0
    text = capsys.readouterr().out
    assert "mismatches: 0" in text
    ours = run_onnx(model, feeds)
    with np.load(out) as saved:
        assert sorted(saved.files) == sorted(ours)
        for name, y in ours.items():
            assert saved[name].dtype == y.dtype and np.array_equal(saved[name], y)


def test_cli_mismatch_exit_code_and_pair_saturate16(tmp_path, capsys):
    a, b = rnd(U8, (6, 64)), rnd(S8, (64, 5))
    model = single("MatMulInteger", {"a": a}, {"b": b}, I32, ["a", "b"])
    mp, ip = _save(tmp_path, model, {"a": a})
    plain = main(["run-onnx", mp, "--inputs", ip, "--compare-ort"])
    text = capsys.readouterr().out
    assert "y" in text and ("differ" in text if plain else "mismatches: 0" in text)
    assert plain == (1 if ort_pair_saturates() else 0)
    paired = main(["run-onnx", mp, "--inputs", ip, "--compare-ort", "--pair-saturate16"])
    assert paired == (0 if ort_pair_saturates() else 1)


def test_cli_narrow_accumulator_prints_overflows_per_node(tmp_path, capsys):
    a, b = rnd(U8, (4, 64)), rnd(S8, (64, 5))
    model = make_model([node("MatMulInteger", ["a", "b"], ["y"], name="mm1")], {"a": a}, {"y": I32}, {"b": b})
    mp, ip = _save(tmp_path, model, {"a": a})
    assert main(["run-onnx", mp, "--inputs", ip, "--acc-bits", "16", "--overflow", "saturate"]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "mm1" in ln)
    assert "MatMulInteger" in line and int(line.split()[-1]) > 0


def test_cli_unsupported_op_names_node_and_op(tmp_path, capsys):
    x = exact_f32((2, 3, 3))
    model = make_model([node("Relu", ["x"], ["r"]), node("Det", ["r"], ["y"], name="my_det")], {"x": x}, {"y": F32})
    mp, ip = _save(tmp_path, model, {"x": x})
    assert main(["run-onnx", mp, "--inputs", ip, "--compare-ort"]) == 2
    err = capsys.readouterr().err
    assert "my_det" in err and "Det" in err and "unsupported" in err and "opset 21" in err


def test_cli_missing_input_lists_graph_inputs(tmp_path, capsys):
    x = exact_f32((2, 3))
    model = make_model([node("Add", ["x", "x2"], ["y"])], {"x": x, "x2": x}, {"y": F32})
    mp, ip = _save(tmp_path, model, {"x": x})
    assert main(["run-onnx", mp, "--inputs", ip]) == 2
    err = capsys.readouterr().err
    assert "'x2' is missing" in err and "['x', 'x2']" in err


def test_cli_bad_files(tmp_path, capsys):
    x = exact_f32((2, 3))
    model = make_model([node("Relu", ["x"], ["y"])], {"x": x}, {"y": F32})
    mp, ip = _save(tmp_path, model, {"x": x})
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a protobuf\n")
    assert main(["run-onnx", str(junk), "--inputs", ip]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
    assert main(["run-onnx", str(tmp_path / "nope.onnx"), "--inputs", ip]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["run-onnx", mp, "--inputs", mp]) == 2
    assert "not a NumPy .npz" in capsys.readouterr().err


def test_api_errors():
    x = exact_f32((2, 3))
    model = make_model([node("Relu", ["x"], ["y"])], {"x": x}, {"y": F32})
    with pytest.raises(ValueError, match="'x' must have dtype float32, got float64"):
        run_onnx(model, {"x": x.astype(np.float64)})
    with pytest.raises(ValueError, match=r"must have shape \[2, 3\]"):
        run_onnx(model, {"x": x[:1]})
    with pytest.raises(ValueError, match="unknown input"):
        run_onnx(model, {"x": x, "z": x})
    with pytest.raises(ValueError, match="overflow must be one of"):
        run_onnx(model, {"x": x}, overflow="clamp")
    with pytest.raises(TypeError, match="model must be"):
        run_onnx(42, {"x": x})
    a = rnd(U8, (2, 3))
    bad = single("MatMulInteger", {"a": a}, {"b": rnd(U8, (3, 2)), "za": rnd(U8, (2,))}, I32, ["a", "b", "za"])
    with pytest.raises(ValueError, match=r"node 'MatMulInteger_0' \(MatMulInteger\): a_zero_point"):
        run_onnx(bad, {"a": a})
    q = single("QuantizeLinear", {"x": x}, {"s": s(0.0)}, U8, ["x", "s"])
    with pytest.raises(ValueError, match="y_scale must be finite and > 0"):
        run_onnx(q, {"x": x})
    com = make_model([helper.make_node("Attention", ["x"], ["y"], domain="com.microsoft")], {"x": x}, {"y": F32})
    with pytest.raises(ValueError, match=r"unsupported op Attention \(com.microsoft opset None\) at node 'Attention_0'"):
        run_onnx(com, {"x": x})


# -- QDQ fusion: what ORT deploys ------------------------------------------------------------------
def _assert_equal_outputs(ours, theirs):
    for name, b in theirs.items():
        assert ours[name].dtype == b.dtype and np.array_equal(ours[name], b), name


FUSABLE = {
    "conv_relu_int32_bias": {}, "conv_no_relu": {"relu": False}, "conv_float_bias": {"bias": "float"},
    "conv_per_tensor_no_bias": {"bias": None, "per_channel": False},
    "conv_u8u8": {"w_t": U8, "w_lim": 255}, "matmul": {"op": "MatMul", "bias": None, "per_channel": False},
    "matmul_per_column": {"op": "MatMul", "bias": None},
}


@pytest.mark.parametrize("case", list(FUSABLE))
def test_fuse_qdq_matches_ort_deployed(case):
    model, feeds = qdq_layer(np.random.default_rng(11), **FUSABLE[case])
    ex = OnnxExecutor(model, fuse_qdq=True)
    assert ex.fused == ["layer"]
    ops = [n.op_type for n in ex.model.graph.node]
    assert ("QLinearConv" in ops or "QLinearMatMul" in ops) and "Conv" not in ops and "MatMul" not in ops
    _assert_equal_outputs(ex.run(feeds), run_ort(model, feeds, optimization="all"))


NOT_FUSABLE = {
    "relu_clamps": {"relu": True, "y_zero": 5},  # Relu before a zero point above the minimum is a real clamp
    "matmul_relu_clamps": {"relu": True, "y_zero": 5, "op": "MatMul", "bias": None},
    "conv_s8_activations": {"x_t": S8, "w_t": S8, "y_zero": -128},  # ORT on x86 fuses uint8 activations only
    "matmul_s8_activations": {"op": "MatMul", "bias": None, "x_t": S8, "w_t": S8, "relu": False},
}


@pytest.mark.parametrize("case", list(NOT_FUSABLE))
def test_fuse_qdq_leaves_other_patterns_as_written(case):
    model, feeds = qdq_layer(np.random.default_rng(12), **NOT_FUSABLE[case])
    ex = OnnxExecutor(model, fuse_qdq=True)
    assert ex.fused == []
    _assert_equal_outputs(ex.run(feeds), run_ort(model, feeds))


@pytest.mark.parametrize("case", list(FUSABLE) + list(NOT_FUSABLE))
def test_fuse_qdq_fuses_exactly_what_ort_fuses(case, tmp_path):
    """The integer ops in ORT's own optimized graph (ENABLE_ALL) are the ones qsim creates."""
    import onnx
    import onnxruntime as ort

    model, _ = qdq_layer(np.random.default_rng(16), **(FUSABLE | NOT_FUSABLE)[case])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    quantized = lambda m: sorted(n.op_type for n in m.graph.node if n.op_type.startswith("QLinear"))  # noqa: E731
    ours, theirs = quantized(OnnxExecutor(model, fuse_qdq=True).model), quantized(onnx.load(so.optimized_model_filepath))
    if "s8_activations" in case and platform.machine().lower() not in ("x86_64", "amd64"):
        theirs = []  # ORT fuses int8 activations on ARM; qsim follows the x86 provider
    assert ours == theirs


def test_fuse_qdq_with_pair_saturation_reproduces_deployed_ort():
    """Full-range s8 weights in a QDQ model: deployed ORT fuses to u8×s8 and saturates pairs on AVX2."""
    model, feeds = qdq_layer(np.random.default_rng(13), w_lim=127)
    deployed = run_ort(model, feeds, optimization="all")
    if ort_pair_saturates():
        _assert_equal_outputs(run_onnx(model, feeds, fuse_qdq=True, pair_saturate16=True), deployed)
        assert not np.array_equal(run_onnx(model, feeds)["yq"], deployed["yq"])
    else:
        _assert_equal_outputs(run_onnx(model, feeds, fuse_qdq=True), deployed)


def test_fuse_qdq_on_ort_quantize_static_model(tmp_path):
    path, feeds = ort_quantized_cnn(np.random.default_rng(14), tmp_path / "qdq.onnx", quant_format="QDQ")
    ex = OnnxExecutor(path, fuse_qdq=True, acc_bits=16)
    assert sorted(n.op_type for n in ex.model.graph.node if n.op_type.startswith("QLinear")) == \
        ["QLinearConv", "QLinearConv", "QLinearMatMul"]
    assert len(ex.fused) == 3
    ex16 = ex.run(feeds)
    assert set(ex.overflows) == set(ex.fused)  # narrow accumulators now apply to the QDQ model
    _assert_equal_outputs(run_onnx(path, feeds, fuse_qdq=True), run_ort(path, feeds, optimization="all"))
    assert ex16["y"].shape == (2, 10)


def test_cli_fuse_qdq_compares_with_deployed_ort(tmp_path, capsys):
    model, feeds = qdq_layer(np.random.default_rng(15))
    mp, ip = _save(tmp_path, model, feeds)
    assert main(["run-onnx", mp, "--inputs", ip, "--fuse-qdq", "--compare-ort"]) == 0
    text = capsys.readouterr().out
    assert "fused 1 QDQ pattern(s) into integer ops: layer" in text
    assert "graph optimization: all" in text and "mismatches: 0" in text
