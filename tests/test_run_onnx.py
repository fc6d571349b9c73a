"""`qsim run-onnx`: every supported op equals ONNX Runtime bit for bit (exact equality).

Models are built here with onnx.helper. ORT runs the graph as written (no fusion).
Where ORT's u8×s8 kernel saturates int16 pairs (AVX2 without VNNI) the exact tests keep
|w| ≤ 64; pair saturation itself is tested against ORT with full-range data.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper

from qsim.cli import main
from qsim.onnxrun import OnnxExecutor, run_onnx
from tests.onnx_models import assert_matches_ort, make_model, node, ort_pair_saturates, s, single

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
