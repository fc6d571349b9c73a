"""Narrow float element types of ONNX (float8 E4M3FN/FNUZ, E5M2/FNUZ, float4 E2M1, E8M0) and
their saturating casts, on ml_dtypes' types."""

from __future__ import annotations

import ml_dtypes
import numpy as np

FLOAT8 = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float4_e2m1fn")
E8M0 = "float8_e8m0fnu"


def is_narrow_float(dtype) -> bool:
    return np.dtype(dtype).name in FLOAT8 or np.dtype(dtype).name == E8M0


def is_float(dtype) -> bool:
    """float16/32/64, bfloat16 and the narrow float types."""
    d = np.dtype(dtype)
    return d.kind == "f" or d.name == "bfloat16" or is_narrow_float(d)


def cast_narrow(x: np.ndarray, to, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """Cast a float array to a float8/float4 type, ONNX rules: rne; with `saturate`, values
    beyond the largest finite value (infinities included) become ±max; NaN stays NaN (or the
    type's NaN); without it they become Inf where the type has one, else NaN."""
    to = np.dtype(to)
    if to.name == E8M0:
        return _cast_e8m0(x, to, saturate, round_mode)
    x32 = np.asarray(x).astype(np.float32)
    big = float(ml_dtypes.finfo(to).max)
    if saturate:
        x32 = np.where(np.isnan(x32), x32, np.clip(x32, -big, big)).astype(np.float32)
    elif to.name != "float8_e5m2":
        # no Inf in the type: overflow (after rounding) is NaN, if the type has one
        x32 = np.where(np.isinf(x32), np.float32(np.nan), x32)
    return x32.astype(to)


def _cast_e8m0(x, to, saturate: bool, round_mode: str) -> np.ndarray:
    """E8M0 holds 2^e, e in [-127, 127]; `round_mode` up / down / nearest picks the power of two."""
    x64 = np.abs(np.asarray(x).astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        m, e = np.frexp(x64)  # x = m·2^e, m in [0.5, 1)
    e = e.astype(np.int64) - 1  # x = (2m)·2^e, 2m in [1, 2)
    exact = m == 0.5
    mode = round_mode.decode() if isinstance(round_mode, bytes) else str(round_mode)
    if mode == "up":
        e = np.where(exact, e, e + 1)
    elif mode == "nearest":
        e = np.where(2 * m >= 1.5, e + 1, e)
    elif mode != "down":
        raise ValueError(f"round_mode must be up, down or nearest, got {mode!r}")
    e = np.where(x64 == 0, -127, e)
    if saturate:
        e = np.clip(e, -127, 127)
    y = np.ldexp(1.0, np.clip(e, -127, 128).astype(np.int32))
    y = np.where(np.isfinite(x64) & (e <= 127), y, np.nan)
    return y.astype(np.float32).astype(to)
