"""`qsim run-onnx` ops added for real models, each against ONNX Runtime (graph as written).

Integer outputs must be identical (np.array_equal); float outputs equal ORT's where the
computation is defined in float32 the same way, else within the tolerance stated per case.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from qsim.onnxrun import run_onnx, run_ort
from tests.onnx_models import assert_matches_ort, make_model, node, single

RNG = np.random.default_rng(20261130)
U8, S8, I32, I64, F32 = np.uint8, np.int8, np.int32, np.int64, np.float32


def f32(*shape, lo=-3.0, hi=3.0):
    return RNG.uniform(lo, hi, shape).astype(F32)


# -- issue 11 bugs ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [U8, S8, I32])
def test_dequantize_1d_initializer_per_tensor_without_axis(dtype):
    """quantize_static's per-tensor bias / PRelu slope: 1-D codes, scalar scale, default axis 1."""
    codes = RNG.integers(-100 if dtype != U8 else 0, 100, 7).astype(dtype)
    x = f32(3, 7)
    inits = {"c": codes, "s": np.array(0.125, F32)}
    order = ["c", "s"]
    if dtype != I32:
        inits["z"] = np.array(3, dtype)
        order.append("z")
    nodes = [node("DequantizeLinear", order, ["b"]), node("Add", ["x", "b"], ["y"])]
    m = make_model(nodes, {"x": x}, {"y": F32}, inits, opset=13)
    assert_matches_ort(m, {"x": x})


def test_quantize_1d_per_tensor_without_axis():
    x = f32(9)
    m = single("QuantizeLinear", {"x": x}, {"s": np.array(0.05, F32), "z": np.array(7, U8)}, U8, ["x", "s", "z"],
               opset=13)
    assert_matches_ort(m, {"x": x})


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 3], strides=[1, 2], storage_order=1),
    dict(kernel_shape=[2, 2], strides=[2, 2], dilations=[2, 1], ceil_mode=1),
])
def test_maxpool_indices_output(attrs):
    x = RNG.integers(-3, 4, (2, 3, 7, 8)).astype(F32)  # many ties: the first maximum must win
    m = make_model([node("MaxPool", ["x"], ["y", "i"], **attrs)], {"x": x}, {"y": F32, "i": I64}, opset=13)
    ours = run_onnx(m, {"x": x})
    theirs = run_ort(m, {"x": x})
    assert np.array_equal(ours["y"], theirs["y"])
    assert ours["i"].dtype == np.int64 and np.array_equal(ours["i"], theirs["i"])
