"""`qsim run-tflite` on the four int8 streaming wake-word models of pymicro-wakeword 2.5.0,
against ai-edge-litert's interpreter on its three paths (reference, optimized, XNNPACK).

Every tensor of every invocation (state variables carried between invocations) must equal
LiteRT's exactly. Needs `pip install --no-deps pymicro-wakeword==2.5.0`, `tflite` and
`ai-edge-litert` (CI installs them); skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite", reason="parsing .tflite needs the tflite package")
pytest.importorskip("ai_edge_litert", reason="the LiteRT comparison needs ai-edge-litert")

from qsim.tflite.ops import PATHS  # noqa: E402
from qsim.tflite.runner import TfliteRunner, run_litert  # noqa: E402

WAKE_WORDS = ("alexa", "hey_jarvis", "hey_mycroft", "okay_nabu")
STEPS = 20


def model(name: str) -> Path:
    spec = importlib.util.find_spec("pymicro_wakeword")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pip install --no-deps pymicro-wakeword==2.5.0 provides the models")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / f"{name}.tflite"


def sequence(runner, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    t = runner.main.tensors[runner.main.inputs[0]]
    return [{t.name: rng.integers(-128, 128, t.shape).astype(np.int8)} for _ in range(STEPS)]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", WAKE_WORDS)
def test_wake_word_every_tensor_matches_litert(name, path):
    p = model(name)
    runner = TfliteRunner(p, path=path)
    steps = sequence(runner, 7)
    ours = [runner.invoke(s, keep_all=True) for s in steps]
    theirs = run_litert(p, steps, path=path, keep_all=True)
    compared = 0
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for tensor, v in a.items():
            if tensor in b:
                assert np.array_equal(v, b[tensor]), f"{name}/{path} invocation {step}: {tensor} differs"
                compared += 1
    assert compared >= STEPS * 20  # (almost) every intermediate tensor of every invocation


def test_the_three_paths_really_differ_on_these_models():
    """Otherwise the path tests above would not tell the requantization rules apart."""
    p = model("okay_nabu")
    runs = {}
    for path in PATHS:
        runner = TfliteRunner(p, path=path)
        runs[path] = np.concatenate([np.concatenate([v.ravel().astype(np.int64) for v in
                                                     runner.invoke(s, keep_all=True).values()])
                                     for s in sequence(runner, 7)])
    assert not np.array_equal(runs["reference"], runs["optimized"])
    assert not np.array_equal(runs["reference"], runs["xnnpack"])


def test_cli_run_tflite_compare_litert(tmp_path, capsys):
    from qsim.cli import main

    p = model("hey_mycroft")
    runner = TfliteRunner(p)
    steps = sequence(runner, 3)
    ip = tmp_path / "in.npz"
    np.savez(ip, **{runner.input_names[0]: np.stack([s[runner.input_names[0]] for s in steps])})
    assert main(["run-tflite", str(p), "--inputs", str(ip), "--compare-litert", "--path", "all",
                 "--out", str(tmp_path / "out.npz")]) == 0
    out = capsys.readouterr().out
    assert out.count("mismatches: 0 (bit-exact)") == 3
    assert np.load(tmp_path / "out.npz")[runner.output_names[0]].shape == (STEPS, 1, 1)


def test_bad_tflite_inputs_give_clear_errors(tmp_path, capsys, monkeypatch):
    from qsim.cli import main
    from qsim.tflite import ops

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    ip = tmp_path / "in.npz"
    np.savez(ip, x=np.zeros(3, np.int8))
    assert main(["run-tflite", str(bad), "--inputs", str(ip)]) == 2
    assert "not a TFLite model" in capsys.readouterr().err
    p = model("alexa")
    runner = TfliteRunner(p)
    with pytest.raises(ValueError, match=r"must have shape \[1, 3, 40\]"):
        runner.invoke({runner.input_names[0]: np.zeros((1, 3, 41), np.int8)})
    with pytest.raises(ValueError, match="must have dtype int8"):
        runner.invoke({runner.input_names[0]: np.zeros((1, 3, 40), np.uint8)})
    monkeypatch.delitem(ops.OPS, "LOGISTIC")
    with pytest.raises(ValueError, match=r"unsupported TFLite op LOGISTIC at operator \d+"):
        TfliteRunner(p)


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", WAKE_WORDS)
def test_prepared_runner_equals_reference_runner_on_every_tensor(name, path, kernels, monkeypatch):
    """The prepared closures (qsim.tflite.prepared, the default; CONV_2D / DEPTHWISE_CONV_2D /
    FULLY_CONNECTED as one Numba call each, or the NumPy closures kept beside them) give the
    straightforward op-by-op runner's bits, dtype and shape on every tensor of every invocation,
    across a reset too."""
    from qsim.tflite import prepared

    monkeypatch.setattr(prepared, "USE_NUMBA", kernels == "numba")
    p = model(name)
    ref = TfliteRunner(p, path=path, prepared=False)
    fast = TfliteRunner(p, path=path)
    assert ref.prepared is None and fast.prepared is not None
    steps = sequence(ref, 11)
    for phase in range(2):
        for step, s in enumerate(steps):
            a, b = ref.invoke(s, keep_all=True), fast.invoke(s, keep_all=True)
            assert list(a) == list(b)
            for tensor, v in a.items():
                w = b[tensor]
                assert v.dtype == w.dtype and v.shape == w.shape and np.array_equal(v, w), \
                    f"{name}/{path} phase {phase} invocation {step}: {tensor} differs"
        assert ref.variables.keys() == fast.variables.keys()
        for key in ref.variables:
            assert np.array_equal(ref.variables[key], fast.variables[key])
        ref.reset()
        fast.reset()
    plain, want = fast.invoke(steps[0]), ref.invoke(steps[0])
    assert list(plain) == fast.output_names and all(np.array_equal(plain[k], want[k]) for k in want)
