"""The prepared execution plan (`qsim.onnxrun.plan`) and its kernels against their references:
the plan must equal the reference interpreter (`run(prepared=False)`) bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qsim.onnxrun.executor import OnnxExecutor
from qsim.onnxrun.f32gemm import _sgemm, _sgemm_1row, sgemm, sgemm_groups, stride_k
from qsim.onnxrun.qconv import requant_nchw, requant_nchw_reference


@pytest.mark.parametrize("m,k,n", [(1, 7, 5), (3, 300, 17), (4, 129, 64), (9, 257, 33), (37, 64, 1)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_sgemm_row_blocks_equal_one_row(m, k, n, accumulate):
    rng = np.random.default_rng(m * 1000 + k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    for sk in (128, 256, stride_k(n, k, False)):
        got = _sgemm(a, b, sk, c0.copy(), accumulate)
        want = _sgemm_1row(a, b, sk, c0.copy(), accumulate)
        assert np.array_equal(got, want)


@pytest.mark.parametrize("g,m,k,n", [(8, 1, 9, 30), (3, 5, 27, 1), (2, 6, 40, 50), (4, 3, 0, 7), (2, 70, 300, 9),
                                     (1, 33, 600, 2)])
def test_sgemm_groups_equals_per_group_sgemm(g, m, k, n):
    rng = np.random.default_rng(g + m + k + n)
    wg = rng.standard_normal((g, m, k)).astype(np.float32)
    cols = rng.standard_normal((g, k, n)).astype(np.float32)
    y = sgemm_groups(wg, cols, np.empty((g, m, n), np.float32))
    yt = sgemm_groups(wg, cols, np.empty((g, m, n), np.float32), np.ascontiguousarray(wg.transpose(0, 2, 1)))
    for i in range(g):
        assert np.array_equal(y[i], sgemm(wg[i], cols[i], packed=False))
        assert np.array_equal(yt[i], y[i])


@pytest.mark.parametrize("dtype,lo,hi", [(np.int32, 0, 255), (np.int64, -128, 127)])
def test_requant_nchw_equals_reference_and_kernel(dtype, lo, hi):
    from qsim.kernels import requantize

    rng = np.random.default_rng(7)
    acc = rng.integers(-(1 << 20), 1 << 20, (2, 5, 13)).astype(dtype)
    acc[0, 0, :3] = [2 ** 30, -(2 ** 30), 0]
    scale = rng.uniform(1e-5, 3e-3, 5).astype(np.float32)
    zp = 3 if lo == 0 else -2
    out = np.empty(acc.shape, np.int64)
    requant_nchw(acc, scale, zp, lo, hi, out)
    assert np.array_equal(out, requant_nchw_reference(acc, scale, zp, lo, hi))
    # the generic path: requantize(fp32_rne) with s_c = fl(fl(s_x·s_w)/s_y), here s_x = s_y = 1
    ref = requantize(acc, np.float32(1), scale, np.float32(1), zp, policy="fp32_rne", qmin=lo, qmax=hi,
                     channel_axis=1)
    assert np.array_equal(out, ref)


def _qdq_conv_model(w_const: bool = True):
    """x -> Q -> DQ -> Conv(DQ(w), bias) -> Q -> DQ -> Add(x) -> Relu; a QLinearConv twin."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.uint8(128), "z"),
             numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(0.01), "ws"),
             numpy_helper.from_array(np.int8(0), "wz"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.integers(-500, 500, 4).astype(np.int32), "bi")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QLinearConv", ["xq", "s", "z", "w", "ws", "wz", "s", "z", "bi"], ["yq"],
                              pads=[1, 1, 1, 1], strides=[2, 1]),
             helper.make_node("QuantizeLinear", ["y", "s", "z"], ["yq2"]),
             helper.make_node("DequantizeLinear", ["yq2", "s", "z"], ["yd"]),
             helper.make_node("Mul", ["yd", "yd"], ["ym"]),
             helper.make_node("Relu", ["ym"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 6, 7])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("yq", TensorProto.UINT8, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_prepared_plan_equals_reference_interpreter():
    ex = OnnxExecutor(_qdq_conv_model())
    assert len(ex.prepared.specialised) >= 5  # Q (+ its DQ, fused), Conv, QLinearConv, Mul specialised
    for batch in (1, 3):
        x = {"x": np.random.default_rng(batch).uniform(-2, 2, (batch, 3, 6, 7)).astype(np.float32)}
        a = ex.run(x, keep_all=True)
        oa = dict(ex.overflows)
        b = ex.run(x, keep_all=True, prepared=False)
        assert oa == ex.overflows and "QLinearConv_4" in oa
        assert a.keys() == b.keys()
        for t in a:
            assert a[t].dtype == b[t].dtype and np.array_equal(a[t], b[t]), t


def test_prepared_plan_falls_back_to_the_generic_op():
    ex = OnnxExecutor(_qdq_conv_model())
    x = {"x": np.full((1, 3, 6, 7), np.nan, np.float32)}
    with pytest.raises(ValueError, match="QuantizeLinear.*NaN"):
        ex.run(x)
    # an overridden initializer runs the reference interpreter (nothing prepared from the old value)
    x = {"x": np.ones((1, 3, 6, 7), np.float32), "b": np.zeros(4, np.float32)}
    got = ex.run(x)["out"]
    assert np.array_equal(got, ex.run(x, prepared=False)["out"])
    assert not np.array_equal(got, ex.run({"x": x["x"]})["out"])


def test_qadd_codes_equals_contrib_add_kernel():
    from qsim.onnxrun.contrib import _add_kernel
    from qsim.onnxrun.qelementwise import qadd_codes

    rng = np.random.default_rng(3)
    for dt, lo, hi in ((np.uint8, 0, 255), (np.int8, -128, 127)):
        a = rng.integers(lo, hi + 1, 1000).astype(dt)
        b = rng.integers(lo, hi + 1, 1000).astype(dt)
        ra, rb, fixed = np.float32(0.7311), np.float32(1.377), np.float32(-3.25)
        want = _add_kernel(a.astype(np.float32), b.astype(np.float32), ra, rb, fixed, 0, lo, hi, np.empty(1000, dt))
        assert np.array_equal(qadd_codes(a, b, ra, rb, fixed, lo, hi, np.empty(1000, dt)), want)


@pytest.mark.parametrize("k", [1, 5, 8, 13, 300])
def test_lanes8_equals_reference(k):
    from qsim.onnxrun.f32gemm import _lanes8, _lanes8_reference

    rng = np.random.default_rng(k)
    row, v = rng.standard_normal(k).astype(np.float32), rng.standard_normal(k).astype(np.float32)
    assert np.array_equal(np.array(_lanes8(row, v), np.float32), _lanes8_reference(row, v))


@pytest.mark.parametrize("kernel,dil,pads", [((3, 3), (1, 1), (1, 1, 1, 1)), ((5, 5), (1, 1), (2, 2, 2, 2)),
                                             ((1, 7), (1, 2), (0, 3, 0, 2)), ((2, 3), (2, 1), (0, 0, 1, 1)),
                                             ((3, 1), (1, 1), (0, 0, 0, 0))])
def test_depthwise_m1_equals_im2col_m1(kernel, dil, pads):
    """The direct stride-1 depthwise kernel = im2col + `_sgemm_m1` per channel (the generic order)."""
    from qsim.onnxrun.f32_ops import _im2col2d
    from qsim.onnxrun.f32gemm import _sgemm_m1, depthwise_m1

    rng = np.random.default_rng(sum(kernel) + sum(pads))
    c, h, w = 6, 9, 11
    x = rng.standard_normal((c, h, w)).astype(np.float32)
    x[0, 0, :3] = [-0.0, 0.0, -0.0]
    wt = rng.standard_normal((c,) + kernel).astype(np.float32)
    (dh, dw), (pt, pl, pb, pr) = dil, pads
    ho = h + pt + pb - (kernel[0] - 1) * dh
    wo = w + pl + pr - (kernel[1] - 1) * dw
    cols = _im2col2d(x, kernel[0], kernel[1], 1, 1, dh, dw, pt, pl, ho, wo,
                     np.empty((c * kernel[0] * kernel[1], ho * wo), np.float32))
    cols = cols.reshape(c, -1, ho * wo)
    want = np.stack([_sgemm_m1(wt[i].reshape(-1), cols[i], np.empty(ho * wo, np.float32)) for i in range(c)])
    hp, wp = h + pt + pb, w + pl + pr
    xp = np.zeros((c, hp + 1, wp), np.float32)
    xp[:, pt:pt + h, pl:pl + w] = x
    got = depthwise_m1(xp.reshape(c, -1), wt, wp, dh, dw, ho, wo, np.empty((c, ho * wo), np.float32))
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # signed zeros included



@pytest.mark.parametrize("stride,dil,pads", [((1, 1), (1, 1), (1, 1, 1, 1)), ((2, 1), (1, 1), (2, 2, 2, 2)),
                                             ((1, 2), (2, 1), (0, 3, 1, 2)), ((3, 3), (1, 1), (0, 0, 0, 0))])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_depthwise_int_equals_reference_and_conv2d_int(stride, dil, pads, dtype):
    from qsim.kernels import conv2d_int
    from qsim.onnxrun.qconv import _depthwise_int, qdepthwise_reference

    rng = np.random.default_rng(sum(stride) + sum(pads))
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (2, 5, 9, 10)).astype(dtype)
    w = rng.integers(-128, 128, (5, 1, 3, 4)).astype(np.int8)
    zx, zw = int(rng.integers(info.min, info.max + 1)), rng.integers(-5, 5, 5)
    bias = rng.integers(-1000, 1000, 5).astype(np.int32)
    wsh = (w[:, 0].astype(np.int64) - zw[:, None, None]).astype(np.int32)
    geo = dict(stride=stride, dilation=dil, padding=pads)
    got = _depthwise_int(x, zx, wsh, bias, geo)
    want = qdepthwise_reference(x, w, zx, zw, bias, stride, pads, dil)
    assert np.array_equal(got, want)
    acc, _ = conv2d_int(x, w, zx, zw.astype(np.int8), bias, stride=stride, padding=pads, dilation=dil, groups=5)
    assert np.array_equal(got, acc)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
