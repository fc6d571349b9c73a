"""Requantization policies: int32 accumulator → output codes, bit-exact to named runtimes.

fp32_rne          ONNX Runtime / XNNPACK / fbgemm / qnnpack:
                  s_c = fl32(fl32(s_in·s_w[c]) / s_out); y = rne(fl32(fl32(acc)·s_c)) + zp
gemmlowp          TFLite reference conv/depthwise: Q31 multiplier from frexp, SRDHM then
                  RoundingDivideByPOT (two roundings; SRDHM ties → +∞, RDBPOT ties away from 0)
tflite_optimized  TFLite optimized kernels: SRDHM, then a right shift rounding half up
float64_half_away TFLite reference fully-connected: round_half_away(acc · m) in float64
exact             real-number acc·s_in·s_w/s_out, rounded half to even (rational arithmetic)
Then y is clamped to [qmin, qmax] intersected with the fused activation's range. All
integer work is vectorised int64 NumPy (no Numba needed: it is O(outputs)).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

POLICIES = ("fp32_rne", "gemmlowp", "tflite_optimized", "float64_half_away", "exact")
ACTIVATIONS = (None, "relu", "relu6")
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def quantize_multiplier(m):
    """TFLite QuantizeMultiplier: m = M·2^(shift−31), M a Q31 int32 (≥ 2^30 unless 0).

    q, e = frexp(m); M = round_half_away(q·2^31); M == 2^31 → (2^30, e+1); e < −31 → (0, 0).
    Vectorised: returns int64 arrays (M, shift) shaped like m."""
    m = np.asarray(m, dtype=np.float64)
    if np.any(~np.isfinite(m)) or np.any(m < 0):
        raise ValueError(f"multiplier must be finite and >= 0, got {m.ravel()[:8].tolist()}")
    q, e = np.frexp(m)
    qf = q * float(1 << 31)                       # exact: scaling by a power of two
    M = (np.floor(qf) + (qf - np.floor(qf) >= 0.5)).astype(np.int64)   # round half away (qf >= 0)
    e = e.astype(np.int64)
    top = M == (1 << 31)
    M = np.where(top, 1 << 30, M)
    e = np.where(top, e + 1, e)
    tiny = e < -31
    return np.where(tiny, 0, M), np.where(tiny, 0, e)


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values (int64 arrays in and out)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    v = ab + nudge
    q = np.where(v >= 0, v >> 31, -((-v) >> 31))  # C truncating division by 2^31
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero."""
    x = np.asarray(x, np.int64)
    e = np.asarray(exponent, np.int64)
    if np.any(e < 0) or np.any(e > 31):
        raise ValueError(f"exponent must be in 0..31, got {np.ravel(e)[:8].tolist()}")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite reference MultiplyByQuantizedMultiplier (double rounding):
    RDBPOT(SRDHM(x·2^max(shift,0), M), max(−shift, 0)); the left shift wraps like int32."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(srdhm(_wrap32(np.asarray(x, np.int64) << left), multiplier), right)


