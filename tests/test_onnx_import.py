"""ONNX import of float, QDQ and QOperator models built here with onnx.helper."""

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qsim.workload import Conv2d, Dense, Elementwise, LayerNorm, MatMul, Pool2d, Softmax
from qsim.workload.onnx_import import from_onnx, import_onnx

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits, opset=17, domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=ops)
    if not domains:  # a valid model once its output shapes are inferred (the tests leave them out)
        onnx.checker.check_model(onnx.shape_inference.infer_shapes(model, strict_mode=True))
    return model


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _float_convnet(batch_dim="N"):
    inits = {"w1": _f32(8, 1, 3, 3), "b1": _f32(8), "w2": _f32(10, 8 * 7 * 7), "b2": _f32(10)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flatten"),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["y"], name="fc", transB=1, alpha=0.5, beta=2.0),
    ]
    x = helper.make_tensor_value_info("x", F, [batch_dim, 1, 28, 28])
    return _model(nodes, [x], [helper.make_tensor_value_info("y", F, None)], inits), inits


def test_float_convnet(tmp_path):
    model, inits = _float_convnet()
    path = tmp_path / "net.onnx"
    onnx.save(model, path)
    imp = import_onnx(path, batch=2)
    w = imp.workload
    assert [type(layer) for layer in w] == [Conv2d, Elementwise, Pool2d, Dense]
    conv, relu, pool, fc = w
    assert (conv.in_channels, conv.out_channels, conv.output_hw, conv.batch) == (1, 8, (14, 14), 2)
    assert relu.kind == "relu" and relu.elements == 2 * 8 * 14 * 14
    assert pool.output_hw == (7, 7) and pool.kind == "max"
    assert (fc.in_features, fc.out_features, fc.batch) == (392, 10, 2)
    assert w.total_macs == 2 * 14 * 14 * 8 * 9 + 2 * 392 * 10
    np.testing.assert_array_equal(imp.weights["conv1"], inits["w1"])
    np.testing.assert_array_equal(imp.biases["conv1"], inits["b1"])
    np.testing.assert_allclose(imp.weights["fc"], 0.5 * inits["w2"])  # alpha folded, (out, in) layout
    np.testing.assert_allclose(imp.biases["fc"], 2.0 * inits["b2"])
    assert imp.attributes["conv1"]["pads"] == [1, 1, 1, 1] and imp.attributes["conv1"]["strides"] == [2, 2]
    assert imp.attributes["fc"]["inputs"] == ["f1"] and imp.attributes["fc"]["input_shapes"] == [(2, 392)]
    assert imp.inputs == {"x": (2, 1, 28, 28)} and imp.outputs == {"y": (2, 10)}
    assert imp.quant_params == {} and imp.int_weights == {}
    assert from_onnx(model, batch=2).total_macs == w.total_macs  # a ModelProto works too


@pytest.mark.parametrize("attrs, in_hw, out_hw", [
    ({"pads": [0, 0, 1, 1], "strides": [2, 2]}, (8, 8), (4, 4)),              # TF-style SAME, stride 2
    ({"pads": [0, 1, 0, 2]}, (6, 7), (4, 8)),                                 # odd total pad at stride 1
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (10, 11), (5, 6)),
    ({"auto_pad": "VALID", "dilations": [2, 2]}, (9, 9), (5, 5)),
])
def test_conv_padding_variants_keep_output_and_macs_exact(attrs, in_hw, out_hw):
    inits = {"w": _f32(4, 3, 3, 3)}
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", **attrs)
    model = _model([node], [helper.make_tensor_value_info("x", F, [1, 3, *in_hw])],
                   [helper.make_tensor_value_info("y", F, None)], inits)
    conv = from_onnx(model)["c"]
    assert conv.output_hw == out_hw
    assert conv.macs == out_hw[0] * out_hw[1] * 4 * 3 * 9


