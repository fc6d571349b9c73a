"""Tiny ONNX model builders and the ORT comparison used by the run-onnx tests."""

from __future__ import annotations

import functools

import numpy as np
from onnx import helper, numpy_helper

from qsim.onnxrun import run_onnx, run_ort


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def make_model(nodes, inputs: dict, outputs: dict, inits: dict | None = None, opset: int = 21):
    """nodes: NodeProtos; inputs: name -> example array; outputs: name -> dtype; inits: name -> array."""
    graph = helper.make_graph(
        nodes, "t",
        [_vi(n, a.dtype, a.shape) for n, a in inputs.items()],
        [_vi(n, d, None) for n, d in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def single(op, inputs: dict, inits: dict, out_dtype, input_order, opset=21, **attrs):
    """A one-node model: `input_order` lists the node's input names ('' for absent)."""
    return make_model([node(op, input_order, ["y"], **attrs)], inputs, {"y": out_dtype}, inits, opset)


def assert_matches_ort(model, feeds: dict, **options) -> dict:
    """qsim and ORT (graph as written) give identical dtypes, shapes and values."""
    ours = run_onnx(model, feeds, **options)
    theirs = run_ort(model, feeds)
    assert set(ours) == set(theirs)
    for name, b in theirs.items():
        a = ours[name]
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, a.shape, b.dtype, b.shape)
        diff = np.flatnonzero(a.astype(np.float64) != b.astype(np.float64))
        assert diff.size == 0, f"{name}: {diff.size} of {a.size} differ, e.g. qsim {a.ravel()[diff[:5]]} ORT {b.ravel()[diff[:5]]}"
    return ours


@functools.lru_cache(maxsize=None)
def ort_pair_saturates() -> bool:
    """Does ORT's u8×s8 MatMulInteger saturate adjacent product pairs on this CPU (AVX2, no VNNI)?"""
    a, b = np.full((1, 2), 255, np.uint8), np.full((2, 1), 127, np.int8)
    m = single("MatMulInteger", {"a": a}, {"b": b}, np.int32, ["a", "b"])
    return int(run_ort(m, {"a": a})["y"][0, 0]) == 32767


def s(v) -> np.ndarray:
    """A float32 scale array."""
    return np.asarray(v, np.float32)
