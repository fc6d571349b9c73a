"""Real models from the wild (PP-OCR det/rec/cls, five silero VAD graphs, four of them with `If`),
float and quantized four ways with onnxruntime.quantization (the forms it really quantizes:
`tests.real_models.MODEL_FORMS`), through `qsim run-onnx` against ORT (graph as written).

Every integer tensor of every run — graph outputs and all intermediate node outputs — must
equal ORT's exactly; float outputs must be within FLOAT_ATOL (only Softmax and ReduceMean
sum in an order qsim does not reproduce). Needs the wheels installed with
`pip install --no-deps rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3` (CI does); skipped
with the reason when a wheel is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

from qsim.onnxrun import codegen
from qsim.onnxrun.executor import OnnxExecutor, first_divergence, run_ort_all
from tests.real_models import FORMS, MODELS, feeds, forms, model_path, quantize_all

pytest.importorskip("onnxruntime.quantization")
FLOAT_ATOL = 1e-4


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    cache = {}

    def get(name):
        if model_path(name) is None:
            pytest.skip(f"{name}: install its wheel with pip install --no-deps "
                        f"{'rapidocr-onnxruntime==1.4.4' if 'ppocr' in name else 'silero-vad==6.2.3'}")
        if name not in cache:
            cache[name] = quantize_all(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


@pytest.mark.parametrize(("name", "form"), [(n, f) for n in MODELS for f in FORMS if f in forms(n)])
def test_real_model_matches_ort(quantized, name, form):
    path = quantized(name)[form]
    ex = OnnxExecutor(path)
    for batch in (1, 2):
        x = feeds(name, batch, seed=batch)
        ours = ex.run(x, keep_all=True)
        prepared_overflows = dict(ex.overflows)
        reference = ex.run(x, keep_all=True, prepared=False)  # the prepared plan equals the reference interpreter
        assert ex.overflows == prepared_overflows
        steps = ex.prepared.run_steps(ex, ex._check_inputs(x), True)  # the plan interpreted, not generated
        assert ex.overflows == prepared_overflows
        assert (ex.prepared.compiled is not None) == codegen.enabled()  # ours came from the generated function
        for t, v in reference.items():
            same = ours[t].dtype == v.dtype and ours[t].shape == v.shape and np.array_equal(ours[t], v, equal_nan=True)
            assert same, f"{name}/{form} batch {batch}: prepared plan differs from the reference interpreter at {t!r}"
            same = steps[t].dtype == v.dtype and steps[t].shape == v.shape and np.array_equal(steps[t], v,
                                                                                               equal_nan=True)
            assert same, f"{name}/{form} batch {batch}: the interpreted plan differs from the reference at {t!r}"
        theirs = run_ort_all(path, x)
        rows = first_divergence(ex.model, ours, theirs)
        integer = [r for r in rows if r["integer"]]
        assert not integer, f"{name}/{form} batch {batch}: integer tensors differ, first {integer[0]}"
        for out in ex.output_names:
            a, b = ours[out], theirs[out]
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.dtype.kind in "iub":
                assert np.array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=0, atol=FLOAT_ATOL, err_msg=f"{name}/{form} {out}")


@pytest.mark.parametrize(("name", "form"), [(n, f) for n in MODELS for f in FORMS if f in forms(n) and f != "float"])
def test_real_model_plan_on_the_other_ort_target(quantized, name, form):
    """The plan's paths for the ORT build this host is *not* (int16 pair saturation on a VNNI host, exact
    products on an AVX2-only one) equal the reference interpreter on every tensor and overflow count, so a CI
    host of either kind checks both sets of fast paths; the host's own target is checked against ORT above."""
    from qsim.onnxrun.executor import host_ort_target

    other = "exact" if host_ort_target() == "avx2" else "avx2"
    ex = OnnxExecutor(quantized(name)[form], ort_target=other)
    x = feeds(name, 2, seed=3)
    ours = ex.run(x, keep_all=True)
    prepared_overflows = dict(ex.overflows)
    reference = ex.run(x, keep_all=True, prepared=False)
    assert ex.overflows == prepared_overflows
    for t, v in reference.items():
        assert ours[t].dtype == v.dtype and ours[t].shape == v.shape and np.array_equal(ours[t], v, equal_nan=True), \
            f"{name}/{form} ort_target={other}: prepared plan differs from the reference interpreter at {t!r}"
