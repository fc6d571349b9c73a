"""Sub-byte packing: codes of 1–16 bits as a dense bit stream in uint8 bytes.

Element i occupies bits [i·bits, (i+1)·bits) of the stream. `low_first=True` fills each
byte from its least significant bit and writes each code LSB first, so for 4 bits the
lower index sits in the low nibble (ONNX Int4x2); `low_first=False` fills bytes from the
most significant bit, code MSB first (lower index in the high nibble). Signed codes are
stored as `bits`-bit two's complement.
"""

from __future__ import annotations

import numpy as np


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer in 1..16, got {bits!r}")
    return int(bits)


def pack_bits(codes, bits, *, low_first=True) -> np.ndarray:
    """Flatten `codes` (C order) into ceil(n·bits/8) uint8 bytes."""
    bits = _check_bits(bits)
    c = np.asarray(codes)
    if c.dtype.kind not in "iub":
        raise TypeError(f"codes must be an integer array, got dtype {c.dtype}")
    c = c.astype(np.int64).ravel()
    if c.size and (c.min() < -(1 << (bits - 1)) or c.max() > (1 << bits) - 1):
        raise ValueError(f"codes must fit {bits} bits (signed [{-(1 << (bits - 1))}, {(1 << (bits - 1)) - 1}] or "
                         f"unsigned [0, {(1 << bits) - 1}]), got [{c.min()}, {c.max()}]")
    u = c & ((1 << bits) - 1)
    shifts = np.arange(bits, dtype=np.int64)
    if not low_first:
        shifts = shifts[::-1]
    stream = ((u[:, None] >> shifts[None, :]) & 1).astype(np.uint8).ravel()
    return np.packbits(stream, bitorder="little" if low_first else "big")


def unpack_bits(packed, bits, count, *, signed, low_first=True) -> np.ndarray:
    """Inverse of `pack_bits`: the first `count` codes as int64 (sign-extended if `signed`)."""
    bits = _check_bits(bits)
    p = np.asarray(packed)
    if p.dtype != np.uint8 or p.ndim != 1:
        raise TypeError(f"packed must be a 1-D uint8 array, got {p.dtype} with shape {p.shape}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if count * bits > p.size * 8:
        raise ValueError(f"count={count} codes of {bits} bits need {-(-count * bits // 8)} bytes, packed has {p.size}")
    stream = np.unpackbits(p, bitorder="little" if low_first else "big")[: count * bits]
    shifts = np.arange(bits, dtype=np.int64)
    if not low_first:
        shifts = shifts[::-1]
    u = (stream.reshape(count, bits).astype(np.int64) << shifts[None, :]).sum(axis=1)
    if signed:
        u = np.where(u >= 1 << (bits - 1), u - (1 << bits), u)
    return u