def test_quantize_tensor_equals_quantize_fp32(dtype):
    from qsim.onnxrun.ops import _quantize_tensor, int_range, quantize_fp32

    rng = np.random.default_rng(5)
    x = (rng.standard_normal(4099) * 300).astype(np.float32)
    x[:6] = [0.5, -0.5, 1.5, 2.5, np.inf, -np.inf]
    s, (lo, hi) = np.float32(0.37), int_range(np.dtype(dtype))
    z = (lo + hi) // 2 + 3
    out = np.empty(x.size, dtype)
    assert not _quantize_tensor(x, s, z, lo, hi, out)
    assert np.array_equal(out, quantize_fp32(x, s, np.int64(z), lo, hi).astype(dtype))
    x[100] = np.nan
    assert _quantize_tensor(x, s, z, lo, hi, out)


def test_qlinear_scalar_side_kernels_equal_contrib_kernels():
    from qsim.onnxrun.contrib import _add_kernel, _mul_kernel
    from qsim.onnxrun.qelementwise import qadd_scalar, qmul_scalar

    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, 777).astype(np.uint8)
    code, ra, rb, fixed = 201, np.float32(0.41), np.float32(1.93), np.float32(7.5)
    full = np.full(777, code, np.uint8)
    want = _add_kernel(x.astype(np.float32), full.astype(np.float32), ra, rb, fixed, 2, 0, 255, np.empty(777, np.uint8))
    fixed2 = np.float32(fixed + np.float32(np.float32(code) * rb))
    assert np.array_equal(qadd_scalar(x, ra, fixed2, 0, 255, np.empty(777, np.uint8)), want)
    want = _add_kernel(full.astype(np.float32), x.astype(np.float32), rb, ra, fixed, 1, 0, 255, np.empty(777, np.uint8))
    fixed2 = np.float32(fixed + np.float32(np.float32(code) * rb))
    assert np.array_equal(qadd_scalar(x, ra, fixed2, 0, 255, np.empty(777, np.uint8)), want)
    want = _mul_kernel(x, full, 3, 9, np.float32(0.013), np.float32(17), 0, 255, np.empty(777, np.uint8))
    assert np.array_equal(qmul_scalar(x, 3, code - 9, np.float32(0.013), np.float32(17), 0, 255,
                                      np.empty(777, np.uint8)), want)


