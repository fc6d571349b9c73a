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


def _dyn_lstm(direction, per_column, with_bp, wdt=np.int8, seed=0, ort_target="host"):
    nd, hs, i = (2 if direction == "bidirectional" else 1), 6, 5
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 128) if wdt == np.int8 else (0, 256)
    w = rng.integers(lo, hi, (nd, i, 4 * hs)).astype(wdt)
    r = rng.integers(lo, hi, (nd, hs, 4 * hs)).astype(wdt)
    shape = (nd, 4 * hs) if per_column else (nd,)
    inits = {"w": w, "r": r, "ws": rng.uniform(1e-3, 1e-2, shape).astype(np.float32),
             "wz": rng.integers(0, 3, shape).astype(wdt), "rs": rng.uniform(1e-3, 1e-2, shape).astype(np.float32),
             "rz": np.zeros(shape, wdt)}
    if with_bp:
        inits |= {"b": rng.standard_normal((nd, 8 * hs)).astype(np.float32),
                  "p": rng.standard_normal((nd, 3 * hs)).astype(np.float32)}
    ins = ["x", "w", "r", "b" if with_bp else "", "", "h0", "c0", "p" if with_bp else "", "ws", "wz", "rs", "rz"]
    node = helper.make_node("DynamicQuantizeLSTM", ins, ["y", "hn", "cn"], domain="com.microsoft", hidden_size=hs,
                            direction=direction)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, TensorProto.FLOAT, None)
                                            for k in ("x", "h0", "c0")],
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in ("y", "hn", "cn")],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("com.microsoft", 1)])
    return OnnxExecutor(model, ort_target=ort_target), nd, hs, i


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("per_column,with_bp,wdt", [(False, True, np.int8), (True, False, np.int8),
                                                    (True, True, np.uint8)])
@pytest.mark.parametrize("target", ["exact", "avx2"])
def test_dynamic_quantize_lstm_equals_reference(direction, per_column, with_bp, wdt, target):
    ex, nd, hs, i = _dyn_lstm(direction, per_column, with_bp, wdt, ort_target=target)
    # int16 pair saturation (an AVX2-only ORT with int8 weights) is modelled by the generic op only
    saturating = target == "avx2" and wdt == np.int8
    assert ex.prepared.specialised == ([] if saturating else ["DynamicQuantizeLSTM_0"])
    rng = np.random.default_rng(3)
    for t, n in ((1, 1), (3, 2)):
        f = {"x": rng.uniform(-2, 2, (t, n, i)).astype(np.float32),
             "h0": rng.uniform(-1, 1, (nd, n, hs)).astype(np.float32),
             "c0": rng.uniform(-1, 1, (nd, n, hs)).astype(np.float32)}
        got = ex.run(f)
        ov = dict(ex.overflows)
        _equal(got, ex.run(f, prepared=False))
        assert ov == ex.overflows and set(ov) == {"DynamicQuantizeLSTM_0"}
        assert saturating or ov["DynamicQuantizeLSTM_0"] == ("DynamicQuantizeLSTM", 0)


def test_dynamic_quantize_lstm_non_finite_input_is_reported():
    ex, nd, hs, i = _dyn_lstm("forward", False, True)
    f = {"x": np.full((1, 1, i), np.nan, np.float32), "h0": np.zeros((nd, 1, hs), np.float32),
         "c0": np.zeros((nd, 1, hs), np.float32)}
    with pytest.raises(ValueError, match="NaN or Inf"):
        ex.run(f)
