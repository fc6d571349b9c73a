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


# -- float32 ops in ORT's arithmetic: exact, or within a stated tolerance --------------------------
def _f(op, x, inits=None, order=None, opset=13, **attrs):
    return single(op, {"x": x}, inits or {}, F32, order or ["x"], opset=opset, **attrs)


W = RNG.standard_normal


EXACT_F32 = {  # bit-identical to ORT (MLAS summation order, MLAS logistic)
    "conv": lambda x: _f("Conv", x, {"w": W((24, 16, 3, 3)).astype(F32), "b": W(24).astype(F32)}, ["x", "w", "b"],
                         pads=[1, 1, 1, 1]),
    "conv_k_slices": lambda x: _f("Conv", x, {"w": W((8, 16, 5, 5)).astype(F32)}, ["x", "w"], strides=[2, 2]),
    "conv_grouped": lambda x: _f("Conv", x, {"w": W((8, 4, 3, 3)).astype(F32)}, ["x", "w"], group=4),
    "conv_1x1": lambda x: _f("Conv", x, {"w": W((40, 16, 1, 1)).astype(F32)}, ["x", "w"]),
    "conv_transpose": lambda x: _f("ConvTranspose", x, {"w": W((16, 8, 3, 3)).astype(F32), "b": W(8).astype(F32)},
                                   ["x", "w", "b"], strides=[2, 2], pads=[1, 1, 1, 1]),
    "gemm_bias": lambda x: _f("Gemm", x, {"w": W((10, 16 * 81)).astype(F32), "c": W(10).astype(F32)},
                              ["x", "w", "c"], transB=1),
    "matmul_batched": lambda x: _f("MatMul", x, {"w": W((81, 300)).astype(F32)}, ["x", "w"]),
    "global_average_pool": lambda x: _f("GlobalAveragePool", x),
    "sigmoid": lambda x: _f("Sigmoid", x * 6),
    "hard_sigmoid": lambda x: _f("HardSigmoid", x, alpha=0.2, beta=0.5),
    "hard_swish": lambda x: _f("HardSwish", x * 4, opset=14),
    "leaky_relu": lambda x: _f("LeakyRelu", x, alpha=0.1),
    "batch_norm": lambda x: _f("BatchNormalization", x, {k: RNG.random(16).astype(F32) + 0.1 for k in "sbmv"},
                               ["x", "s", "b", "m", "v"]),
    "resize_nearest": lambda x: _f("Resize", x, {"r": np.zeros(0, F32), "s": np.array([1, 1, 2, 2], F32)},
                                   ["x", "r", "s"], mode="nearest"),
    "pow_sqrt": lambda x: make_model([node("Pow", ["x", "e"], ["p"]), node("Sqrt", ["p"], ["y"])], {"x": x},
                                     {"y": F32}, {"e": np.array(2.0, F32)}, opset=13),
    "slice_pad": lambda x: make_model(
        [node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]), node("Pad", ["s", "pads"], ["y"], mode="reflect")],
        {"x": x}, {"y": F32}, {"st": np.array([1, -1], I64), "en": np.array([9, 0], I64),
                               "ax": np.array([2, 3], I64), "sp": np.array([2, -2], I64),
                               "pads": np.array([0, 0, 1, 2, 0, 0, 1, 0], I64)}, opset=13),
    "space_to_depth": lambda x: _f("SpaceToDepth", x[..., :8, :8], blocksize=2),
    "floor": lambda x: _f("Floor", x * 3),
    "conv_depthwise": lambda x: _f("Conv", x, {"w": W((16, 1, 5, 5)).astype(F32), "b": W(16).astype(F32)},
                                   ["x", "w", "b"], group=16, pads=[2, 2, 2, 2], strides=[2, 1]),
    "conv_one_output_pixel": lambda x: _f("Conv", x, {"w": W((7, 16, 9, 9)).astype(F32)}, ["x", "w"]),
    "conv_one_output_channel": lambda x: _f("Conv", x, {"w": W((1, 16, 3, 3)).astype(F32)}, ["x", "w"]),
    "average_pool": lambda x: _f("AveragePool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "average_pool_strided": lambda x: _f("AveragePool", x, kernel_shape=[3, 2], strides=[3, 2]),
    "tanh": lambda x: _f("Tanh", x * 3),
}