def test_requant_rows_equals_kernel():
    from qsim.kernels import requantize
    from qsim.onnxrun.qconv import requant_rows

    rng = np.random.default_rng(9)
    acc = rng.integers(-(1 << 22), 1 << 22, (7, 13)).astype(np.int32)
    scale = rng.uniform(1e-6, 1e-3, 13).astype(np.float32)
    out = np.empty(acc.shape, np.int64)
    requant_rows(acc, scale, -3, -128, 127, out)
    ref = requantize(acc, np.float32(1), scale, np.float32(1), -3, policy="fp32_rne", qmin=-128, qmax=127,
                     channel_axis=-1)
    assert np.array_equal(out, ref)


def test_prepared_qlinear_matmul_equals_reference():
    rng = np.random.default_rng(2)
    b = rng.integers(-128, 128, (24, 10)).astype(np.int8)
    inits = [numpy_helper.from_array(np.float32(0.05), "sa"), numpy_helper.from_array(np.uint8(120), "za"),
             numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(rng.uniform(0.001, 0.01, 10).astype(np.float32), "sb"),
             numpy_helper.from_array(np.zeros(10, np.int8), "zb"), numpy_helper.from_array(np.float32(0.3), "sy"),
             numpy_helper.from_array(np.uint8(7), "zy")]
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, None)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert ex.prepared.specialised
    for shape in ((5, 24), (2, 3, 24), (1, 24)):
        a = {"a": rng.integers(0, 256, shape).astype(np.uint8)}
        got = ex.run(a)["y"]
        want = ex.run(a, prepared=False)["y"]
        assert got.shape == want.shape and np.array_equal(got, want)


def test_prepared_qlinear_global_average_pool_equals_reference():
    inits = [numpy_helper.from_array(np.float32(0.07), "sx"), numpy_helper.from_array(np.uint8(100), "zx"),
             numpy_helper.from_array(np.float32(0.011), "sy"), numpy_helper.from_array(np.uint8(3), "zy")]
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "sx", "zx", "sy", "zy"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, None)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("com.microsoft", 1)])
    ex = OnnxExecutor(model)
    assert ex.prepared.specialised
    rng = np.random.default_rng(4)
    for shape in ((2, 5, 7, 9), (1, 3, 40), (1, 8, 1, 1)):
        x = {"x": rng.integers(0, 256, shape).astype(np.uint8)}
        got, want = ex.run(x)["y"], ex.run(x, prepared=False)["y"]
        assert got.shape == want.shape and np.array_equal(got, want)


