"""The prepared DynamicQuantizeLinear and ConvInteger (`qsim.onnxrun.fastdynamic`) equal the
generic ops (the reference interpreter) bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qsim.onnxrun.executor import OnnxExecutor


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def _dql():
    return _model([helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                  [helper.make_tensor_value_info(k, TensorProto.UNDEFINED, None) for k in ("q", "s", "z")])


def _equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert np.array_equal(a[k].reshape(-1).view(np.uint8), b[k].reshape(-1).view(np.uint8)), k


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the generic op's NumPy on ±3e38 and denormals
@pytest.mark.parametrize("values", [
    np.random.default_rng(0).uniform(-3, 5, (1, 129, 4)), np.random.default_rng(1).uniform(-3, -1, (7,)),
    np.random.default_rng(2).uniform(0.5, 2, (2, 3)), np.zeros((4, 4)), np.array([-0.0, 0.0, -0.0]),
    np.array([-0.0, -1e-3]), np.array([3.0e38, -3.0e38]), np.array(2.5), np.array([1e-30, 2e-30])])
def test_dynamic_quantize_linear_equals_reference(values):
    ex = _dql()
    assert ex.prepared.specialised == ["DynamicQuantizeLinear_0"]
    x = {"x": np.asarray(values, np.float32)}
    _equal(ex.run(x), ex.run(x, prepared=False))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_dynamic_quantize_linear_scale_underflow_fails_as_the_generic_op():
    ex = _dql()
    x = {"x": np.array([1e-44, 2e-44, 0.0], np.float32)}  # (max − min) / 255 rounds to 0
    msgs = []
    for prepared in (True, False):
        with pytest.raises(ValueError) as err:
            ex.run(x, prepared=prepared)
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_dynamic_quantize_linear_rejects_non_finite(bad):
    ex = _dql()
    with pytest.raises(ValueError, match="NaN or Inf"):
        ex.run({"x": np.array([1.0, bad, 2.0], np.float32)})


@pytest.mark.parametrize("xdt,wzp,kernel,attrs,shape", [
    (np.uint8, None, (3,), dict(pads=[1, 1]), (1, 129, 4)),
    (np.uint8, "scalar", (3,), dict(pads=[1, 1], strides=[2]), (2, 128, 4)),
    (np.int8, "channel", (3, 3), dict(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2]), (2, 5, 7, 6)),
    (np.uint8, None, (256,), dict(strides=[128]), (1, 1, 832)),
    (np.uint8, None, (1, 1), {}, (1, 16, 3, 3)),
    (np.uint8, None, (3,), {}, (1, 600, 5)),   # K·255·127 ≥ 2^24: the plan's other paths
])
@pytest.mark.parametrize("runtime_zp", [True, False])
def test_conv_integer_equals_reference(xdt, wzp, kernel, attrs, shape, runtime_zp):
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