def test_conv1d_and_depthwise_group():
    inits = {"w1": _f32(6, 2, 5), "w2": _f32(6, 1, 3)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", strides=[2]),
             helper.make_node("Conv", ["c1", "w2"], ["y"], name="dw", group=6, pads=[1, 1])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [3, 2, 40])],
                   [helper.make_tensor_value_info("y", F, None)], inits)
    c1, dw = from_onnx(model)
    assert c1.output_hw == (1, 18) and c1.kernel_size == (1, 5) and c1.macs == 3 * 18 * 6 * 2 * 5
    assert dw.depthwise and dw.macs == 3 * 18 * 6 * 3


def _qdq_convnet():
    w_int = RNG.integers(-127, 128, (4, 2, 3, 3), dtype=np.int8)
    w_scale = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    x_scale, y_scale = np.float32(0.05), np.float32(0.1)
    b_int = np.array([10, -20, 30, -40], np.int32)
    fc_int = RNG.integers(-127, 128, (3, 4 * 6 * 6), dtype=np.int8)
    fc_scale = np.array([0.5, 0.25, 0.125], np.float32)
    inits = {
        "x_s": np.array(x_scale), "x_zp": np.array(128, np.uint8), "y_s": np.array(y_scale),
        "y_zp": np.array(0, np.uint8), "w_q": w_int, "w_s": w_scale, "w_zp": np.zeros(4, np.int8),
        "b_q": b_int, "b_s": (x_scale * w_scale).astype(np.float32), "b_zp": np.zeros(4, np.int32),
        "fc_q": fc_int, "fc_s": fc_scale, "fc_zp": np.zeros(3, np.int8),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_s", "x_zp"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], axis=0),
        helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_zp"], ["b"], axis=0),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "y_s", "y_zp"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "y_s", "y_zp"], ["rd"]),
        helper.make_node("Flatten", ["rd"], ["f"]),
        helper.make_node("DequantizeLinear", ["fc_q", "fc_s", "fc_zp"], ["fcw"], axis=0),
        helper.make_node("Gemm", ["f", "fcw"], ["y"], name="fc", transB=1),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [1, 2, 8, 8])],
                   [helper.make_tensor_value_info("y", F, None)], inits, opset=13)
    return model, inits