def test_quantize_dequantize_equals_the_two_kernels():
    from qsim.onnxrun.ops import _dequantize_tensor, _quantize_tensor
    from qsim.onnxrun.plan import quantize_dequantize

    rng = np.random.default_rng(8)
    x = (rng.standard_normal(3001) * 40).astype(np.float32)
    s, z, s2, z2 = np.float32(0.21), 131, np.float32(0.2), 128
    code, out = np.empty(x.size, np.uint8), np.empty(x.size, np.float32)
    assert not quantize_dequantize(x, s, z, 0, 255, s2, z2, code, out)
    want = np.empty(x.size, np.uint8)
    _quantize_tensor(x, s, z, 0, 255, want)
    assert np.array_equal(code, want)
    assert np.array_equal(out, _dequantize_tensor(want, s2, z2, np.empty(x.size, np.float32)))


def test_prepared_plan_fuses_q_dq_pairs():
    ex = OnnxExecutor(_qdq_conv_model())
    fused = [s for s in ex.prepared.steps if len(s[4]) == 2 and s[1].op_type == "QuantizeLinear"]
    assert len(fused) == 2 and len(ex.prepared.steps) == len(ex.steps) - 1 - 2  # DQ(w) folded, 2 DQs fused
    x = {"x": np.random.default_rng(0).uniform(-2, 2, (2, 3, 6, 7)).astype(np.float32)}
    a, b = ex.run(x, keep_all=True), ex.run(x, keep_all=True, prepared=False)
    assert a.keys() == b.keys() and all(np.array_equal(a[t], b[t]) for t in a)
    x64 = {"x": np.asfortranarray(x["x"])}  # not C-contiguous: each node by itself
    assert np.array_equal(ex.run(x64)["out"], ex.run(x64, prepared=False)["out"])


