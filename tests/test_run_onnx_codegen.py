"""The generated plan function (`qsim.onnxrun.codegen`) and the one-call float Conv
(`qsim.onnxrun.fastconv`) against the plan interpreter and the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qsim.onnxrun.executor import OnnxExecutor
from tests.test_run_onnx_plan import _qdq_conv_model


def _model(nodes, inputs, outputs, inits=(), opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for t in a:
        assert a[t].dtype == b[t].dtype and a[t].shape == b[t].shape, t
        assert np.array_equal(a[t], b[t], equal_nan=True), t


def test_generated_function_equals_plan_and_reference(monkeypatch):
    monkeypatch.setenv("QSIM_ONNX_CODEGEN", "1")
    ex = OnnxExecutor(_qdq_conv_model())
    assert ex.prepared.compiled is not None and "QLinearConv" not in ex.prepared.compiled.source
    for batch in (1, 3):
        x = {"x": np.random.default_rng(batch).uniform(-2, 2, (batch, 3, 6, 7)).astype(np.float32)}
        got = ex.run(x, keep_all=True)
        ov = dict(ex.overflows)
        _same(got, ex.prepared.run_steps(ex, ex._check_inputs(x), True))
        assert ex.overflows == ov and "QLinearConv_4" in ov
        _same(got, ex.run(x, keep_all=True, prepared=False))
        assert ex.overflows == ov
        _same(ex.run(x), {k: got[k] for k in ex.output_names})


def test_codegen_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("QSIM_ONNX_CODEGEN", "0")
    ex = OnnxExecutor(_qdq_conv_model())
    assert ex.prepared.compiled is None
    x = {"x": np.ones((1, 3, 6, 7), np.float32)}
    _same(ex.run(x, keep_all=True), ex.run(x, keep_all=True, prepared=False))


def _unnamed_output_model():
    """DynamicQuantizeLinear's scale output left unnamed, then Clip with its min left empty:
    the empty input is None (no lower bound), not the dropped scale."""
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "", "zp"]),
             helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "half"], ["hi"]),
             helper.make_node("Clip", ["x", "", "hi"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                   helper.make_tensor_value_info("q", TensorProto.UINT8, None)],
                  [numpy_helper.from_array(np.float32(0.5), "half")])


@pytest.mark.parametrize("codegen", ["1", "0"])
def test_unnamed_outputs_are_dropped(monkeypatch, codegen):
    monkeypatch.setenv("QSIM_ONNX_CODEGEN", codegen)
    ex = OnnxExecutor(_unnamed_output_model())
    x = {"x": np.linspace(-3, 3, 10, dtype=np.float32).reshape(2, 5)}
    got = ex.run(x, keep_all=True)
    _same(got, ex.run(x, keep_all=True, prepared=False))
    assert got["y"].min() == -3  # no lower bound


@pytest.mark.parametrize("codegen", ["1", "0"])
def test_missing_input_is_named_when_reached(monkeypatch, codegen):
    monkeypatch.setenv("QSIM_ONNX_CODEGEN", codegen)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "nowhere"], ["y"])]
    ex = OnnxExecutor(_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]))
    with pytest.raises(ValueError, match=r"node 'Add_1' \(Add\): input tensor 'nowhere' is not produced"):
        ex.run({"x": np.ones(3, np.float32)})


@pytest.mark.parametrize("codegen", ["1", "0"])
def test_op_error_names_the_node(monkeypatch, codegen):
    monkeypatch.setenv("QSIM_ONNX_CODEGEN", codegen)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    ex = OnnxExecutor(_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                             [numpy_helper.from_array(np.array([4, 2], np.int64), "shape")]))
    with pytest.raises(ValueError, match=r"node 'Reshape_0' \(Reshape\)"):
        ex.run({"x": np.ones(6, np.float32)})


# -- fastconv.conv_once against f32_ops.conv_prepared ------------------------------------------------------
@pytest.mark.parametrize("shape,o,kernel,attrs", [
    ((1, 129, 4), 128, (3,), dict(pads=[1, 1])),
    ((2, 128, 4), 64, (3,), dict(pads=[1, 1], strides=[2])),
    ((1, 64, 1), 128, (3,), dict(pads=[1, 1])),
    ((1, 128, 1), 1, (1,), {}),
    ((1, 1, 832), 258, (256,), dict(strides=[128])),
    ((3, 6, 7, 5), 4, (3, 3), dict(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2])),
    ((2, 8, 5, 5), 6, (1, 1), dict(group=2)),
    ((1, 8, 9, 9), 4, (3, 3), dict(group=4, pads=[1, 1, 1, 1])),
    ((1, 300, 3, 3), 40, (1, 1), {}),
])
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv_once_equals_conv_prepared(shape, o, kernel, attrs, with_bias):
    from qsim.onnxrun.f32_ops import conv_prepared
    from qsim.onnxrun.fastconv import conv_once, conv_params
    from qsim.onnxrun.ops import NodeContext
    from qsim.onnxrun.spatial import window

    rng = np.random.default_rng(sum(shape) + o)
    g = attrs.get("group", 1)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((o, shape[1] // g) + kernel).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32) if with_bias else None
    x.reshape(-1)[:3] = [np.nan, -0.0, np.inf]
    wg = np.ascontiguousarray(w.reshape(g, o // g, -1))
    wg_t = np.ascontiguousarray(wg.transpose(0, 2, 1))
    win = window(attrs, shape[2:], kernel)
    p = conv_params(win, kernel, shape[1], g, o // g, b is not None)
    assert p is not None
    ctx = NodeContext("c", "Conv", 13)
    want = conv_prepared(ctx, x, w, wg, b, attrs, wg_t, win)[0]
    n = shape[0]
    y = np.empty((n, g, o // g, int(p[8] * p[9])), np.float32)
    conv_once(x if x.ndim == 4 else x.reshape(n, shape[1], 1, shape[2]), wg, wg_t,
              np.zeros(0, np.float32) if b is None else b, p, y)
    got = y.reshape(want.shape)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_conv_params_leaves_depthwise_to_conv_prepared():
    from qsim.onnxrun.fastconv import conv_params
    from qsim.onnxrun.spatial import window

    assert conv_params(window({}, (5, 5), (3, 3)), (3, 3), 8, 8, 1, True) is None
    assert conv_params(window({}, (4, 4, 4), (1, 1, 1)), (1, 1, 1), 8, 1, 2, True) is None