CLOSE_F32 = {  # NumPy float32 transcendental / reduction orders: within a few ulps of ORT
    "erf": (lambda x: _f("Erf", x), 2e-7),
    "softmax": (lambda x: _f("Softmax", x), 2e-7),
    "reduce_mean": (lambda x: _f("ReduceMean", x, axes=[1]), 2e-7),
    "resize_linear": (lambda x: _f("Resize", x, {"r": np.zeros(0, F32), "s": np.array([1, 1, 2, 2], F32)},
                                   ["x", "r", "s"], mode="linear"), 5e-7),
}


@pytest.mark.parametrize("case", list(EXACT_F32))
def test_float32_ops_bit_exact_vs_ort(case):
    x = RNG.standard_normal((2, 16, 9, 9)).astype(F32)
    if case == "space_to_depth":
        x = x[..., :8, :8].copy()
    elif case == "gemm_bias":
        x = x.reshape(2, -1)
    elif case == "matmul_batched":
        x = x.reshape(2, 16, 81)
    m = EXACT_F32[case](x)
    assert_matches_ort(m, {"x": x})


@pytest.mark.parametrize("case", list(CLOSE_F32))
def test_float32_ops_within_tolerance_of_ort(case):
    x = RNG.standard_normal((2, 16, 9, 9)).astype(F32)
    build, atol = CLOSE_F32[case]
    m = build(x)
    ours, theirs = run_onnx(m, {"x": x}), run_ort(m, {"x": x})
    assert ours["y"].dtype == theirs["y"].dtype and ours["y"].shape == theirs["y"].shape
    np.testing.assert_allclose(ours["y"], theirs["y"], rtol=0, atol=atol)


def test_lstm_bit_exact_vs_ort():
    xs = RNG.standard_normal((5, 2, 12)).astype(F32)
    inits = {"W": (W((1, 32, 12)) * 0.3).astype(F32), "R": (W((1, 32, 8)) * 0.3).astype(F32),
             "B": (W((1, 64)) * 0.3).astype(F32)}
    m = make_model([node("LSTM", ["x", "W", "R", "B"], ["y", "h", "c"], hidden_size=8)], {"x": xs},
                   {"y": F32, "h": F32, "c": F32}, inits, opset=14)
    ours, theirs = run_onnx(m, {"x": xs}), run_ort(m, {"x": xs})
    for k in ("y", "h", "c"):
        assert np.array_equal(ours[k], theirs[k]), k


# -- host-aware ORT target and the per-node divergence report -------------------------------------
def _u8s8_matmul_model():
    """Full-range u8 x s8 QLinearMatMul: exact on VNNI/ARM ORT, int16 pair saturation on AVX2-only ORT."""
    a = np.full((3, 32), 255, U8)
    a[1] = RNG.integers(0, 256, 32)
    b = np.where(RNG.random((32, 8)) < 0.5, 127, -128).astype(S8)
    inits = {"as": np.array(0.02, F32), "az": np.array(0, U8), "b": b, "bs": np.array(0.01, F32),
             "bz": np.array(0, S8), "ys": np.array(2.0, F32), "yz": np.array(128, U8)}
    nodes = [node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["q"], name="the_matmul"),
             node("DequantizeLinear", ["q", "ys", "yz"], ["y"], name="dq")]
    return make_model(nodes, {"a": a}, {"y": F32, "q": U8}, inits, opset=13), {"a": a}


def test_host_ort_target_follows_kernels_cpu_model():
    from qsim.kernels.cpu import ort_pair_saturates
    from qsim.onnxrun.executor import OnnxExecutor, host_ort_target

    m, feeds = _u8s8_matmul_model()
    ex = OnnxExecutor(m)
    assert ex.ort_target == host_ort_target()
    assert ex.options["pair_saturate16"] == ort_pair_saturates()
    assert np.array_equal(ex.run(feeds)["q"], run_ort(m, feeds)["q"])  # default: what ORT does on this host
    sat = run_onnx(m, feeds, ort_target="avx2")["q"]
    exact = run_onnx(m, feeds, ort_target="exact")["q"]
    assert not np.array_equal(sat, exact)  # the model really exercises pair saturation
    with pytest.raises(ValueError, match="ort_target must be one of"):
        OnnxExecutor(m, ort_target="sse")