@pytest.mark.parametrize("kernel,stride,dil,pads", [((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
                                                    ((1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
                                                    ((3, 2), (2, 1), (1, 2), (1, 0, 2, 1)),
                                                    ((1, 1), (2, 2), (1, 1), (0, 0, 0, 0))])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_conv_int_f32_equals_conv2d_int(kernel, stride, dil, pads, dtype):
    from qsim.kernels import conv2d_int
    from qsim.onnxrun.qconv import _conv_int_f32

    rng = np.random.default_rng(sum(kernel) + sum(pads))
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (2, 6, 9, 8)).astype(dtype)
    w = rng.integers(-128, 128, (5, 6) + kernel).astype(np.int8)
    zx, zw = int(rng.integers(info.min, info.max + 1)), rng.integers(-3, 3, 5)
    bias = rng.integers(-9000, 9000, 5).astype(np.int32)
    w_f32 = (w.reshape(5, -1).astype(np.int64) - zw[:, None]).astype(np.float32)
    got = _conv_int_f32(x, zx, w_f32, bias.astype(np.float32)[:, None], kernel,
                        dict(stride=stride, dilation=dil, padding=pads))
    acc, _ = conv2d_int(x, w, zx, zw.astype(np.int8), bias, stride=stride, padding=pads, dilation=dil)
    assert got.dtype == np.float32 and np.array_equal(got.astype(np.int64), acc)


def test_tune_malloc_is_idempotent_and_can_be_disabled(monkeypatch):
    import sys

    import qsim.onnxrun.plan as plan

    first = plan.tune_malloc()
    assert plan.tune_malloc() == first
    assert first == sys.platform.startswith("linux") or not first
    monkeypatch.setattr(plan, "_MALLOC_TUNED", False)
    monkeypatch.setenv("QSIM_ONNX_MALLOPT", "0")
    assert plan.tune_malloc() is False


@pytest.mark.parametrize("shape,axis,before,after", [((1, 576), 1, 32, 32), ((2, 3, 7), 2, 6, 0), ((4, 5), 0, 1, 3),
                                                     ((3, 9), 1, 0, 8)])
def test_reflect_pad_axis_equals_np_pad(shape, axis, before, after):
    from qsim.onnxrun.floatplan import reflect_pad_axis

    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    width = [(0, 0)] * len(shape)
    width[axis] = (before, after)
    assert np.array_equal(reflect_pad_axis(x, axis, before, after), np.pad(x, width, mode="reflect"))


def test_lstm_cell_equals_the_numpy_step():
    from qsim.onnxrun.f32_ops import _LOGISTIC, _TANH, lstm_cell, logistic, tanh32

    rng = np.random.default_rng(12)
    n, hs = 3, 37
    gates = (rng.standard_normal((n, 4 * hs)) * 4).astype(np.float32)
    gates[0, :3] = [np.nan, 40.0, -40.0]
    bias = rng.standard_normal(4 * hs).astype(np.float32)
    ct = rng.standard_normal((n, hs)).astype(np.float32)
    pi, po, pf = (rng.standard_normal(hs).astype(np.float32) for _ in range(3))
    g = (gates + bias).astype(np.float32)
    i_, o_, f_, c_ = np.split(g, 4, axis=1)
    it = logistic(i_ + pi * ct)
    ft = logistic(f_ + pf * ct)
    c_want = (ft * ct + it * tanh32(c_)).astype(np.float32)
    h_want = (logistic(o_ + po * c_want) * tanh32(c_want)).astype(np.float32)
    cl = tuple(np.float32(_LOGISTIC[k]) for k in ("a9", "a7", "a5", "a3", "a1", "b10", "b8", "b6", "b4", "b2", "b0"))
    h, c = np.empty((n, hs), np.float32), np.empty((n, hs), np.float32)
    lstm_cell(gates, bias, ct, pi, po, pf, cl, tuple(np.float32(v) for v in _TANH), h, c)
    assert np.array_equal(c, c_want, equal_nan=True) and np.array_equal(h, h_want, equal_nan=True)


def _qlinear_conv_chain(nd: int, xdt, acc_bits: int = 32):
    """x (codes) -> depthwise QLinearConv (stride 2 on the first axis) -> 1×1 QLinearConv -> GlobalAveragePool-free
    1×1 QLinearConv on the pooled-size input: the fused cases of `qconv._fused_qconv`."""
    rng = np.random.default_rng(nd)
    c, o = 6, 5
    k = (3, 3) if nd == 2 else (5,)
    pads = [1, 1, 1, 1] if nd == 2 else [2, 2]
    strides = [2, 1] if nd == 2 else [1]
    zx = np.array(128 if xdt == np.uint8 else 3, xdt)
    inits = [numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(zx, "z"),
             numpy_helper.from_array(rng.integers(-127, 128, (c, 1) + k).astype(np.int8), "wd"),
             numpy_helper.from_array(rng.uniform(0.005, 0.02, c).astype(np.float32), "wds"),
             numpy_helper.from_array(np.zeros(c, np.int8), "wdz"),
             numpy_helper.from_array(rng.integers(-500, 500, c).astype(np.int32), "bd"),
             numpy_helper.from_array(rng.integers(-127, 128, (o, c) + (1,) * nd).astype(np.int8), "wp"),
             numpy_helper.from_array(np.float32(0.01), "wps"), numpy_helper.from_array(np.int8(2), "wpz")]
    nodes = [helper.make_node("QLinearConv", ["x", "s", "z", "wd", "wds", "wdz", "s", "z", "bd"], ["d"],
                              group=c, pads=pads, strides=strides),
             helper.make_node("QLinearConv", ["d", "s", "z", "wp", "wps", "wpz", "s", "z"], ["y"])]
    ttype = TensorProto.UINT8 if xdt == np.uint8 else TensorProto.INT8
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", ttype, [None, c] + [None] * nd)],
                              [helper.make_tensor_value_info("y", ttype, None),
                               helper.make_tensor_value_info("d", ttype, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("xdt", [np.uint8, np.int8])
def test_prepared_fused_qlinear_conv_equals_reference(nd, xdt, monkeypatch):
    import qsim.kernels.conv as kc

    calls = {"depthwise_requant": 0, "pointwise_requant": 0}
    for name in calls:
        def spy(*args, _f=getattr(kc, name), _n=name):
            calls[_n] += 1
            return _f(*args)
        monkeypatch.setattr(kc, name, spy)
    ex = OnnxExecutor(_qlinear_conv_chain(nd, xdt))
    info = np.iinfo(xdt)
    rng = np.random.default_rng(5)
    for shape in ([(1, 6, 7, 9), (3, 6, 1, 1), (2, 6, 4, 2)] if nd == 2 else [(1, 6, 11), (2, 6, 1), (1, 6, 3)]):
        for extreme in (False, True):
            x = rng.integers(info.min, info.max + 1, shape).astype(xdt)
            if extreme:
                x[...] = info.max if xdt == np.uint8 else info.min
            a = ex.run({"x": x}, keep_all=True)
            oa = dict(ex.overflows)
            b = ex.run({"x": x}, keep_all=True, prepared=False)
            assert oa == ex.overflows
            for t in a:
                assert a[t].dtype == b[t].dtype and np.array_equal(a[t], b[t]), (t, shape)
    assert len(ex.prepared.specialised) == 2
    assert calls["depthwise_requant"] == 6 and calls["pointwise_requant"] >= 2, calls


@pytest.mark.parametrize("bdt", [np.int8, np.uint8])
def test_prepared_qlinear_matmul_of_two_activations_equals_reference(bdt):
    """Q·Kᵀ-style QLinearMatMul (b computed at run time): exact float32 batched product while every sum
    stays below 2^24, the generic op beyond (K too large, shapes that do not broadcast)."""
    rng = np.random.default_rng(3)
    binfo = np.iinfo(bdt)
    inits = [numpy_helper.from_array(np.float32(0.05), "sa"), numpy_helper.from_array(np.uint8(120), "za"),
             numpy_helper.from_array(np.float32(0.02), "sb"), numpy_helper.from_array(np.array(3, bdt), "zb"),
             numpy_helper.from_array(np.float32(0.3), "sy"), numpy_helper.from_array(np.uint8(7), "zy")]
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"])
    btype = TensorProto.INT8 if bdt == np.int8 else TensorProto.UINT8
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, None),
                                            helper.make_tensor_value_info("b", btype, None)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert ex.prepared.specialised
    for sa, sb in [((1, 8, 10, 15), (1, 8, 15, 10)), ((2, 3, 4, 5), (3, 5, 6)), ((7, 9), (9, 4)),
                   ((2, 300), (300, 3)), ((2, 3, 4), (2, 5, 6))]:
        for extreme in (False, True):
            a = rng.integers(0, 256, sa).astype(np.uint8)
            b = rng.integers(binfo.min, binfo.max + 1, sb).astype(bdt)
            if extreme:
                a[...] = 0
                b[...] = binfo.max
            feeds = {"a": a, "b": b}
            try:
                want = ex.run(feeds, prepared=False)["y"]
            except ValueError as exc:
                with pytest.raises(ValueError, match="inner dimensions"):
                    ex.run(feeds)
                assert "inner dimensions" in str(exc)
                continue
            got = ex.run(feeds)["y"]
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), (sa, sb)


def test_qlinear_channel_kernels_equal_contrib_kernels():
    from qsim.onnxrun.contrib import _add_kernel, _mul_kernel
    from qsim.onnxrun.qelementwise import channel_span, qadd_channel, qmul_channel

    assert channel_span((2, 5, 3, 4), (1, 5, 1, 1)) == (5, 12)
    assert channel_span((2, 5, 3, 4), (5, 3, 1)) == (15, 4)
    assert channel_span((2, 5, 3, 4), (1, 5, 1, 4)) is None and channel_span((5,), (1, 5)) is None
    rng = np.random.default_rng(7)
    for dt, lo, hi in ((np.uint8, 0, 255), (np.int8, -128, 127)):
        x = rng.integers(lo, hi + 1, (2, 5, 3, 4)).astype(dt)
        y = rng.integers(lo, hi + 1, (1, 5, 1, 1)).astype(dt)
        yb = np.ascontiguousarray(np.broadcast_to(y, x.shape)).reshape(-1)
        want = _mul_kernel(x.reshape(-1), yb, 3, -2, np.float32(0.013), np.float32(17), lo, hi, np.empty(120, dt))
        got = qmul_channel(x.reshape(-1), 3, y.reshape(-1), -2, 5, 12, np.float32(0.013), np.float32(17), lo, hi,
                           np.empty(120, dt))
        assert np.array_equal(got, want)
        ra, rb, fixed = np.float32(0.7311), np.float32(1.377), np.float32(-3.25)
        want = _add_kernel(x.reshape(-1).astype(np.float32), yb.astype(np.float32), ra, rb, fixed, 2, lo, hi,
                           np.empty(120, dt))
        got = qadd_channel(x.reshape(-1), ra, y.reshape(-1), rb, fixed, 5, 12, lo, hi, np.empty(120, dt))
        assert np.array_equal(got, want)


def _ms_model(nodes, inputs, inits):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.UINT8, None) for n in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    return OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                                helper.make_opsetid("com.microsoft", 1)]))


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
def test_prepared_qlinear_binary_broadcast_equals_reference(op):
    inits = [numpy_helper.from_array(np.float32(0.05), "sa"), numpy_helper.from_array(np.uint8(120), "za"),
             numpy_helper.from_array(np.float32(0.011), "sb"), numpy_helper.from_array(np.uint8(3), "zb"),
             numpy_helper.from_array(np.float32(0.02), "sc"), numpy_helper.from_array(np.uint8(130), "zc")]
    node = helper.make_node(op, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["y"], domain="com.microsoft")
    ex = _ms_model([node], ["a", "b"], inits)
    assert ex.prepared.specialised
    rng = np.random.default_rng(5)
    for sa, sb in (((2, 6, 3, 5), (1, 6, 1, 1)), ((1, 6, 1, 1), (2, 6, 3, 5)), ((2, 6, 3, 1), (1, 6, 1, 1)),
                   ((2, 6, 3, 5), (6, 3, 1)), ((2, 6, 3, 5), (1, 1, 3, 5)), ((4, 5), (4, 5)),
                   ((2, 1, 128), ()), ((), (3, 7)), ((1,), (2, 5)), ((2, 5), (1, 1, 1)), ((1,), (1,))):
        f = {"a": rng.integers(0, 256, sa).astype(np.uint8), "b": rng.integers(0, 256, sb).astype(np.uint8)}
        got, want = ex.run(f)["y"], ex.run(f, prepared=False)["y"]
        assert got.shape == want.shape and np.array_equal(got, want), (sa, sb)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_prepared_qlinear_concat_equals_reference(dt):
    inits = [numpy_helper.from_array(np.float32(0.05), "sy"), numpy_helper.from_array(dt(120), "zy"),
             numpy_helper.from_array(np.float32(0.05), "s0"), numpy_helper.from_array(dt(120), "z0"),
             numpy_helper.from_array(np.float32(0.031), "s1"), numpy_helper.from_array(dt(7), "z1")]
    node = helper.make_node("QLinearConcat", ["sy", "zy", "a", "s0", "z0", "b", "s1", "z1"], ["y"], axis=1,
                            domain="com.microsoft")
    tp = TensorProto.UINT8 if dt == np.uint8 else TensorProto.INT8
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, tp, None) for n in ("a", "b")],
                              [helper.make_tensor_value_info("y", tp, None)], inits)
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                              helper.make_opsetid("com.microsoft", 1)]))
    assert ex.prepared.specialised
    rng = np.random.default_rng(6)
    lo = 0 if dt == np.uint8 else -128
    for sa, sb in (((2, 3, 4, 5), (2, 6, 4, 5)), ((1, 1), (1, 7)), ((2, 3, 4, 5), (2, 6, 4, 5))):
        f = {"a": rng.integers(lo, lo + 256, sa).astype(dt), "b": rng.integers(lo, lo + 256, sb).astype(dt)}
        got, want = ex.run(f)["y"], ex.run(f, prepared=False)["y"]
        assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want)
    with pytest.raises(ValueError, match="concatenate"):
        ex.run({"a": np.zeros((2, 3, 4, 5), dt), "b": np.zeros((2, 3, 4, 6), dt)})


