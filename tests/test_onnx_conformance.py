"""ONNX's own backend node tests (`onnx.backend.test.case.node`) on `qsim run-onnx`.

Every node test case whose nodes are all ops qsim implements runs here, at the test
case's own tolerances (rtol/atol for floats; integer and bool outputs exact). The
eligible count grows with op coverage; `test_conformance_counts` prints it and checks
that the eligible set does not silently shrink.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
import onnx.numpy_helper  # noqa: E402

from qsim.onnxrun.executor import OnnxExecutor, unsupported_nodes  # noqa: E402

# Lower bound on eligible cases with onnx 1.23.2 (raise it as op coverage grows).
MIN_ELIGIBLE = 697


def _collect():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators warn about their own float8 / inf casts
        cases = collect_testcases()
    return cases


def _supported(model) -> bool:
    """qsim accepts every node (op and attributes), the nodes of If branches included (Loop, Scan and
    the sequence/optional ops that test_if_seq / test_if_opt use are not implemented)."""
    return not unsupported_nodes(model)


ALL = _collect()
ELIGIBLE = {c.name: c for c in ALL if _supported(c.model)}


def _check(name: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> None:
    want = np.asarray(want)
    got = np.asarray(got)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    if want.dtype.kind in "iub" or want.dtype.kind in "OSU":
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
        assert np.array_equal(got, want), f"{name}: integer output differs"
        return
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=name)


def _array(v) -> np.ndarray:
    """Test data come as arrays, NumPy scalars or TensorProtos (float8, int4, bfloat16 ...)."""
    if isinstance(v, onnx.TensorProto):
        return onnx.numpy_helper.to_array(v)
    return np.asarray(v)


@pytest.mark.parametrize("name", sorted(ELIGIBLE))
def test_onnx_backend_node_case(name):
    case = ELIGIBLE[name]
    ex = OnnxExecutor(case.model)
    for inputs, outputs in case.data_sets:
        feeds = {k: _array(v) for k, v in zip(ex.input_names, inputs)}
        got = ex.run(feeds)
        for out_name, want in zip(ex.output_names, outputs):
            _check(f"{name}:{out_name}", got[out_name], _array(want), case.rtol, case.atol)


def test_conformance_counts():
    node_cases = [c for c in ALL if c.kind == "node"]
    print(f"\nONNX backend node tests: {len(node_cases)} total, {len(ELIGIBLE)} use only ops qsim supports")
    major, minor = (int(v) for v in onnx.__version__.split(".")[:2])
    if (major, minor) >= (1, 23):  # older onnx wheels ship fewer node tests
        assert len(ELIGIBLE) >= MIN_ELIGIBLE