def test_qdq_convnet_weights_and_quant_params():
    model, inits = _qdq_convnet()
    imp = import_onnx(model)
    assert [layer.name for layer in imp.workload] == ["conv", "relu", "fc"]
    assert imp.workload.total_macs == 6 * 6 * 4 * 2 * 9 + 144 * 3
    q = imp.quant_params["conv"]
    assert float(q["x_scale"]) == pytest.approx(0.05) and int(q["x_zero_point"]) == 128
    assert float(q["y_scale"]) == pytest.approx(0.1) and int(q["y_zero_point"]) == 0  # Q after the Relu
    np.testing.assert_array_equal(q["w_scale"], inits["w_s"])
    assert q["w_axis"] == 0 and q["w_zero_point"].dtype == np.int8
    np.testing.assert_array_equal(q["bias_int"], inits["b_q"])
    np.testing.assert_array_equal(imp.int_weights["conv"], inits["w_q"])
    np.testing.assert_allclose(imp.weights["conv"], inits["w_q"] * inits["w_s"][:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(imp.biases["conv"], inits["b_q"] * inits["b_s"], rtol=1e-6)
    fq = imp.quant_params["fc"]
    assert float(fq["x_scale"]) == pytest.approx(0.1)  # traced through Flatten
    np.testing.assert_array_equal(fq["w_scale"], inits["fc_s"])
    np.testing.assert_array_equal(imp.int_weights["fc"], inits["fc_q"])
    np.testing.assert_allclose(imp.weights["fc"], inits["fc_q"] * inits["fc_s"][:, None], rtol=1e-6)


def test_qoperator_net():
    w_int = RNG.integers(-127, 128, (4, 1, 3, 3), dtype=np.int8)
    mm_int = RNG.integers(-127, 128, (4 * 4 * 4, 5), dtype=np.int8)  # (K, N): per-column scales
    inits = {
        "x_s": np.array(0.02, np.float32), "x_zp": np.array(100, np.uint8),
        "w": w_int, "w_s": np.array([0.1, 0.2, 0.3, 0.4], np.float32), "w_zp": np.zeros(4, np.int8),
        "c_s": np.array(0.3, np.float32), "c_zp": np.array(5, np.uint8), "b": np.array([1, 2, 3, 4], np.int32),
        "shape": np.array([1, 64], np.int64),
        "m": mm_int, "m_s": np.linspace(0.1, 0.5, 5).astype(np.float32), "m_zp": np.zeros(5, np.int8),
        "y_s": np.array(0.7, np.float32), "y_zp": np.array(0, np.uint8),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"]),
        helper.make_node("QLinearConv", ["xq", "x_s", "x_zp", "w", "w_s", "w_zp", "c_s", "c_zp", "b"], ["c"],
                         name="qconv", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["cr"]),
        helper.make_node("QLinearMatMul", ["cr", "c_s", "c_zp", "m", "m_s", "m_zp", "y_s", "y_zp"], ["yq"],
                         name="qmm"),
        helper.make_node("DequantizeLinear", ["yq", "y_s", "y_zp"], ["y"]),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [1, 1, 8, 8])],
                   [helper.make_tensor_value_info("y", F, None)], inits)
    imp = import_onnx(model)
    conv, mm = imp.workload
    assert isinstance(conv, Conv2d) and conv.output_hw == (4, 4) and conv.macs == 16 * 4 * 9
    assert isinstance(mm, Dense) and (mm.in_features, mm.out_features, mm.batch) == (64, 5, 1)
    qc, qm = imp.quant_params["qconv"], imp.quant_params["qmm"]
    assert int(qc["x_zero_point"]) == 100 and float(qc["y_scale"]) == pytest.approx(0.3)
    np.testing.assert_array_equal(qc["w_scale"], inits["w_s"])
    np.testing.assert_array_equal(qc["bias_int"], inits["b"])
    np.testing.assert_allclose(imp.biases["qconv"], inits["b"] * 0.02 * inits["w_s"], rtol=1e-6)
    np.testing.assert_array_equal(imp.int_weights["qconv"], w_int)
    np.testing.assert_array_equal(imp.int_weights["qmm"], mm_int.T)  # IR layout (out, in)
    np.testing.assert_allclose(imp.weights["qmm"], (mm_int * inits["m_s"]).T, rtol=1e-6)
    assert qm["w_axis"] == 0 and float(qm["x_scale"]) == pytest.approx(0.3) and int(qm["y_zero_point"]) == 0
    assert int(qm["x_zero_point"]) == 5


def _transformer_block(seq=16, hidden=32, heads=2):
    d = hidden // heads
    inits = {f"w{n}": _f32(hidden, hidden) for n in "qkv"}
    inits.update({"bq": _f32(hidden), "back": np.array([1, seq, hidden], np.int64), "g": _f32(hidden),
                  "beta": _f32(hidden)})
    heads_shape = numpy_helper.from_array(np.array([1, seq, heads, d], np.int64))
    nodes = [helper.make_node("Constant", [], ["heads"], value=heads_shape),
             helper.make_node("MatMul", ["x", "wq"], ["q0"], name="q_proj"),
             helper.make_node("Add", ["q0", "bq"], ["q1"], name="q_bias")]
    nodes += [helper.make_node("MatMul", ["x", f"w{n}"], [f"{n}1"], name=f"{n}_proj") for n in "kv"]
    for n, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        nodes += [helper.make_node("Reshape", [f"{n}1", "heads"], [f"{n}2"]),
                  helper.make_node("Transpose", [f"{n}2"], [f"{n}3"], name=f"{n}_t", perm=perm)]
    nodes += [
        helper.make_node("MatMul", ["q3", "k3"], ["s"], name="qk"),
        helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v3"], ["o"], name="av"),
        helper.make_node("Transpose", ["o"], ["o1"], name="o_t", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["o1", "back"], ["o2"]),
        helper.make_node("LayerNormalization", ["o2", "g", "beta"], ["y"], name="ln", axis=-1),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, seq, hidden])],
                  [helper.make_tensor_value_info("y", F, None)], inits), inits