@pytest.mark.parametrize("nm,ctm", [("floor", "asymmetric"), ("round_prefer_floor", "half_pixel"),
                                    ("ceil", "align_corners")])
def test_prepared_resize_nearest_equals_reference(nm, ctm):
    scales = numpy_helper.from_array(np.array([1, 1, 2, 1.5], np.float32), "scales")
    sizes = numpy_helper.from_array(np.array([1, 3, 7, 5], np.int64), "sizes")
    roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")
    nodes = [helper.make_node("Resize", ["x", "roi", "scales"], ["t"], mode="nearest", nearest_mode=nm,
                              coordinate_transformation_mode=ctm),
             helper.make_node("Resize", ["t", "", "", "sizes"], ["y"], mode="nearest", nearest_mode=nm,
                              coordinate_transformation_mode=ctm)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, None)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], [scales, sizes, roi])
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert len(ex.prepared.specialised) == 2
    rng = np.random.default_rng(8)
    for shape in ((1, 3, 4, 6), (1, 3, 5, 3)):
        x = {"x": rng.integers(0, 256, shape).astype(np.uint8)}
        a, b = ex.run(x, keep_all=True), ex.run(x, keep_all=True, prepared=False)
        for t in ("t", "y"):
            assert a[t].shape == b[t].shape and a[t].dtype == b[t].dtype and np.array_equal(a[t], b[t])