def multiply_by_quantized_multiplier_halfup(x, multiplier, shift):
    """TFLite optimized kernels: SRDHM, then an arithmetic right shift rounding half up (ties → +∞)."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    h = srdhm(_wrap32(np.asarray(x, np.int64) << left), multiplier)
    rounder = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    return (h + rounder) >> right


def _round_half_away(v: np.ndarray) -> np.ndarray:
    t = np.trunc(v)
    frac = v - t                                  # exact
    return t + np.sign(v) * (np.abs(frac) >= 0.5)


def _positive(x, name: str) -> np.ndarray:
    s = np.asarray(x, dtype=np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {s.ravel()[:8].tolist()}")
    return s


def _exact_rne(acc: np.ndarray, channel: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """rne(acc · ratio[channel]) with each ratio an exact Fraction.

    A float64 estimate is off by at most ~2^-50 relative, so it rounds correctly unless it
    lies within 2^-44·(|v| + 1) of a half-integer; only those (ties and near-ties) are
    redone with Python integers."""
    fracs = ratio.ravel()
    v = acc.astype(np.float64) * np.array([float(fr) for fr in fracs])[channel]
    out = np.rint(v).astype(np.int64)
    near = np.flatnonzero(np.abs(v - np.floor(v) - 0.5) <= 2.0 ** -44 * (np.abs(v) + 1.0))
    flat_acc, flat_ch, flat_out = acc.ravel(), channel.ravel(), out.reshape(-1)
    for idx in near:
        fr = fracs[flat_ch[idx]]
        q, rem = divmod(int(flat_acc[idx]) * fr.numerator, fr.denominator)
        twice = 2 * rem
        flat_out[idx] = q + (twice > fr.denominator or (twice == fr.denominator and q % 2 == 1))
    return out


def _exact_ratio(in_scale, w_scale, out_scale) -> np.ndarray:
    """s_in·s_w[c]/s_out as exact Fractions, returned as an object array per channel."""
    return np.array([Fraction(float(in_scale)) * Fraction(float(w)) / Fraction(float(out_scale))
                     for w in np.ravel(w_scale)], dtype=object).reshape(np.shape(w_scale))


def requantize(acc, in_scale, w_scale, out_scale, out_zero_point=0, *, policy="fp32_rne", qmin=-128, qmax=127,
               activation=None, channel_axis=-1):
    """Accumulator → clamped output codes (int32) under the named runtime's rounding.

    in_scale, out_scale scalars; w_scale scalar or per channel along `channel_axis` of acc
    (1 for NCHW conv output, -1 for (M, N) matmul output); activation None, "relu" (lower
    clamp at the zero point) or "relu6" (also upper clamp zp + round_half_away(fl32(6/s_out)),
    as TFLite's CalculateActivationRangeQuantized)."""
    a = np.asarray(acc)
    if a.dtype.kind not in "iu":
        raise TypeError(f"acc must be an integer array, got dtype {a.dtype}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {list(POLICIES)}, got {policy!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    s_in = _positive(in_scale, "in_scale")
    s_out = _positive(out_scale, "out_scale")
    if s_in.ndim or s_out.ndim:
        raise ValueError("in_scale and out_scale must be scalars (per-tensor)")
    s_w = _positive(w_scale, "w_scale")
    if not (isinstance(qmin, (int, np.integer)) and isinstance(qmax, (int, np.integer))) or qmin > qmax:
        raise ValueError(f"qmin/qmax must be integers with qmin <= qmax, got {qmin!r}, {qmax!r}")
    zp = np.asarray(out_zero_point)
    if zp.ndim or zp.dtype.kind not in "iu" or not qmin <= int(zp) <= qmax:
        raise ValueError(f"out_zero_point must be an integer in [qmin, qmax] = [{qmin}, {qmax}], "
                         f"got {out_zero_point!r}")
    zp = int(zp)
    if s_w.ndim > 1:
        raise ValueError(f"w_scale must be a scalar or 1-D per channel, got shape {s_w.shape}")
    if s_w.ndim == 1:
        if a.ndim == 0:
            raise ValueError("per-channel w_scale needs an acc with a channel axis")
        axis = channel_axis % a.ndim
        if s_w.shape[0] != a.shape[axis]:
            raise ValueError(f"w_scale has {s_w.shape[0]} channels but acc has {a.shape[axis]} along "
                             f"channel_axis={channel_axis}")
        view = [1] * a.ndim
        view[axis] = -1
    else:
        view = []
    bcast = (lambda p: np.asarray(p).reshape(view)) if view else (lambda p: np.asarray(p))

    if policy == "fp32_rne":
        # Stays in float32 (fl32(acc) straight from the int array): integers below 2^24 are exact
        # there, and anything larger saturates at qmin/qmax after + zp either way.
        s_c = (np.float32(s_in) * s_w.astype(np.float32)) / np.float32(s_out)
        y = np.rint(a.astype(np.float32) * bcast(s_c).astype(np.float32))
    else:
        a = a.astype(np.int64)
        if policy in ("gemmlowp", "tflite_optimized"):
            if a.size and (a.min() < INT32_MIN or a.max() > INT32_MAX):
                raise ValueError(f"acc must fit int32 for policy {policy!r}")
            M, shift = quantize_multiplier(s_in * s_w / s_out)
            f = multiply_by_quantized_multiplier if policy == "gemmlowp" else multiply_by_quantized_multiplier_halfup
            y = f(a, bcast(M), bcast(shift))
        elif policy == "float64_half_away":
            y = _round_half_away(a * bcast(s_in * s_w / s_out)).astype(np.int64)
        else:
            ratio = _exact_ratio(s_in, s_w, s_out)
            channel = np.broadcast_to(bcast(np.arange(ratio.size).reshape(ratio.shape)), a.shape)
            y = _exact_rne(a, channel, ratio)
    lo, hi = qmin, qmax
    if activation in ("relu", "relu6"):
        lo = max(qmin, zp)
    if activation == "relu6":
        hi = min(qmax, zp + int(_round_half_away(np.float32(6.0) / np.float32(s_out))))
    return np.clip(y + zp, lo, hi).astype(np.int32)
