"""Binary (XNOR-popcount) and ternary matrix products, bit-exact against the ±1 integer matmul.

Binary operands hold only -1 and +1, packed one bit per element (1 ↔ +1, 0 ↔ -1) into
uint64 words along K; a dot product of length K is then

    Σ a·b = K − 2·popcount(a_bits XOR b_bits)

(XNOR-Net / BNN inference). Ternary operands (-1, 0, +1) are two bit planes, `nonzero` and
`negative`; with both = nz_a AND nz_b and neg = both AND (neg_a XOR neg_b),

    Σ a·b = popcount(both) − 2·popcount(neg).

A binary operand is a ternary one with every element non-zero, so `matmul_ternary` also takes
a binary × ternary product. Padding bits beyond K are 0 in every plane and never count. The
results are exact int64 (|Σ| ≤ K); `matmul_pm1_reference` is the NumPy int64 oracle beside them.
Sign conventions are the caller's: these kernels take the ±1 (or -1/0/+1) values themselves,
not the scaled reals (multiply by α·β afterwards, as XNOR-Net does).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["matmul_binary", "matmul_pm1_reference", "matmul_ternary", "pack_signs", "pack_ternary"]

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True, inline="always")
def _popcount(x):  # pragma: no cover - compiled
    """Bits set in a uint64 (SWAR: 12 operations, no table)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> np.uint64(56))


@njit(cache=True)
def _xnor_gemm(ap, bp, k):  # pragma: no cover - compiled
    """out[i, j] = k − 2·Σ_w popcount(ap[i, w] ^ bp[j, w]) (rows of both packed along K)."""
    m, words = ap.shape
    n = bp.shape[0]
    out = np.empty((m, n), np.int64)
    for i in range(m):
        for j in range(n):
            s = 0
            for w in range(words):
                s += _popcount(ap[i, w] ^ bp[j, w])
            out[i, j] = k - 2 * s
    return out


@njit(cache=True)
def _ternary_gemm(anz, aneg, bnz, bneg):  # pragma: no cover - compiled
    """out[i, j] = Σ_w popcount(both) − 2·popcount(both & (neg_a ^ neg_b)), both = nz_a & nz_b."""
    m, words = anz.shape
    n = bnz.shape[0]
    out = np.empty((m, n), np.int64)
    for i in range(m):
        for j in range(n):
            s = 0
            for w in range(words):
                both = anz[i, w] & bnz[j, w]
                s += _popcount(both) - 2 * _popcount(both & (aneg[i, w] ^ bneg[j, w]))
            out[i, j] = s
    return out


def _as_matrix(x, name: str, allowed: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {x.shape}")
    if x.dtype.kind not in "iuf" or x.dtype == np.bool_:
        raise TypeError(f"{name} must hold integers (or integral floats) in {list(allowed)}, got dtype {x.dtype}")
    bad = ~np.isin(x, allowed)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must hold only {list(allowed)}; {int(bad.sum())} element(s) do not, e.g. "
                         f"{name}[{where[0]}, {where[1]}] = {x[where].item()!r}")
    return x


def _pack_rows(bits: np.ndarray) -> np.ndarray:
    """(R, K) booleans → (R, ceil(K/64)) uint64, element k in bit k % 64 of word k // 64."""
    rows, k = bits.shape
    words = max(1, -(-k // 64))
    padded = np.zeros((rows, words * 64), dtype=np.uint8)
    padded[:, :k] = bits
    return np.ascontiguousarray(np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64))


def pack_signs(x) -> tuple[np.ndarray, int]:
    """Pack a ±1 matrix along its last axis: ((rows, words) uint64 with 1 ↔ +1, K)."""
    x = _as_matrix(x, "x", (-1, 1))
    return _pack_rows(x > 0), x.shape[1]


def pack_ternary(x) -> tuple[np.ndarray, np.ndarray, int]:
    """Pack a -1/0/+1 matrix along its last axis: (nonzero plane, negative plane, K)."""
    x = _as_matrix(x, "x", (-1, 0, 1))
    return _pack_rows(x != 0), _pack_rows(x < 0), x.shape[1]


def _check_shapes(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimensions differ: a is {a.shape}, b is {b.shape} (need a (M, K) @ b (K, N))")


def matmul_binary(a, b) -> np.ndarray:
    """Exact a @ b for ±1 matrices a (M, K), b (K, N) by XNOR-popcount; int64 (M, N)."""
    a = _as_matrix(a, "a", (-1, 1))
    b = _as_matrix(b, "b", (-1, 1))
    _check_shapes(a, b)
    ap, k = pack_signs(a)
    bp, _ = pack_signs(b.T)
    return _xnor_gemm(ap, bp, np.int64(k))


def matmul_ternary(a, b) -> np.ndarray:
    """Exact a @ b for -1/0/+1 matrices (either may be binary ±1) by bit-plane popcounts; int64 (M, N)."""
    a = _as_matrix(a, "a", (-1, 0, 1))
    b = _as_matrix(b, "b", (-1, 0, 1))
    _check_shapes(a, b)
    anz, aneg, _ = pack_ternary(a)
    bnz, bneg, _ = pack_ternary(b.T)
    return _ternary_gemm(anz, aneg, bnz, bneg)


def matmul_pm1_reference(a, b) -> np.ndarray:
    """The int64 NumPy oracle: a @ b for matrices of -1/0/+1."""
    a = _as_matrix(a, "a", (-1, 0, 1)).astype(np.int64)
    b = _as_matrix(b, "b", (-1, 0, 1)).astype(np.int64)
    _check_shapes(a, b)
    return a @ b