def test_cli_report_names_the_node_where_qsim_and_ort_diverge(tmp_path, capsys):
    from qsim.cli import main
    from qsim.kernels.cpu import ort_pair_saturates

    m, feeds = _u8s8_matmul_model()
    mp, ip = tmp_path / "m.onnx", tmp_path / "in.npz"
    mp.write_bytes(m.SerializeToString())
    np.savez(ip, **feeds)
    assert main(["run-onnx", str(mp), "--inputs", str(ip), "--compare-ort"]) == 0
    out = capsys.readouterr().out
    assert "every node output equals ORT's" in out and "mismatches: 0" in out
    wrong = "vnni" if ort_pair_saturates() else "avx2"  # emulate the other CPU: must diverge at the matmul
    assert main(["run-onnx", str(mp), "--inputs", str(ip), "--compare-ort", "--ort-target", wrong]) == 1
    out = capsys.readouterr().out
    assert f"ORT target: {wrong}" in out
    assert "node 'the_matmul' (QLinearMatMul) -> 'q' [integer]" in out
    assert "first integer tensor that differs: 'q' from node 'the_matmul'" in out
    assert "MISMATCH" in out


def test_cli_unsupported_op_is_named_once_with_opset(tmp_path, capsys):
    from qsim.cli import main

    x = f32(2, 3, 3)
    nodes = [node("Det", ["x"], [f"d{i}"], name=f"det_{i}") for i in range(40)]
    m = make_model(nodes, {"x": x}, {"d0": F32}, opset=13)
    mp, ip = tmp_path / "m.onnx", tmp_path / "in.npz"
    mp.write_bytes(m.SerializeToString())
    np.savez(ip, x=x)
    assert main(["run-onnx", str(mp), "--inputs", str(ip)]) == 2
    err = capsys.readouterr().err
    assert "unsupported op Det (ai.onnx opset 13) at node 'det_0'" in err
    assert "39 more unsupported node(s)" in err and len(err) < 400 and "Traceback" not in err


def test_constant_folding_is_redone_when_an_input_overrides_an_initializer():
    """Weight DequantizeLinear is folded at load; feeding that initializer must recompute it."""
    from qsim.onnxrun.executor import OnnxExecutor

    x = f32(2, 5)
    w = RNG.integers(-50, 50, (5, 3)).astype(S8)
    inits = {"w": w, "ws": np.array(0.05, F32), "wz": np.array(0, S8)}
    nodes = [node("DequantizeLinear", ["w", "ws", "wz"], ["wf"]), node("MatMul", ["x", "wf"], ["y"])]
    m = make_model(nodes, {"x": x}, {"y": F32}, inits, opset=13)
    ex = OnnxExecutor(m)
    assert "wf" in ex.folded_values
    assert np.array_equal(ex.run({"x": x})["y"], run_ort(m, {"x": x})["y"])
    w2 = (-w).astype(S8)
    y2 = ex.run({"x": x, "w": w2})["y"]
    assert np.array_equal(y2, run_onnx(make_model(nodes, {"x": x}, {"y": F32}, {**inits, "w": w2}, opset=13),
                                       {"x": x})["y"])
    assert not np.array_equal(y2, ex.run({"x": x})["y"])


def test_cli_failure_inside_an_op_names_the_node_without_traceback(tmp_path, capsys):
    from qsim.cli import main

    x = f32(2, 6)
    m = make_model([node("Reshape", ["x", "s"], ["y"], name="bad_reshape")], {"x": x}, {"y": F32},
                   {"s": np.array([5, -1], I64)}, opset=13)
    mp, ip = tmp_path / "m.onnx", tmp_path / "in.npz"
    mp.write_bytes(m.SerializeToString())
    np.savez(ip, x=x)
    assert main(["run-onnx", str(mp), "--inputs", str(ip)]) == 2
    err = capsys.readouterr().err
    assert "node 'bad_reshape' (Reshape)" in err and "Traceback" not in err
    np.savez(ip, x=x.astype(np.float64))
    assert main(["run-onnx", str(mp), "--inputs", str(ip)]) == 2
    assert "'x' must have dtype float32, got float64" in capsys.readouterr().err
    np.savez(ip, X=x)
    assert main(["run-onnx", str(mp), "--inputs", str(ip)]) == 2
    assert "unknown input(s) ['X']" in capsys.readouterr().err