def test_transformer_block_activation_matmuls():
    model, inits = _transformer_block()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Transpose/Reshape are known: no warning
        imp = import_onnx(model)
    w = imp.workload
    assert [layer.name for layer in w if isinstance(layer, Dense)] == ["q_proj", "k_proj", "v_proj"]
    assert "q_bias" not in [layer.name for layer in w]  # MatMul + Add(bias) fused into one Dense
    np.testing.assert_array_equal(imp.biases["q_proj"], inits["bq"])
    np.testing.assert_array_equal(imp.weights["q_proj"], inits["wq"].T)
    assert imp.attributes["q_proj"]["outputs"] == ["q1"]
    qk, av = w["qk"], w["av"]
    assert isinstance(qk, MatMul) and (qk.m, qk.n, qk.k, qk.batch) == (16, 16, 16, 2)
    assert isinstance(av, MatMul) and (av.m, av.n, av.k, av.batch) == (16, 16, 16, 2)
    assert isinstance(w["softmax"], Softmax) and (w["softmax"].rows, w["softmax"].cols) == (32, 16)
    assert isinstance(w["ln"], LayerNorm) and (w["ln"].rows, w["ln"].cols) == (16, 32)
    np.testing.assert_array_equal(imp.weights["ln"], inits["g"])
    assert w["k_t"].kind == "copy" and w["k_t"].elements == 16 * 32
    assert w.total_macs == 3 * 16 * 32 * 32 + 2 * 2 * 16 * 16 * 16


def test_unsupported_ops_warn_and_become_copies():
    nodes = [helper.make_node("Exp", ["x"], ["e"], name="exp"),
             helper.make_node("Frobnicate", ["e"], ["f"], name="custom", domain="com.example"),
             helper.make_node("Relu", ["f"], ["y"], name="relu")]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 5])],
                   [helper.make_tensor_value_info("y", F, None)], {}, domains=("com.example",))
    with pytest.warns(UserWarning) as record:
        w = from_onnx(model)
    text = " ".join(str(r.message) for r in record)
    assert "'Exp'" in text and "'Frobnicate'" in text
    assert [(layer.kind, layer.elements) for layer in w] == [("copy", 10), ("copy", 10), ("relu", 10)]