@pytest.mark.parametrize("with_bias,og,kernel", [(False, 5, (2, 2)), (True, 1, (2, 3)), (True, 4, (1, 1))])
def test_prepared_conv_transpose_equals_reference(with_bias, og, kernel):
    rng = np.random.default_rng(9)
    w = rng.standard_normal((6, og, *kernel)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    ins = ["x", "w"]
    if with_bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(og).astype(np.float32), "b"))
        ins.append("b")
    node = helper.make_node("ConvTranspose", ins, ["y"], strides=list(kernel), kernel_shape=list(kernel))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert ex.prepared.specialised
    for shape in ((1, 6, 5, 7), (2, 6, 3, 4)):
        x = rng.standard_normal(shape).astype(np.float32)
        x[0, 0, 0, 0] = -0.0
        got, want = ex.run({"x": x})["y"], ex.run({"x": x}, prepared=False)["y"]
        assert got.shape == want.shape and got.dtype == want.dtype
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_place_taps_equals_zero_initialised_col2im():
    from qsim.onnxrun.floatplan import place_taps

    rng = np.random.default_rng(11)
    col = rng.standard_normal((3, 2, 3, 4, 5)).astype(np.float32)
    col[0, 0, 0, 0, :3] = -0.0
    want = np.zeros((3, 8, 15), np.float32)
    for i in range(2):
        for j in range(3):
            want[:, i::2, j::3] += col[:, i, j]
    got = np.empty((3, 8, 15), np.float32)
    place_taps(col, got)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("alpha,beta", [(0.2, 0.5), (1 / 6, 0.5), (0.3, -0.25)])
