"""Requantization policies: hand-worked TFLite fixed-point cases and scalar Python oracles."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qsim.kernels import (
    multiply_by_quantized_multiplier, quantize_multiplier, requantize, rounding_divide_by_pot, srdhm,
)


# -- scalar oracles written straight from REFERENCE B2 (Python ints / Fractions) ---------------
def _half_away(fr: Fraction) -> int:
    return int(math.floor(fr + Fraction(1, 2))) if fr >= 0 else -int(math.floor(-fr + Fraction(1, 2)))


def _qm(m: float):
    if m == 0:
        return 0, 0
    q, e = math.frexp(m)
    M = _half_away(Fraction(q) * 2**31)
    if M == 2**31:
        M, e = 2**30, e + 1
    if e < -31:
        M, e = 0, 0
    return M, e


def _srdhm(a: int, b: int) -> int:
    if a == b == -2**31:
        return 2**31 - 1
    ab = a * b
    v = ab + (2**30 if ab >= 0 else 1 - 2**30)
    return abs(v) // 2**31 * (1 if v >= 0 else -1)


def _rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    return (x >> e) + int((x & mask) > (mask >> 1) + int(x < 0))


def _wrap32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def _policy(acc: int, s_in: float, s_w: float, s_out: float, policy: str) -> int:
    if policy == "fp32_rne":
        s = np.float32(np.float32(s_in) * np.float32(s_w)) / np.float32(s_out)
        return int(np.rint(np.float32(np.float32(acc) * np.float32(s))))
    if policy == "exact":
        return round(Fraction(acc) * Fraction(s_in) * Fraction(s_w) / Fraction(s_out))   # Python round: half even
    m = s_in * s_w / s_out
    if policy == "float64_half_away":
        return _half_away(Fraction(acc * m))
    M, shift = _qm(m)
    h = _srdhm(_wrap32(acc << max(shift, 0)), M)
    right = max(-shift, 0)
    if policy == "gemmlowp":
        return _rdbpot(h, right)
    return (h + (1 << (right - 1) if right else 0)) >> right                          # tflite_optimized


POLICIES = ["fp32_rne", "gemmlowp", "tflite_optimized", "float64_half_away", "exact"]


@st.composite
def scale(draw):
    if draw(st.booleans()):
        return 2.0 ** draw(st.integers(-12, 4))                  # powers of two: exact ties
    return float(np.float32(draw(st.floats(1e-4, 10.0))))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2**31, 2**31 - 1) | st.integers(-300, 300), min_size=1, max_size=12),
       scale(), st.lists(scale(), min_size=1, max_size=3), scale(), st.sampled_from(POLICIES),
       st.integers(-128, 127), st.sampled_from([None, "relu", "relu6"]))
def test_requantize_equals_scalar_oracle(accs, s_in, s_ws, s_out, policy, zp, act):
    C = len(s_ws)
    acc = np.array([accs] * C, np.int64).T                      # (len, C): channel axis -1
    got = requantize(acc.astype(np.int32), s_in, np.array(s_ws), s_out, zp, policy=policy, activation=act)
    lo = zp if act else -128
    hi = min(127, zp + _half_away(Fraction(float(np.float32(6.0) / np.float32(s_out))))) if act == "relu6" else 127
    for i, a in enumerate(accs):
        for c, w in enumerate(s_ws):
            want = min(max(_policy(a, s_in, w, s_out, policy) + zp, lo), hi)
            assert got[i, c] == want, (a, w, policy)


def test_tflite_double_rounding_case():
    """m = 0.375, acc = -1: SRDHM gives -1 (-0.75 → -1), RDBPOT(-1, 1) = -1; the exact value -0.375 → 0."""
    M, shift = quantize_multiplier(0.375)
    assert (int(M), int(shift)) == (3 << 29, -1)
    assert int(multiply_by_quantized_multiplier(-1, M, shift)) == -1
    acc = np.array([-1])
    assert requantize(acc, 0.375, 1.0, 1.0, policy="gemmlowp")[0] == -1
    assert requantize(acc, 0.375, 1.0, 1.0, policy="exact")[0] == 0
    assert requantize(acc, 0.375, 1.0, 1.0, policy="fp32_rne")[0] == 0


def test_srdhm_and_rdbpot_ties():
    assert int(srdhm(-7, 1 << 30)) == -3           # -3.5 → -3 (ties toward +inf)
    assert int(srdhm(7, 1 << 30)) == 4             # 3.5 → 4
    assert int(srdhm(-2**31, -2**31)) == 2**31 - 1  # the only saturating case
    assert rounding_divide_by_pot(np.array([-3, 3, -6, 6, 5, -5]), 1).tolist() == [-2, 2, -3, 3, 3, -3]
    assert rounding_divide_by_pot(np.array([-6, 6, 5, -5, 7]), 2).tolist() == [-2, 2, 1, -1, 2]
    # m = 0.25 = 2^30·2^-31 with shift -1; acc/4 = -0.5, 0.5, -1.5, 1.5 tell the policies apart
    acc = np.array([-2, 2, -6, 6])
    want = {"gemmlowp": [-1, 1, -2, 2],            # RDBPOT: ties away from zero
            "tflite_optimized": [0, 1, -1, 2],      # final shift rounds half up
            "fp32_rne": [0, 0, -2, 2], "exact": [0, 0, -2, 2],
            "float64_half_away": [-1, 1, -2, 2]}
    for policy, expected in want.items():
        assert requantize(acc, 0.25, 1.0, 1.0, policy=policy).tolist() == expected, policy


def test_quantize_multiplier_edges():
    M, e = quantize_multiplier(np.array([0.0, 1.0 - 2.0**-40, 2.0**-40, 0.5, 3.0]))
    assert M.tolist() == [0, 1 << 30, 0, 1 << 30, 3 << 29]
    assert e.tolist() == [0, 1, 0, 0, 2]


def test_activation_clamps_and_channel_axis():
    acc = np.arange(-300, 301, 50).reshape(1, 13, 1, 1).repeat(2, axis=0)
    y = requantize(acc, 0.05, 1.0, 0.05, -128, activation="relu6")
    assert y.min() == -128 and y.max() == -8                   # zp + round(6 / 0.05) = -128 + 120
    y = requantize(acc, 1.0, 1.0, 1.0, -10, activation="relu")
    assert y.min() == -10 and y.max() == 127
    w = np.linspace(0.5, 2.0, 13)
    y = requantize(acc, 0.1, w, 1.0, channel_axis=1, policy="exact")
    assert y[0, 12, 0, 0] == round(Fraction(300) * Fraction(0.1) * Fraction(w[12]))


def test_requantize_bad_inputs():
    acc = np.zeros((2, 3), np.int32)
    cases = [
        (dict(in_scale=0.0), "in_scale"), (dict(in_scale=-1.0), "in_scale"), (dict(out_scale=np.nan), "out_scale"),
        (dict(w_scale=np.array([1.0, 0.0, 1.0])), "w_scale"), (dict(w_scale=np.ones(2)), "w_scale"),
        (dict(policy="round"), "policy"), (dict(activation="gelu"), "activation"),
        (dict(out_zero_point=200), "out_zero_point"), (dict(qmin=5, qmax=1), "qmin"),
    ]
    for kw, name in cases:
        args = dict(in_scale=1.0, w_scale=1.0, out_scale=1.0) | kw
        with pytest.raises(ValueError, match=name):
            requantize(acc, args.pop("in_scale"), args.pop("w_scale"), args.pop("out_scale"), **args)
    with pytest.raises(ValueError, match="int32"):
        requantize(np.array([1 << 40]), 1.0, 1.0, 1.0, policy="gemmlowp")
    with pytest.raises(TypeError, match="acc"):
        requantize(np.array([1.5]), 1.0, 1.0, 1.0)