def test_not_onnx_and_missing_file(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a model\n")
    with pytest.raises(ValueError, match=r"notes\.onnx.*not an ONNX model"):
        from_onnx(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not an ONNX model"):
        from_onnx(empty)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        from_onnx(tmp_path / "missing.onnx")


def test_dynamic_and_missing_shapes(tmp_path):
    model, _ = _float_convnet()
    onnx.save(model, tmp_path / "dyn.onnx")
    with pytest.raises(ValueError, match=r"dyn\.onnx.*'x'.*'N'.*batch="):
        from_onnx(tmp_path / "dyn.onnx")
    assert from_onnx(tmp_path / "dyn.onnx", batch=3)["fc"].batch == 3
    seq_model, _ = _float_convnet(batch_dim=1)
    seq_model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "h"
    with pytest.raises(ValueError, match="'h'"):
        from_onnx(seq_model)
    assert from_onnx(seq_model, dims={"h": 28})["conv1"].output_hw == (14, 14)
    shapeless, _ = _float_convnet()
    shapeless.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(ValueError, match="tensor 'x' has no inferred shape"):
        from_onnx(shapeless)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        from_onnx(model, batch=0)


def _conv2d(x, w, b, stride, pads):
    """Plain NumPy NCHW convolution (groups 1) for checking imported weights against onnxruntime."""
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    return np.einsum("nchwrs,ocrs->nohw", win, w) + b[None, :, None, None]


def test_imported_float_weights_reproduce_onnxruntime():
    import onnxruntime as ort  # a test dependency (pyproject [test])
    model, _ = _float_convnet(batch_dim=2)
    imp = import_onnx(model)
    x = _f32(2, 1, 28, 28)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    a = imp.attributes["conv1"]
    h = np.maximum(_conv2d(x, imp.weights["conv1"], imp.biases["conv1"], a["strides"], a["pads"]), 0)
    h = h.reshape(2, 8, 7, 2, 7, 2).max(axis=(3, 5)).reshape(2, -1)
    np.testing.assert_allclose(h @ imp.weights["fc"].T + imp.biases["fc"], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_onnxruntime_quantized_models(tmp_path, fmt):
    """Models written by onnxruntime's own quantizer (QDQ, or QOperator with com.microsoft QGemm)."""
    from onnxruntime import quantization as q
    model, inits = _float_convnet(batch_dim=1)
    onnx.save(model, tmp_path / "f.onnx")

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.data = iter([{"x": _f32(1, 1, 28, 28)} for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    q.quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(),
                      quant_format=getattr(q.QuantFormat, fmt), per_channel=True,
                      weight_type=q.QuantType.QInt8, activation_type=q.QuantType.QUInt8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imp = import_onnx(tmp_path / "q.onnx")
    conv, fc = imp.workload.mac_layers
    assert imp.workload.total_macs == 14 * 14 * 8 * 9 + 392 * 10
    for layer, ref in ((conv, inits["w1"]), (fc, 0.5 * inits["w2"])):
        p = imp.quant_params[layer.name]
        assert {"x_scale", "x_zero_point", "w_scale", "w_zero_point", "y_scale", "bias_int"} <= set(p)
        assert p["w_axis"] == 0 and p["w_scale"].shape == (layer.weight_shape[0],)
        assert imp.int_weights[layer.name].dtype == np.int8
        scale = p["w_scale"].reshape(-1, *[1] * (ref.ndim - 1))
        assert np.all(np.abs(imp.weights[layer.name] - ref) <= scale / 2 + 1e-6)


def test_non_mac_ops_and_opset11_softmax():
    inits = {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32), "s": _f32(3), "b": _f32(3),
             "m": _f32(3), "v": np.ones(3, np.float32)}
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["c6"], name="clip6"),
        helper.make_node("Clip", ["c6", "lo"], ["c0"], name="clip0"),
        helper.make_node("Sigmoid", ["c0"], ["sg"], name="sig"),
        helper.make_node("Add", ["sg", "c0"], ["a"], name="add"),
        helper.make_node("AveragePool", ["a"], ["ap"], name="avg", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("GlobalAveragePool", ["a"], ["gp"], name="gap"),
        helper.make_node("Softmax", ["a"], ["y"], name="softmax", axis=1),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 3, 6, 6])],
                   [helper.make_tensor_value_info(n, F, None) for n in ("y", "ap", "gp")], inits, opset=11)
    imp = import_onnx(model)
    w = imp.workload
    assert [(e.kind, e.operands) for e in w if isinstance(e, Elementwise)] == [
        ("mul", 1), ("relu6", 1), ("relu", 1), ("sigmoid", 1), ("add", 2)]
    assert all(e.elements == 2 * 3 * 36 for e in w if isinstance(e, Elementwise))
    assert w["avg"].output_hw == (3, 3) and w["avg"].kind == "avg"  # ceil_mode: (6 - 3) / 2 rounded up + 1
    assert w["gap"].global_pool and w["gap"].output_elements == 6
    assert (w["softmax"].rows, w["softmax"].cols) == (2, 108)  # opset < 13 flattens from the axis on
    np.testing.assert_array_equal(imp.attributes["bn"]["constants"]["m"], inits["m"])
    assert w.total_macs == 0


