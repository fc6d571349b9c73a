"""Qualitative PTQ behaviour on the real data sets (MNIST-10k, mnist1d), real numbers.

Measured (fp32 → quantized accuracy, A8 = 8-bit affine per-tensor activations, min-max
calibration on 256 training samples): MNIST CNN 96.80 % → W8A8 per-channel 96.80 %;
mnist1d CNN 93.0 % → W4A8 per-tensor 86.7 %, per-channel 90.4 %, group-16 91.3 %;
W3A8 per-tensor 70.6 %, group-16 75.9 %; W2A8 per-channel 31.3 %.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from qsim.nets import evaluate  # noqa: E402
from qsim.quant import QuantSpec  # noqa: E402

A8 = QuantSpec(bits=8, scheme="affine")


def test_mnist_cnn_w8a8_per_channel_within_half_a_point():
    res = evaluate("mnist_cnn", QuantSpec(bits=8, granularity="channel"), A8)
    assert res["config"]["eval_size"] == 2000
    assert res["float"]["metric"] > 0.96
    assert abs(res["quantized"]["metric"] - res["float"]["metric"]) <= 0.005
    assert res["quantized"]["sqnr_db"] > 35 and res["quantized"]["overflows"] == 0


@pytest.fixture(scope="module")
def mnist1d_points():
    pytest.importorskip("mnist1d", reason="the mnist1d net needs the optional package: pip install mnist1d")

    def acc(bits, granularity, abits=8):
        w = QuantSpec(bits=bits, granularity=granularity, group_size=16 if granularity == "group" else None)
        return evaluate("mnist1d_cnn", w, QuantSpec(bits=abits, scheme="affine"))["quantized"]["metric"]

    return acc


def test_mnist1d_accuracy_falls_as_weight_bits_drop(mnist1d_points):
    accs = [mnist1d_points(b, "channel") for b in (8, 4, 3, 2)]
    assert accs[0] > 0.92
    assert all(a > b + 0.02 for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < 0.5


def test_mnist1d_finer_scales_beat_per_tensor_at_low_bits(mnist1d_points):
    for abits in (8, 4):
        tensor = mnist1d_points(4, "tensor", abits)
        assert mnist1d_points(4, "channel", abits) > tensor + 0.02
        assert mnist1d_points(4, "group", abits) > tensor + 0.02
    assert mnist1d_points(3, "group") > mnist1d_points(3, "tensor") + 0.03
