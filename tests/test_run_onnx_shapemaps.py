"""The prepared data-movement ops (`qsim.onnxrun.shapemaps`) equal the generic ops bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qsim.onnxrun.executor import OnnxExecutor

I64 = np.int64


def _one_node(op, x_type, consts: dict, opset=13, **attrs):
    node = helper.make_node(op, ["x", *consts], ["y"], **attrs)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", x_type, None)],
                              [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)], inits)
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    assert ex.prepared.specialised == [f"{op}_0"]
    return ex


def _check(ex, *xs):
    for x in xs:  # several shapes, each twice (the first call records the map)
        for _ in range(2):
            got, want = ex.run({"x": x})["y"], ex.run({"x": x}, prepared=False)["y"]
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got.reshape(-1).view(np.uint8), want.reshape(-1).view(np.uint8))


def _x(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(-9, 9, shape).astype(dtype)


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([0], [129], [1], [1]), ([129], [1000], [1], None), ([-1, 0], [-1000, 3], [2, 0], [-2, 1]),
    ([1], [-1], [-1], [3])])
def test_slice_map(starts, ends, axes, steps):
    consts = {"starts": np.array(starts, I64), "ends": np.array(ends, I64), "axes": np.array(axes, I64)}
    if steps is not None:
        consts["steps"] = np.array(steps, I64)
    ex = _one_node("Slice", TensorProto.FLOAT, consts)
    _check(ex, _x((1, 258, 5)), _x((2, 130, 9)), _x((3, 300, 4))[:, ::2])


@pytest.mark.parametrize("idx,axis", [(np.array(1, I64), 0), (np.array([-1, 0, 2], I64), 1),
                                      (np.array([[0], [-2]], I64), -1)])
def test_gather_map(idx, axis):
    ex = _one_node("Gather", TensorProto.INT64, {"i": idx}, axis=axis)
    _check(ex, np.arange(2 * 3 * 4, dtype=I64).reshape(2, 3, 4), np.arange(3 * 3 * 3, dtype=I64).reshape(3, 3, 3))


def test_gather_map_rejects_an_out_of_range_shape_each_time():
    ex = _one_node("Gather", TensorProto.FLOAT, {"i": np.array([2], I64)})
    for _ in range(2):
        with pytest.raises(ValueError, match="out of range"):
            ex.run({"x": _x((2, 3))})
    _check(ex, _x((3, 3)))


@pytest.mark.parametrize("op,consts,attrs,shapes", [
    ("Squeeze", {"a": np.array([1], I64)}, {}, [(2, 1, 3), (1, 1, 128)]),
    ("Squeeze", {}, {}, [(1, 3, 1), (2, 1)]),
    ("Unsqueeze", {"a": np.array([0, -1], I64)}, {}, [(3,), (2, 5)]),
    ("Reshape", {"s": np.array([0, -1], I64)}, {}, [(2, 3, 4), (5, 1)]),
    ("Reshape", {"s": np.array([0, 4], I64)}, dict(allowzero=1), [(0, 2, 2)]),
])
def test_reshape_map(op, consts, attrs, shapes):
    opset = 14 if op == "Reshape" else 13
    ex = _one_node(op, TensorProto.FLOAT, consts, opset=opset, **attrs)
    _check(ex, *[_x(s) for s in shapes])
    out = ex.run({"x": _x(shapes[0])})["y"]
    assert out.shape == ex.run({"x": _x(shapes[0])}, prepared=False)["y"].shape


def test_reshape_map_rejects_a_bad_shape_each_time():
    ex = _one_node("Squeeze", TensorProto.FLOAT, {"a": np.array([0], I64)})
    for _ in range(2):
        with pytest.raises(ValueError, match="cannot squeeze"):
            ex.run({"x": _x((2, 3))})


@pytest.mark.parametrize("src,to", [(np.int64, TensorProto.INT32), (np.int64, TensorProto.BOOL),
                                    (np.bool_, TensorProto.INT64), (np.int32, TensorProto.FLOAT),
                                    (np.float64, TensorProto.FLOAT), (np.uint8, TensorProto.INT8)])
def test_cast(src, to):
    x_type = helper.np_dtype_to_tensor_dtype(np.dtype(src))
    ex = _one_node("Cast", x_type, {}, to=to)
    vals = np.array([0, 1, -1, 300, -129, 2 ** 40], np.int64)
    x = vals.astype(src) if np.dtype(src).kind != "f" else np.array([0.5, -1e30, np.nan, 3.25], src)
    _check(ex, x, x.reshape(-1, 1) if x.size % 2 else x.reshape(2, -1))


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
def test_sigmoid_tanh(op):
    ex = _one_node(op, TensorProto.FLOAT, {})
    x = _x((3, 7, 5), seed=4) * 3
    x.reshape(-1)[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-30]
    _check(ex, x, x[:, ::2], x[0, 0, 0].reshape(()))


@pytest.mark.parametrize("axes,keepdims,opset", [([1], 0, 13), ([-1, 0], 1, 13), (None, 1, 13), ([1], 0, 18),
                                                 ([0, 2], 1, 18)])
def test_reduce_mean(axes, keepdims, opset):
    consts, attrs = {}, dict(keepdims=keepdims)
    if axes is not None and opset >= 18:
        consts["axes"] = np.array(axes, I64)
    elif axes is not None:
        attrs["axes"] = axes
    ex = _one_node("ReduceMean", TensorProto.FLOAT, consts, opset=opset, **attrs)
    x = _x((3, 129, 4), seed=9)
    x.reshape(-1)[:2] = [np.nan, -0.0]
    _check(ex, x[:, :, :1] * 0 - 0.0, x, _x((2, 1, 5)), x[:, ::3])