def test_onnx_backend_resnet50_matches_zoo():
    """The ResNet-50 that onnx ships for its backend tests (Caffe2 export, weights left out) vs the zoo's."""
    import collections
    import os

    import onnx.backend.test
    from qsim.workload import get_workload
    from qsim.workload.layers import _pair

    path = os.path.join(os.path.dirname(onnx.backend.test.__file__), "data", "light", "light_resnet50.onnx")
    imported, zoo = from_onnx(path), get_workload("resnet50")
    assert imported.total_macs == zoo.total_macs == 4_089_184_256

    def convs(w):
        return collections.Counter((c.in_channels, c.out_channels, _pair(c.kernel_size, "k"), _pair(c.stride, "s"),
                                    c.output_hw) for c in w if isinstance(c, Conv2d))

    assert convs(imported) == convs(zoo) and sum(convs(zoo).values()) == 53
    fc = [layer for layer in imported if isinstance(layer, Dense)]
    assert len(fc) == 1 and (fc[0].in_features, fc[0].out_features) == (2048, 1000)
    kinds = collections.Counter(e.kind for e in imported if isinstance(e, Elementwise))
    assert kinds["relu"] == 49 and kinds["add"] == 16  # + 53 unfolded BatchNorms ("mul")


def test_blocked_qdq_weight_with_ragged_block():
    q = RNG.integers(-8, 8, (9, 3), dtype=np.int8)  # (K, N), blocks of 4 along K: 4 + 4 + 1
    scale = RNG.uniform(0.1, 1.0, (3, 3)).astype(np.float32)
    nodes = [helper.make_node("DequantizeLinear", ["q", "s"], ["w"], axis=0, block_size=4),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [5, 9])],
                   [helper.make_tensor_value_info("y", F, None)], {"q": q, "s": scale}, opset=21)
    imp = import_onnx(model)
    p = imp.quant_params["mm"]
    assert p["w_axis"] == 1 and p["w_block_size"] == 4  # along in_features of the (out, in) layout
    expected = q * np.repeat(scale, 4, axis=0)[:9]
    np.testing.assert_allclose(imp.weights["mm"], expected.T, rtol=1e-6)
    np.testing.assert_array_equal(imp.int_weights["mm"], q.T)


def test_qlinear_activation_matmul_and_integer_ops():
    u8 = TensorProto.UINT8
    inits = {"as": np.array(0.1, np.float32), "az": np.array(3, np.uint8), "bs": np.array(0.2, np.float32),
             "bz": np.array(4, np.uint8), "ys": np.array(0.3, np.float32), "yz": np.array(5, np.uint8),
             "w": RNG.integers(-5, 5, (8, 6), dtype=np.int8), "wz": np.array(1, np.int8),
             "cw": RNG.integers(-5, 5, (2, 6, 1, 1), dtype=np.int8)}
    nodes = [
        helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["ab"], name="qmm"),
        helper.make_node("MatMulInteger", ["ab", "w", "az", "wz"], ["y"], name="mmi"),
        helper.make_node("ConvInteger", ["img", "cw", "az"], ["c"], name="convi"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("a", u8, [2, 4, 7]),
                           helper.make_tensor_value_info("b", u8, [2, 7, 8]),
                           helper.make_tensor_value_info("img", u8, [1, 6, 5, 5])],
                   [helper.make_tensor_value_info(n, TensorProto.INT32, None) for n in ("y", "c")], inits)
    imp = import_onnx(model)
    qmm, mmi, convi = imp.workload
    assert isinstance(qmm, MatMul) and (qmm.m, qmm.n, qmm.k, qmm.batch) == (4, 8, 7, 2)
    assert {k: float(v) for k, v in imp.quant_params["qmm"].items()} == pytest.approx(
        {"a_scale": 0.1, "a_zero_point": 3, "b_scale": 0.2, "b_zero_point": 4, "y_scale": 0.3, "y_zero_point": 5})
    assert isinstance(mmi, Dense) and (mmi.in_features, mmi.out_features, mmi.batch) == (8, 6, 8)
    assert int(imp.quant_params["mmi"]["w_zero_point"]) == 1 and int(imp.quant_params["mmi"]["x_zero_point"]) == 3
    np.testing.assert_array_equal(imp.int_weights["mmi"], inits["w"].T)
    assert "mmi" not in imp.weights and "convi" not in imp.weights  # no scale: only the integers are known
    assert isinstance(convi, Conv2d) and convi.macs == 25 * 2 * 6
    np.testing.assert_array_equal(imp.int_weights["convi"], inits["cw"])