def test_prepared_hard_sigmoid_equals_reference(alpha, beta):
    node = helper.make_node("HardSigmoid", ["x"], ["y"], alpha=alpha, beta=beta)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert ex.prepared.specialised
    x = np.random.default_rng(12).uniform(-8, 8, (2, 7, 1, 1)).astype(np.float32)
    x.reshape(-1)[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -beta / np.float32(alpha)]
    got, want = ex.run({"x": x})["y"], ex.run({"x": x}, prepared=False)["y"]
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("trans_a,trans_b", [(0, 1), (0, 0), (1, 1)])
@pytest.mark.parametrize("bias_shape,beta", [((6,), 1.0), ((1, 6), 0.5), ((3, 6), 1.0), ((), 2.0), (None, 1.0)])
def test_prepared_gemm_constant_b_equals_reference(trans_a, trans_b, bias_shape, beta):
    rng = np.random.default_rng(len(bias_shape or ()) + trans_a + 2 * trans_b)
    b = rng.standard_normal((6, 40) if trans_b else (40, 6)).astype(np.float32)
    inits = [numpy_helper.from_array(b, "b")]
    ins = ["a", "b"]
    if bias_shape is not None:
        inits.append(numpy_helper.from_array(rng.standard_normal(bias_shape).astype(np.float32), "c"))
        ins.append("c")
    node = helper.make_node("Gemm", ins, ["y"], transA=trans_a, transB=trans_b, beta=beta)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert ex.prepared.specialised == ["Gemm_0"]
    for m in ((3,) if bias_shape == (3, 6) else (1, 3, 5)):
        a = rng.standard_normal((40, m) if trans_a else (m, 40)).astype(np.float32)
        a.reshape(-1)[:2] = [np.nan, -0.0]
        for _ in range(2):
            got, want = ex.run({"a": a})["y"], ex.run({"a": a}, prepared=False)["y"]
            assert got.shape == want.shape and got.dtype == want.dtype
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("with_b,with_p,with_state", [(True, True, True), (False, False, False), (True, False, True)])
def test_prepared_lstm_equals_reference(direction, with_b, with_p, with_state):
    nd, hs, i = (2 if direction == "bidirectional" else 1), 5, 7
    rng = np.random.default_rng(nd + 2 * with_b + 4 * with_p + 8 * with_state)
    consts = {"w": rng.standard_normal((nd, 4 * hs, i)), "r": rng.standard_normal((nd, 4 * hs, hs)),
              "b": rng.standard_normal((nd, 8 * hs)) if with_b else None,
              "p": rng.standard_normal((nd, 3 * hs)) if with_p else None}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in consts.items() if v is not None]
    ins = ["x", "w", "r", "b" if with_b else "", "", "h0" if with_state else "", "c0" if with_state else "",
           "p" if with_p else ""]
    node = helper.make_node("LSTM", ins, ["y", "hn", "cn"], hidden_size=hs, direction=direction)
    vis = [helper.make_tensor_value_info(k, TensorProto.FLOAT, None)
           for k in ("x", "h0", "c0")[:3 if with_state else 1]]
    graph = helper.make_graph([node], "g", vis, [helper.make_tensor_value_info(k, TensorProto.FLOAT, None)
                                                 for k in ("y", "hn", "cn")], inits)
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]))
    assert ex.prepared.specialised == ["LSTM_0"]
    for t, n in ((1, 1), (3, 2)):
        f = {"x": rng.uniform(-3, 3, (t, n, i)).astype(np.float32)}
        if with_state:
            f |= {"h0": rng.uniform(-1, 1, (nd, n, hs)).astype(np.float32),
                  "c0": rng.uniform(-2, 2, (nd, n, hs)).astype(np.float32)}
        got, want = ex.run(f), ex.run(f, prepared=False)
        for k in ("y", "hn", "cn"):
            assert got[k].shape == want[k].shape and np.array_equal(got[k].view(np.uint32), want[k].view(np.uint32)), k


@pytest.mark.parametrize("bounds", [(0.0, 6.0), (None, 6.0), (-1.0, None), (np.array([2.0]), np.array([3.0]))])
def test_prepared_clip_equals_reference(bounds):
    inits, ins = [], ["x"]
    for name, v in zip(("lo", "hi"), bounds):
        if v is None:
            ins.append("")
        else:
            inits.append(numpy_helper.from_array(np.asarray(v, np.float32), name))
            ins.append(name)
    graph = helper.make_graph([helper.make_node("Clip", ins, ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    ex = OnnxExecutor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert ex.prepared.specialised == ["Clip_0"]
    x = np.random.default_rng(2).uniform(-9, 9, (2, 3, 5)).astype(np.float32)
    x.reshape(-1)[:4] = [np.nan, -0.0, 0.0, np.inf]
    for v in (x, x[:, ::2], x[0, 0, 0].reshape(()), x[0, 0, :1]):
        got, want = ex.run({"x": v})["y"], ex.run({"x": v}, prepared=False)["y"]
        assert got.shape == want.shape and got.dtype == want.dtype
        assert np.array_equal(got.reshape(-1).view(np.uint32), want.reshape(-1).view(np.uint32))
