"""The exact small integer convolutions (`qsim.onnxrun.exactconv`: ConvInteger, QLinearConv) equal
the generic ops (the reference interpreter) bit for bit, and are taken where they apply."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qsim.onnxrun import exactconv
from tests.test_run_onnx_fastdynamic import _equal, _model


@pytest.fixture
def calls(monkeypatch):
    """Counts of the exact kernels' calls (the path taken)."""
    seen = {"int": 0, "q": 0}
    conv, qconv = exactconv.conv_int_exact, exactconv.qconv_exact

    def spy_int(*a):
        seen["int"] += 1
        return conv(*a)

    def spy_q(*a):
        seen["q"] += 1
        return qconv(*a)

    monkeypatch.setattr(exactconv, "conv_int_exact", spy_int)
    monkeypatch.setattr(exactconv, "qconv_exact", spy_q)
    return seen


@pytest.mark.parametrize("xdt,wzp,kernel,attrs,shape", [
    (np.uint8, None, (3,), dict(pads=[1, 1]), (1, 129, 4)),
    (np.uint8, "scalar", (3,), dict(pads=[1, 1], strides=[2]), (2, 128, 4)),
    (np.int8, "channel", (3, 3), dict(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2]), (2, 5, 7, 6)),
    (np.uint8, None, (256,), dict(strides=[128]), (1, 1, 832)),
    (np.uint8, None, (1, 1), {}, (1, 16, 3, 3)),
    (np.uint8, None, (3,), {}, (1, 600, 5)),   # K·255·127 ≥ 2^24: the plan's other paths
])
@pytest.mark.parametrize("runtime_zp", [True, False])
def test_conv_integer_equals_reference(calls, xdt, wzp, kernel, attrs, shape, runtime_zp):
    rng = np.random.default_rng(shape[1] + len(kernel))
    o = 6
    w = rng.integers(-128, 128, (o, shape[1]) + kernel).astype(np.int8)
    inits = [numpy_helper.from_array(w, "w")]
    xt = helper.np_dtype_to_tensor_dtype(np.dtype(xdt))
    ins = ["x", "w", "xz"]
    if wzp is not None:
        inits.append(numpy_helper.from_array(
            np.int8(3) if wzp == "scalar" else rng.integers(-5, 5, o).astype(np.int8), "wz"))
        ins.append("wz")
    if not runtime_zp:
        inits.append(numpy_helper.from_array(np.array(17, xdt), "xz"))
    vis = [helper.make_tensor_value_info("x", xt, None)]
    if runtime_zp:
        vis.append(helper.make_tensor_value_info("xz", xt, None))
    ex = _model([helper.make_node("ConvInteger", ins, ["y"], **attrs)], vis,
                [helper.make_tensor_value_info("y", TensorProto.INT32, None)], inits)
    assert ex.prepared.specialised == ["ConvInteger_0"]
    info = np.iinfo(xdt)
    for zp in (0, 131 if xdt == np.uint8 else -7):
        f = {"x": rng.integers(info.min, info.max + 1, shape).astype(xdt)}
        if runtime_zp:
            f["xz"] = np.array(zp, xdt)
        got, want = ex.run(f), ex.run(f, prepared=False)
        assert ex.overflows == {"ConvInteger_0": ("ConvInteger", 0)}
        _equal(got, want)
    assert (calls["int"] > 0) == (shape[1] != 600)  # K = 1800: sums may reach 2^24, the other paths


@pytest.mark.parametrize("xdt,kernel,attrs,shape,per_channel,bias_max", [
    (np.uint8, (3,), dict(pads=[1, 1]), (1, 64, 2), False, 3000),
    (np.uint8, (3,), dict(pads=[1, 1], strides=[2]), (2, 32, 4), True, 3000),
    (np.int8, (3, 3), dict(pads=[1, 1, 0, 2], strides=[1, 2], dilations=[2, 1]), (1, 4, 5, 6), True, 3000),
    (np.uint8, (3,), dict(pads=[1, 1]), (1, 64, 2), False, 1 << 24),   # bias too large: the other paths
    (np.uint8, (3,), dict(pads=[1, 1]), (1, 128, 512), False, 3000),   # too many products: the VNNI GEMM
])
def test_qlinear_conv_equals_reference(calls, xdt, kernel, attrs, shape, per_channel, bias_max):
    rng = np.random.default_rng(shape[1] + shape[-1])
    o = 8
    w = rng.integers(-128, 128, (o, shape[1]) + kernel).astype(np.int8)
    ws = rng.uniform(0.001, 0.01, o if per_channel else ()).astype(np.float32)
    wz = np.zeros(o if per_channel else (), np.int8)
    zx = np.array(130 if xdt == np.uint8 else -3, xdt)
    inits = [numpy_helper.from_array(np.float32(0.02), "xs"), numpy_helper.from_array(zx, "xz"),
             numpy_helper.from_array(w, "w"), numpy_helper.from_array(ws, "ws"), numpy_helper.from_array(wz, "wz"),
             numpy_helper.from_array(np.float32(0.05), "ys"), numpy_helper.from_array(np.array(7, xdt), "yz"),
             numpy_helper.from_array(rng.integers(-bias_max, bias_max, o).astype(np.int32), "b")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs)
    xt = helper.np_dtype_to_tensor_dtype(np.dtype(xdt))
    ex = _model([node], [helper.make_tensor_value_info("x", xt, None)],
                [helper.make_tensor_value_info("y", xt, None)], inits)
    info = np.iinfo(xdt)
    for batch in (1, 2):
        f = {"x": rng.integers(info.min, info.max + 1, (batch,) + shape[1:]).astype(xdt)}
        _equal(ex.run(f), ex.run(f, prepared=False))
    if not ex.options["pair_saturate16"]:
        assert (calls["q"] > 0) == (bias_max < 1 << 24 and shape[-1] < 512)


@pytest.mark.parametrize("o,k,q", [(7, 13, 9), (258, 256, 4), (5, 3, 1), (4, 387, 6), (1, 1, 1), (2, 0, 5)])
def test_exact_dots_equal_the_integer_product(o, k, q):
    rng = np.random.default_rng(o * 7 + k + q)
    w = rng.integers(-255, 256, (o, k)).astype(np.float32)
    cols = rng.integers(-255, 256, (q, k)).astype(np.float32)
    acc = np.full((q, o), np.nan, np.float32)
    exactconv.exact_dots(w, cols, acc)
    assert np.array_equal(acc.astype(np.int64), cols.astype(np.int64) @ w.astype(np.int64).T)
