"""ORT's com.microsoft QOperator contrib ops on qsim vs onnxruntime: integer outputs identical."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from qsim.onnxrun import run_onnx, run_ort

RNG = np.random.default_rng(11)
U8, S8, I32, F32 = np.uint8, np.int8, np.int32, np.float32
MS = "com.microsoft"


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def ms_model(op, inputs: dict, inits: dict, order, out_dtype, n_out=1, **attrs):
    outs = ["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, order, outs, domain=MS, **attrs)
    graph = helper.make_graph([node], "t", [_vi(k, v.dtype, v.shape) for k, v in inputs.items()],
                              [_vi(o, out_dtype, None) for o in outs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(MS, 1)],
                             ir_version=8)


def codes(dtype, shape):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max + 1, shape).astype(dtype)


def check(model, feeds, exact=True, atol=0.0):
    ours, theirs = run_onnx(model, feeds), run_ort(model, feeds)
    for k, b in theirs.items():
        a = ours[k]
        assert a.dtype == b.dtype and a.shape == b.shape, (k, a.dtype, a.shape, b.dtype, b.shape)
        if exact:
            bad = np.flatnonzero(a != b)
            assert bad.size == 0, f"{k}: {bad.size}/{a.size} differ, qsim {a.ravel()[bad[:6]]} ORT {b.ravel()[bad[:6]]}"
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=atol)


def qp(dtype, lo=0.01, hi=0.2):
    """A random (scale, zero point) pair."""
    info = np.iinfo(dtype)
    return np.array(RNG.uniform(lo, hi), F32), np.array(RNG.integers(info.min // 2, info.max // 2 + 1), dtype)


@pytest.mark.parametrize("dtype", [U8, S8])
@pytest.mark.parametrize("op", ["QLinearSigmoid", "QLinearLeakyRelu"])
def test_table_activations(op, dtype):
    x = codes(dtype, (2, 3, 17, 5))
    (xs, xz), (ys, yz) = qp(dtype, 0.02, 0.1), qp(dtype, 0.002, 0.01)
    attrs = {"alpha": 0.1} if op == "QLinearLeakyRelu" else {}
    m = ms_model(op, {"x": x}, {"xs": xs, "xz": xz, "ys": ys, "yz": yz}, ["x", "xs", "xz", "ys", "yz"], dtype, **attrs)
    check(m, {"x": x})


@pytest.mark.parametrize("dtype", [U8, S8])
@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("bshape", [(2, 8, 9, 7), (1, 8, 1, 1), (7,), ()])
def test_binary(op, dtype, bshape):
    a, b = codes(dtype, (2, 8, 9, 7)), codes(dtype, bshape)
    (sa, za), (sb, zb), (sc, zc) = qp(dtype), qp(dtype), qp(dtype, 0.05, 0.3)
    inits = {"sa": sa, "za": za, "b": b, "sb": sb, "zb": zb, "sc": sc, "zc": zc}
    m = ms_model(op, {"a": a}, inits, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], dtype)
    check(m, {"a": a})


@pytest.mark.parametrize("dtype", [U8, S8])
def test_binary_scalar_first_operand(dtype):
    a, b = codes(dtype, ()), codes(dtype, (3, 40))
    (sa, za), (sb, zb), (sc, zc) = qp(dtype), qp(dtype), qp(dtype, 0.05, 0.3)
    m = ms_model("QLinearAdd", {"b": b}, {"a": a, "sa": sa, "za": za, "sb": sb, "zb": zb, "sc": sc, "zc": zc},
                 ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], dtype)
    check(m, {"b": b})


@pytest.mark.parametrize("dtype", [U8, S8])
def test_global_average_pool(dtype):
    x = codes(dtype, (2, 16, 7, 9))
    (xs, xz), (ys, yz) = qp(dtype), qp(dtype, 0.01, 0.05)
    m = ms_model("QLinearGlobalAveragePool", {"x": x}, {"xs": xs, "xz": xz, "ys": ys, "yz": yz},
                 ["x", "xs", "xz", "ys", "yz"], dtype, channels_last=0)
    check(m, {"x": x})


@pytest.mark.parametrize("attrs", [dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                                   dict(kernel_shape=[2, 2], strides=[2, 2]),
                                   dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)])
def test_average_pool(attrs):
    x = codes(U8, (2, 4, 9, 8))
    (xs, xz), (ys, yz) = qp(U8), qp(U8)
    m = ms_model("QLinearAveragePool", {"x": x}, {"xs": xs, "xz": xz, "ys": ys, "yz": yz},
                 ["x", "xs", "xz", "ys", "yz"], U8, **attrs)
    check(m, {"x": x})


@pytest.mark.parametrize("dtype", [U8, S8])
def test_concat(dtype):
    a, b = codes(dtype, (2, 3, 4)), codes(dtype, (2, 5, 4))
    (sa, za), (sy, zy) = qp(dtype), qp(dtype)
    m = ms_model("QLinearConcat", {"a": a, "b": b}, {"sy": sy, "zy": zy, "sa": sa, "za": za},
                 ["sy", "zy", "a", "sa", "za", "b", "sy", "zy"], dtype, axis=1)
    check(m, {"a": a, "b": b})


@pytest.mark.parametrize("dtype", [U8, S8])
@pytest.mark.parametrize("opset,axis", [(13, -1), (13, 1), (12, 1)])
def test_softmax(dtype, opset, axis):
    x = codes(dtype, (3, 10, 6))
    xs = np.array(0.08, F32)
    zero = np.array(0 if dtype == U8 else -128, dtype)
    ys = np.array(1 / 256, F32)
    m = ms_model("QLinearSoftmax", {"x": x}, {"xs": xs, "xz": codes(dtype, ()), "ys": ys, "yz": zero},
                 ["x", "xs", "xz", "ys", "yz"], dtype, opset=opset, axis=axis)
    check(m, {"x": x})


@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("out", ["u8", "float"])
def test_qgemm(per_column, out):
    a = codes(U8, (5, 40))
    b = RNG.integers(-64, 65, (12, 40)).astype(S8)
    sa, za = qp(U8)
    sb = RNG.uniform(0.001, 0.01, 12 if per_column else ()).astype(F32)
    zb = np.zeros(12 if per_column else (), S8)
    c = RNG.integers(-2000, 2000, 12).astype(I32)
    inits = {"sa": sa, "za": za, "b": b, "sb": sb, "zb": zb, "c": c}
    order = ["a", "sa", "za", "b", "sb", "zb", "c"]
    if out == "u8":
        inits.update(ys=np.array(0.05, F32), yz=np.array(100, U8))
        order += ["ys", "yz"]
    m = ms_model("QGemm", {"a": a}, inits, order, U8 if out == "u8" else F32, transB=1, alpha=1.0)
    check(m, {"a": a})
