"""quantize(nearest_even) equals ONNX Runtime's QuantizeLinear bit for bit (opset 21)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper  # noqa: E402

from qsim.quant import QuantSpec, quantize  # noqa: E402

# name: (onnx type, bits, signed)
TYPES = {
    "int8": (TP.INT8, 8, True),
    "uint8": (TP.UINT8, 8, False),
    "int16": (TP.INT16, 16, True),
    "uint16": (TP.UINT16, 16, False),
    "int4": (TP.INT4, 4, True),
    "uint4": (TP.UINT4, 4, False),
}


def ort_quantize(x, scale, zero_point, type_name, axis=None, block_size=None):
    """Run a one-node QuantizeLinear model; int4 results are Cast to int8 in-graph (ORT's Python API lacks int4)."""
    onnx_type = TYPES[type_name][0]
    inits = [
        helper.make_tensor("s", TP.FLOAT, scale.shape, scale.ravel().tolist()),
        helper.make_tensor("z", onnx_type, zero_point.shape, zero_point.ravel().tolist()),
    ]
    attrs = {k: v for k, v in (("axis", axis), ("block_size", block_size)) if v is not None}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs)]
    out, out_type = "q", onnx_type
    if onnx_type in (TP.INT4, TP.UINT4):
        nodes.append(helper.make_node("Cast", ["q"], ["y"], to=TP.INT8))
        out, out_type = "y", TP.INT8
    graph = helper.make_graph(
        nodes, "quantize", [helper.make_tensor_value_info("x", TP.FLOAT, x.shape)],
        [helper.make_tensor_value_info(out, out_type, x.shape)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0].astype(np.int64)


def spec_for(type_name, granularity="tensor", group_size=None):
    _, bits, signed = TYPES[type_name]
    return QuantSpec(bits=bits, signed=signed, scheme="affine", granularity=granularity, group_size=group_size)


def data_with_ties(rng, shape, scale):
    """Random values plus exact ties (k + 0.5)·scale and values far outside the range."""
    x = rng.normal(scale=40.0, size=shape) * np.max(scale)
    ties = (rng.integers(-300, 300, size=shape) + 0.5) * scale
    mask = rng.random(shape) < 0.5
    return np.where(mask, ties, x).astype(np.float32)


@pytest.mark.parametrize("type_name", list(TYPES))
@pytest.mark.parametrize("zp_at", ["low", "mid", "high"])
def test_per_tensor_matches_ort(type_name, zp_at):
    rng = np.random.default_rng(hash((type_name, zp_at)) % 2**32)
    spec = spec_for(type_name)
    qmin, qmax = spec.qrange
    zp = {"low": qmin, "mid": (qmin + qmax) // 2, "high": qmax}[zp_at]
    scale = np.array(2.0 ** -3, dtype=np.float32)  # power of two: x/scale ties are exact
    x = data_with_ties(rng, (6, 50), scale)
    want = ort_quantize(x, scale, np.array(zp), type_name)
    got = quantize(x, spec, scale=scale, zero_point=zp).q.astype(np.int64)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("type_name", list(TYPES))
@pytest.mark.parametrize("axis", [0, 1])
def test_per_axis_matches_ort(type_name, axis):
    rng = np.random.default_rng(7 + axis)
    spec = spec_for(type_name, "channel")
    qmin, qmax = spec.qrange
    shape = (5, 12)
    d = shape[axis]
    scale = (2.0 ** rng.integers(-6, 2, size=d)).astype(np.float32)
    scale[0] = 0.3  # one non-power-of-two scale: rounding of a real division
    zp = rng.integers(qmin, qmax + 1, size=d)
    zp[0], zp[-1] = qmin, qmax
    view = [1, 1]
    view[axis] = d
    x = data_with_ties(rng, shape, scale.reshape(view))
    want = ort_quantize(x, scale, zp, type_name, axis=axis)
    got = quantize(x, spec, axis=axis, scale=scale, zero_point=zp).q.astype(np.int64)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("type_name", ["int8", "uint8", "int4", "uint4", "int16"])
@pytest.mark.parametrize("block_size, k", [(4, 16), (8, 20), (32, 70)])  # 20 and 70: ragged last block
def test_blocked_matches_ort(type_name, block_size, k):
    rng = np.random.default_rng(block_size * 100 + k)
    spec = spec_for(type_name, "group", block_size)
    qmin, qmax = spec.qrange
    n_blocks = -(-k // block_size)
    scale = (2.0 ** rng.integers(-5, 1, size=(3, n_blocks))).astype(np.float32)
    zp = rng.integers(qmin, qmax + 1, size=(3, n_blocks))
    zp[0, 0], zp[-1, -1] = qmin, qmax
    x = data_with_ties(rng, (3, k), np.repeat(scale, block_size, axis=1)[:, :k])
    want = ort_quantize(x, scale, zp, type_name, axis=1, block_size=block_size)
    got = quantize(x, spec, axis=1, scale=scale, zero_point=zp).q.astype(np.int64)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("type_name", ["int8", "uint8", "int4"])
def test_calibrated_params_match_ort(type_name):
    """Scales and zero points qsim derives itself, fed to ORT, give the same codes."""
    rng = np.random.default_rng(3)
    spec = spec_for(type_name, "channel")
    x = (rng.normal(size=(4, 64)) * rng.uniform(0.1, 5, size=(4, 1)) + 0.3).astype(np.float32)
    qt = quantize(x, spec, axis=0)
    want = ort_quantize(x, qt.scale.astype(np.float32), qt.zero_point, type_name, axis=0)
    np.testing.assert_array_equal(qt.q.astype(np.int64), want)


def test_exact_ties_round_to_even():
    spec = QuantSpec(bits=8, scheme="symmetric")
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5], dtype=np.float32)
    assert quantize(x, spec, scale=1.0).q.tolist() == [0, 2, 2, 0, -2, -2]
    away = spec.replace(rounding="half_away")
    assert quantize(x, away, scale=1.0).q.tolist() == [1, 2, 3, -1, -2, -3]
