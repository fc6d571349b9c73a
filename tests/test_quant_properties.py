"""Property tests of the quantizers: ranges, error bounds, storage formula, idempotence."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qsim.quant import QuantSpec, quantize
from qsim.quant.qtensor import expand_param

SETTINGS = settings(max_examples=40, deadline=None)

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)
matrices = arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 40)), elements=finite)


@st.composite
def uniform_specs(draw):
    granularity = draw(st.sampled_from(["tensor", "channel", "group", "global"]))
    scheme = draw(st.sampled_from(["affine", "symmetric"]))
    signed = draw(st.booleans())
    bits = draw(st.integers(2 if signed else 1, 16))
    restricted = scheme == "symmetric" and signed and draw(st.booleans())
    return QuantSpec(
        bits=bits, signed=signed, scheme=scheme, restricted=restricted, granularity=granularity,
        group_size=draw(st.integers(1, 16)) if granularity == "group" else None,
        rounding=draw(st.sampled_from(["nearest_even", "half_away", "stochastic"])),
        scale_dtype=draw(st.sampled_from(["fp32", "fp16", "bf16", "pow2"])),
    )


@SETTINGS
@given(x=matrices, spec=uniform_specs())
def test_uniform_codes_in_range_and_error_bounded(x, spec):
    qt = quantize(x, spec)
    qmin, qmax = spec.qrange
    assert qt.q.min() >= qmin and qt.q.max() <= qmax
    s = qt.expand(qt.scale)
    z = qt.expand(qt.zero_point)
    lo, hi = s * (qmin - z), s * (qmax - z)
    inside = (x >= lo) & (x <= hi)
    err = np.abs(qt.dequantize() - x.astype(np.float64))
    # Half a step for round-to-nearest, a whole step for stochastic rounding; slack for the fp32 division x / s
    # (one float32 rounding of the quotient: up to eps32·|x| once scaled back, as at the tie x = -3, s = 2/21).
    step = 1.0 if spec.rounding == "stochastic" else 0.5
    eps32 = float(np.finfo(np.float32).eps)
    assert np.all(err[inside] <= step * s[inside] * (1 + 1e-6) + eps32 * np.abs(x[inside]))


@SETTINGS
@given(x=matrices, spec=uniform_specs())
def test_uniform_idempotent(x, spec):
    qt = quantize(x, spec)
    again = quantize(qt.dequantize(np.float64), spec.replace(rounding="nearest_even"), qt.axis,
                     scale=qt.scale, zero_point=qt.zero_point)
    np.testing.assert_array_equal(again.q, qt.q)


@SETTINGS
@given(x=matrices, spec=uniform_specs())
def test_storage_bits_formula(x, spec):
    qt = quantize(x, spec)
    n_params = int(np.size(qt.scale))
    expected = x.size * spec.bits + n_params * spec.scale_bits + (n_params * spec.bits if spec.scheme == "affine" else 0)
    assert qt.storage_bits == expected
    if spec.granularity == "group":
        rows, cols = x.shape
        assert n_params == rows * -(-cols // spec.group_size)


def test_storage_int4_group32_fp16_is_4p5_bits():
    x = np.random.default_rng(0).normal(size=(64, 256)).astype(np.float32)
    spec = QuantSpec(bits=4, scheme="symmetric", granularity="group", group_size=32, scale_dtype="fp16")
    assert quantize(x, spec).bits_per_element == 4.5
    g128 = spec.replace(group_size=128, scheme="affine")  # + 4-bit zero points: 4 + 20/128
    assert quantize(x, g128).bits_per_element == 4 + 20 / 128


nonuniform = st.sampled_from(["pow2", "binary", "ternary", "kmeans"])


@SETTINGS
@given(x=matrices, scheme=nonuniform, bits=st.integers(2, 8), channel=st.booleans())
def test_nonuniform_codes_and_idempotence(x, scheme, bits, channel):
    granularity = "channel" if channel and scheme != "kmeans" else "tensor"
    spec = QuantSpec(bits=bits, scheme=scheme, granularity=granularity)
    qt = quantize(x, spec)
    assert qt.q.min() >= qt.qmin and qt.q.max() <= qt.qmax
    if scheme == "pow2":
        mags = np.unique(np.abs(qt.q[qt.q != 0]))
        assert np.all(mags & (mags - 1) == 0)  # every non-zero level is a power of two
    if scheme == "binary":
        assert set(np.unique(qt.q)) <= {-1, 1} and spec.bits == 1
    if scheme == "ternary":
        assert set(np.unique(qt.q)) <= {-1, 0, 1} and spec.bits == 2
    if scheme == "kmeans":
        assert qt.codebook.size == 2**bits and qt.q.max() < 2**bits
    if scheme in ("pow2", "kmeans"):
        # Quantizing the dequantized values again reproduces the same codes.
        again = quantize(qt.dequantize(np.float64), spec)
        np.testing.assert_array_equal(again.dequantize(), qt.dequantize())


def test_pow2_levels_and_thresholds():
    spec = QuantSpec(bits=3, scheme="pow2")  # sign + 2-bit code: levels {0, ±1, ±2, ±4}·2^k
    x = np.array([4.0, 3.0, 2.9, 1.5, 1.4, 0.75, 0.7, 0.5, 0.49, -3.0])
    qt = quantize(x, spec)
    # INQ thresholds: level 2^k covers [0.75·2^k, 1.5·2^k); below half the smallest level is zero.
    np.testing.assert_array_equal(qt.dequantize(), [4, 4, 2, 2, 1, 1, 1, 1, 0, -4])


def test_binary_and_ternary_scales():
    w = np.array([[1.0, -3.0, 0.5, -0.5], [2.0, 2.0, -2.0, 0.1]])
    b = quantize(w, QuantSpec(scheme="binary", granularity="channel"))
    np.testing.assert_allclose(b.scale, [1.25, 1.525])  # alpha = mean|w| per output channel
    assert b.q.tolist() == [[1, -1, 1, -1], [1, 1, -1, 1]]
    t = quantize(w, QuantSpec(scheme="ternary", granularity="channel"))
    # delta = 0.7·mean|w|: row 0 0.875 keeps {1, -3}; row 1 1.0675 keeps the three 2s.
    assert t.q.tolist() == [[1, -1, 0, 0], [1, 1, -1, 0]]
    np.testing.assert_allclose(t.scale, [2.0, 2.0])


def test_stochastic_rounding_is_seeded_and_unbiased():
    spec = QuantSpec(bits=8, scheme="symmetric", rounding="stochastic", seed=3)
    x = np.full(20000, 0.3, dtype=np.float64)
    a = quantize(x, spec, scale=1.0).q
    np.testing.assert_array_equal(a, quantize(x, spec, scale=1.0).q)
    assert set(np.unique(a)) == {0, 1}
    assert abs(a.mean() - 0.3) < 0.02


def test_group_scale_layout_is_onnx_blocked():
    x = np.random.default_rng(1).normal(size=(3, 10, 5)).astype(np.float32)
    spec = QuantSpec(bits=4, scheme="symmetric", granularity="group", group_size=4)
    qt = quantize(x, spec, axis=1)
    assert qt.scale.shape == (3, 3, 5)
    full = expand_param(qt.scale, x.shape, "group", 1, 4)
    amax = np.abs(x[:, 8:10, :]).max(axis=1)  # ragged last block: 2 elements
    np.testing.assert_allclose(full[:, 9, :], (amax / 7.5).astype(np.float32))


def test_global_uses_shared_range():
    a = np.array([0.1, -0.2], np.float32)
    spec = QuantSpec(bits=8, scheme="symmetric", granularity="global")
    qt = quantize(a, spec, value_range=(-4.0, 4.0))
    assert float(qt.scale) == np.float32(4.0 / 127.5)


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
def test_all_zero_tensor(scheme):
    qt = quantize(np.zeros((2, 3), np.float32), QuantSpec(scheme=scheme, granularity="channel"))
    assert np.all(qt.dequantize() == 0)


def test_kmeans_gives_each_value_its_own_centroid_when_there_are_few():
    """Few distinct values: the codebook holds them exactly, so quantizing is lossless and idempotent."""
    x = np.array([[-740.0, -760.0, -782.0, -258.0]])  # a hypothesis counterexample of the Lloyd path
    qt = quantize(x, QuantSpec(bits=3, scheme="kmeans"))
    np.testing.assert_array_equal(qt.dequantize(), x)
    assert qt.codebook.size == 8
