"""Rounding modes shared by quantizers (NumPy; exact on float inputs)."""

from __future__ import annotations

import numpy as np


def round_half_even(v: np.ndarray) -> np.ndarray:
    """ONNX QuantizeLinear rounding: ties to even."""
    return np.rint(v)


def round_half_away(v: np.ndarray) -> np.ndarray:
    """TFLite rounding: ties away from zero. `trunc` keeps the fraction exact."""
    t = np.trunc(v)
    return t + np.sign(v) * (np.abs(v - t) >= 0.5)


def round_stochastic(v: np.ndarray, seed: int) -> np.ndarray:
    """Unbiased stochastic rounding: floor(v + U[0,1)), so E[round(v)] = v."""
    rng = np.random.default_rng(seed)
    return np.floor(v + rng.random(np.shape(v)))


def apply_rounding(v: np.ndarray, mode: str, seed: int = 0) -> np.ndarray:
    if mode == "nearest_even":
        return round_half_even(v)
    if mode == "half_away":
        return round_half_away(v)
    if mode == "stochastic":
        return round_stochastic(v, seed)
    raise ValueError(f"rounding must be one of ['half_away', 'nearest_even', 'stochastic'], got {mode!r}")


def round_to_bf16(v: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (RNE on the upper 16 bits), returned as float64."""
    f = np.asarray(v, dtype=np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)
