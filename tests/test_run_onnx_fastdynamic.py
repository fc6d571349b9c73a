"""The prepared DynamicQuantizeLinear (`qsim.onnxrun.fastdynamic`) equals the generic op (the
reference interpreter) bit for bit."""

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
