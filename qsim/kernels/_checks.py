"""Input validation shared by the kernels: errors name the argument and the allowed values."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Codes are 1–16-bit integers, signed or unsigned; wider dtypes may hold either kind.
CODE_MIN, CODE_MAX = -(1 << 15), (1 << 16) - 1
OVERFLOW_MODES = ("wrap", "saturate")


@lru_cache(maxsize=64)
def code_range(dtype: np.dtype) -> tuple[int, int]:
    """Range a code (and its zero point) may take in an array of `dtype`."""
    if dtype.itemsize <= 2:
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    return CODE_MIN, CODE_MAX


def check_codes(x, name: str) -> np.ndarray:
    """An integer array whose values are 1–16-bit codes."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array (codes of 1-16 bits), got dtype {arr.dtype}")
    if arr.size and arr.dtype.itemsize > 2:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < CODE_MIN or hi > CODE_MAX:
            raise ValueError(f"{name} holds values in [{lo}, {hi}], outside the 16-bit code range "
                             f"[{CODE_MIN}, {CODE_MAX}]")
    return arr


def check_zero_point(zp, arr: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Zero point as int64, scalar (shape ()) or of `shape`, inside the code range of `arr`'s dtype."""
    lo, hi = code_range(arr.dtype)
    if isinstance(zp, (int, np.integer)) and not isinstance(zp, bool):   # the common case, kept cheap
        if not lo <= int(zp) <= hi:
            raise ValueError(f"{name} must lie in the code range [{lo}, {hi}] of dtype {arr.dtype}, got {int(zp)}")
        return np.array(int(zp), np.int64)
    z = np.asarray(zp)
    if z.dtype.kind not in "iub":
        if z.dtype.kind == "f" and np.all(np.isfinite(z)) and np.all(z == np.round(z)):
            z = z.astype(np.int64)
        else:
            raise TypeError(f"{name} must be an integer, got {zp!r}")
    z = z.astype(np.int64)
    if z.ndim > 0 and (shape is None or z.shape != shape):
        allowed = "a scalar" if shape is None else f"a scalar or shape {shape}"
        raise ValueError(f"{name} must be {allowed}, got shape {z.shape}")
    if z.size and (int(z.min()) < lo or int(z.max()) > hi):
        raise ValueError(f"{name} must lie in the code range [{lo}, {hi}] of dtype {arr.dtype}, got "
                         f"{z.ravel()[:8].tolist()}")
    return z


def check_bias(bias, n: int, name: str = "bias") -> np.ndarray | None:
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array (int32 range), got dtype {b.dtype}")
    if b.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {b.shape}")
    b = b.astype(np.int64)
    if b.size and (b.min() < -(1 << 31) or b.max() > (1 << 31) - 1):
        raise ValueError(f"{name} must lie in the int32 range")
    return b


def check_acc(acc_bits, overflow) -> tuple[int, int, int]:
    """(bits, lo, hi) of the emulated accumulator."""
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) or \
            not (8 <= int(acc_bits) <= 32 or int(acc_bits) == 64):
        raise ValueError(f"acc_bits must be an int in 8..32 or 64, got {acc_bits!r}")
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow must be one of {list(OVERFLOW_MODES)}, got {overflow!r}")
    bits = int(acc_bits)
    return bits, -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def max_abs_shifted(arr: np.ndarray, zp: np.ndarray, axis: int | None = None) -> int:
    """max |arr − zp| without materialising the difference (zp scalar or broadcast along `axis`)."""
    if arr.size == 0:
        return 0
    if zp.ndim == 0:
        lo, hi = int(arr.min()), int(arr.max())
        z = int(zp)
        return max(abs(lo - z), abs(hi - z))
    lo = arr.min(axis=axis).astype(np.int64)
    hi = arr.max(axis=axis).astype(np.int64)
    return int(max(np.abs(lo - zp).max(), np.abs(hi - zp).max()))


def type_max_abs(dtype: np.dtype, zp: np.ndarray) -> int | None:
    """max |code − zp| over the whole code range of an 8/16-bit dtype (None for wider dtypes)."""
    if dtype.itemsize > 2:
        return None
    lo, hi = code_range(dtype)
    if zp.ndim == 0:
        return max(abs(lo - int(zp)), abs(hi - int(zp)))
    return int(max(np.abs(lo - zp).max(), np.abs(hi - zp).max()))


def check_product_fits(max_a: int, max_b: int, hi: int, acc_bits: int) -> None:
    if max_a * max_b > hi:
        raise ValueError(f"acc_bits={acc_bits} is narrower than a single product: max |a-a_zero_point| * "
                         f"max |b-b_zero_point| = {max_a * max_b} > {hi}")


def conv_output_hw(H: int, W: int, kernel, stride, padding, dilation) -> tuple[int, int]:
    """(Ho, Wo) of a 2-D convolution over an (H, W) input padded (top, left, bottom, right);
    a kernel that does not fit the padded input is an error, not an empty output."""
    kh, kw = kernel
    top, left, bottom, right = padding
    Ho = (H + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"kernel {kh}x{kw} (dilation {dilation}) does not fit the padded input")
    return Ho, Wo
