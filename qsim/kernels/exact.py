"""Exact integer dot products through floating-point BLAS, used when no overflow can occur.

A float32 (float64) sum of integers stays exact while every partial sum is an integer of
magnitude ≤ 2^24 (2^53), whatever order BLAS adds in. With p = max|a|·max|b| (operands
after zero-point subtraction), a K-block of length kb ≤ 2^24/p is therefore exact in
float32; the exact block sums are then added in float64 (exact below 2^53) or int64.
Narrow GEMV shapes (few rows) skip BLAS, whose float conversion of the whole weight
would cost more than the product: a Numba kernel sums them in wrapping int32, exact
because the caller guarantees the true result fits in int32.
"""

from __future__ import annotations

import numpy as np
from numba import njit

F32_EXACT = 1 << 24
F64_EXACT = 1 << 53
GEMV_ROWS = 4          # at most this many rows of `a`: Numba GEMV instead of BLAS


def _blocks(K: int, kb: int) -> list[tuple[int, int]]:
    n = -(-K // kb)
    step = -(-K // n)
    return [(k0, min(K, k0 + step)) for k0 in range(0, K, step)]


def _shifted(x: np.ndarray, zp, dtype, zp_axis: int) -> np.ndarray:
    """x − zp as a float array (exact: both are small integers)."""
    xf = x.astype(dtype)
    zp = np.asarray(zp)
    if zp.ndim == 0:
        if int(zp):
            xf -= dtype(int(zp))
    elif np.any(zp):
        xf -= zp.astype(dtype).reshape((-1, 1) if zp_axis == 0 else (1, -1))
    return xf


def exact_matmul(a, b, za, zb, max_a: int, max_b: int) -> np.ndarray:
    """Exact Σ_k (a−za)(b−zb) as int64 (M, N); zb scalar or (N,); max_* bound |operand − zp|."""
    M, K = a.shape
    N = b.shape[1]
    p = max_a * max_b
    if p == 0 or K == 0 or M == 0 or N == 0:
        return np.zeros((M, N), np.int64)
    if M <= GEMV_ROWS and K * p < (1 << 31) and a.dtype.itemsize <= 2 and b.dtype.itemsize <= 2:
        raw_b = int(max(abs(int(b.min())), abs(int(b.max()))))
        if K * max_a * raw_b < (1 << 31):      # raw-b partial sums also fit: no wrap needed at all
            zb_vec = np.broadcast_to(np.asarray(zb, np.int64), (N,))
            return gemv_int32(a, b, np.int64(za), np.ascontiguousarray(zb_vec)).astype(np.int64)
    kb32 = F32_EXACT // p
    if kb32 >= min(K, 64):
        dtype, kb = np.float32, kb32
    elif F64_EXACT // p >= 1:
        dtype, kb = np.float64, F64_EXACT // p
    else:  # products beyond 2^53 cannot occur for 16-bit codes; keep an exact path anyway
        return (a.astype(np.int64) - za) @ (b.astype(np.int64) - np.asarray(zb, np.int64))
    af = _shifted(a, za, dtype, 0)
    bf = _shifted(b, zb, dtype, 1)
    blocks = _blocks(K, kb)
    if len(blocks) == 1:
        return (af @ bf).astype(np.int64)
    wide = K * p < F64_EXACT
    total = np.zeros((M, N), np.float64 if wide else np.int64)
    for k0, k1 in blocks:
        part = af[:, k0:k1] @ bf[k0:k1]
        total += part if wide else part.astype(np.int64)
    return total.astype(np.int64)


@njit(cache=True)
def gemv_int32(a, b, za, zb):
    """Rows of a (few) times b in int32 lanes; exact when every partial sum fits int32.

    Uses Σ_k (a−za)(b−zb) = Σ_k (a−za)·b − zb·Σ_k (a−za) so the inner loop reads raw b."""
    M, K = a.shape
    N = b.shape[1]
    out = np.empty((M, N), np.int32)
    row = np.empty(N, np.int32)
    for m in range(M):
        row[:] = 0
        asum = 0
        k = 0
        while k + 4 <= K:
            a0 = np.int32(a[m, k] - za)
            a1 = np.int32(a[m, k + 1] - za)
            a2 = np.int32(a[m, k + 2] - za)
            a3 = np.int32(a[m, k + 3] - za)
            asum += a0 + a1 + a2 + a3
            for n in range(N):
                row[n] += np.int32(a0 * np.int32(b[k, n]) + a1 * np.int32(b[k + 1, n])
                                   + a2 * np.int32(b[k + 2, n]) + a3 * np.int32(b[k + 3, n]))
            k += 4
        while k < K:
            a0 = np.int32(a[m, k] - za)
            asum += a0
            for n in range(N):
                row[n] += np.int32(a0 * np.int32(b[k, n]))
            k += 1
        for n in range(N):
            out[m, n] = np.int32(row[n] - zb[n] * asum)
    return out


def gemv_int32_reference(a, b, za, zb) -> np.ndarray:
    """NumPy twin of `gemv_int32`."""
    return ((a.astype(np.int64) - za) @ (b.astype(np.int64) - np.asarray(zb, np.int64))).astype(np.int32)
