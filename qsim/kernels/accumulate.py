"""Sequential Numba kernels that emulate a narrow accumulator at every addition.

Accumulation order (the contract of every kernel in this package): each output starts
at 0; the bias (when given) is the first addition; then the products for k = 0, 1, …,
K-1 in increasing k. After each addition a sum outside [-2^(bits-1), 2^(bits-1)-1] is
one overflow event and is wrapped (two's complement) or saturated. Grouped sums restart
from 0 at each group boundary and carry no bias. The int64 NumPy twins live in
`qsim.kernels.reference`.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _fit(s, lo, hi, half, mask, saturate):
    """Return (value kept by the accumulator, 1 if `s` overflowed else 0)."""
    if s > hi:
        if saturate:
            return hi, 1
        return ((s + half) & mask) - half, 1
    if s < lo:
        if saturate:
            return lo, 1
        return ((s + half) & mask) - half, 1
    return s, 0


@njit(cache=True)
def _limits(bits):
    """(half, mask, lo, hi) of a two's-complement accumulator; 64 bits never overflows here."""
    if bits >= 64:
        return np.int64(0), np.int64(-1), np.iinfo(np.int64).min, np.iinfo(np.int64).max
    half = np.int64(1) << (bits - 1)
    return half, (np.int64(1) << bits) - 1, -half, half - 1


@njit(cache=True)
def _start_row(row, bias, has_bias, lo, hi, half, mask, saturate):
    """Reset a row of accumulators to 0, then add the bias as the first addition; returns overflows."""
    count = 0
    for n in range(row.shape[0]):
        row[n] = 0
        if has_bias:
            v, o = _fit(bias[n], lo, hi, half, mask, saturate)
            row[n] = v
            count += o
    return count


@njit(cache=True)
def seq_matmul(a, b, bias, has_bias, group, n_groups, bits, saturate):
    """Σ_k a[m,k]·b[k,n] per K-group of length `group` with every addition emulated.

    a (M, K) and b (K, N) are int64 operands with zero points already subtracted;
    n_groups = ceil(K/group) (1 for a plain matmul, so K = 0 still adds the bias).
    Returns (sums (M, N, n_groups) int64, overflow count)."""
    M, K = a.shape
    N = b.shape[1]
    G = n_groups
    half, mask, lo, hi = _limits(bits)
    out = np.empty((M, N, G), np.int64)
    row = np.empty(N, np.int64)
    count = 0
    for m in range(M):
        for g in range(G):
            count += _start_row(row, bias, has_bias, lo, hi, half, mask, saturate)
            for k in range(g * group, min(K, (g + 1) * group)):
                av = a[m, k]
                for n in range(N):
                    v, o = _fit(row[n] + av * b[k, n], lo, hi, half, mask, saturate)
                    row[n] = v
                    count += o
            for n in range(N):
                out[m, n, g] = row[n]
    return out, count


@njit(cache=True)
def seq_matmul_pairsat16(a, b, bias, has_bias, correction, bits, saturate):
    """ORT/MLAS u8×s8 AVX2 accumulation: Σ_j sat16(a[2j]·b[2j] + a[2j+1]·b[2j+1]) on raw codes.

    Order: bias, the saturated pair sums for j = 0, 1, …, then the exact zero-point
    correction (one addition). Counts int16 pair saturations plus accumulator overflows."""
    M, K = a.shape
    N = b.shape[1]
    half, mask, lo, hi = _limits(bits)
    out = np.empty((M, N), np.int64)
    row = np.empty(N, np.int64)
    count = 0
    for m in range(M):
        count += _start_row(row, bias, has_bias, lo, hi, half, mask, saturate)
        for k in range(0, K, 2):
            a0 = a[m, k]
            a1 = a[m, k + 1] if k + 1 < K else 0
            for n in range(N):
                p = a0 * b[k, n]
                if k + 1 < K:
                    p += a1 * b[k + 1, n]
                if p > 32767:
                    p = 32767
                    count += 1
                elif p < -32768:
                    p = -32768
                    count += 1
                v, o = _fit(row[n] + p, lo, hi, half, mask, saturate)
                row[n] = v
                count += o
        for n in range(N):
            v, o = _fit(row[n] + correction[m, n], lo, hi, half, mask, saturate)
            out[m, n] = v
            count += o
    return out, count


@njit(cache=True)
def grouped_exact(a, b, group):
    """parts[m, n, g] = Σ_{k in group g} a[m, k]·b[k, n] on zero-point-shifted operands.

    For the case the caller proved overflow-free (every group sum fits the accumulator),
    so no per-addition checks: n innermost over contiguous rows vectorises; the result's
    dtype is the operands' (int32 when the bound allows, else int64)."""
    M, K = a.shape
    N = b.shape[1]
    G = (K + group - 1) // group
    out = np.empty((M, N, G), a.dtype)
    row = np.empty(N, a.dtype)
    for m in range(M):
        for g in range(G):
            for n in range(N):
                row[n] = 0
            for k in range(g * group, min(K, (g + 1) * group)):
                av = a[m, k]
                for n in range(N):
                    row[n] += av * b[k, n]
            for n in range(N):
                out[m, n, g] = row[n]
    return out


def grouped_exact_reference(a, b, group) -> np.ndarray:
    """NumPy twin of `grouped_exact` (int64)."""
    M, K = a.shape
    G = -(-K // group)
    pad = G * group - K
    a64 = np.pad(np.asarray(a, np.int64), ((0, 0), (0, pad)))
    b64 = np.pad(np.asarray(b, np.int64), ((0, pad), (0, 0)))
    return np.einsum("mgk,gkn->mng", a64.reshape(M, G, group), b64.reshape(G, group, b64.shape[1]))
