"""Exact integer dot products through floating-point BLAS, used when no overflow can occur.

A float32 (float64) sum of integers stays exact while every partial sum is an integer of
magnitude ≤ 2^24 (2^53), whatever order BLAS adds in. With p = max|a|·max|b| (operands
after zero-point subtraction), a K-block of length kb ≤ 2^24/p is therefore exact in
float32; the exact block sums are then added in float64 (exact below 2^53) or int64.
Narrow GEMV shapes (few rows) skip BLAS, whose float conversion of the whole weight
would cost more than the product: up to 8 rows with an 8-bit weight use the int16 pair
multiply-add kernel of `qsim.kernels.madd16` (exact int32 sums); otherwise up to 4 rows
use a Numba kernel that reads the int8/int16 weight directly and sums exact float32
blocks (same 2^24 argument) into int64. Larger products of two 8-bit operands whose data
keeps every u8×s8 int16 pair sum exact (2·max a'·max|b'| ≤ 32767, `madd8_plan`) use the
byte multiply-add kernel of `qsim.kernels.madd8` (packs both operands per call).

On a VNNI host (`qsim.kernels.cpu.backend()` "avx512vnni" / "avxvnni") every product of
two 8-bit operands with K ≤ `qsim.kernels.vnni.K_MAX` takes the `vpdpbusd` kernels of
`qsim.kernels.vnni` first (exact for any 8-bit data: no int16 pairs, int32 sums bounded
from the dtypes), except 1–4 rows, where the madd16 GEMV (also exact) read a weight that
other processes share the L3 with faster than the VNNI GEMV in the benchmarks. The "portable" backend uses none of the hand-written vector kernels.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit

from qsim.kernels._checks import max_abs_shifted
from qsim.kernels.cpu import backend
from qsim.kernels.madd8 import madd8_matmul, madd8_plan
from qsim.kernels.madd16 import MADD16_ROWS, madd16_fits, madd16_matmul
from qsim.kernels.vnni import vnni_fits, vnni_matmul

VNNI_WIDTH = {"avx512vnni": 512, "avxvnni": 256}.get(backend(), 0)   # 0: no VNNI kernels here
VNNI_MIN_ROWS = 5   # fewer rows: the int16 pair GEMV (madd16) streams a shared-cache weight better (measured)
SIMD = backend() != "portable"     # the hand-written AVX2 kernels (madd8, madd16) may run

F32_EXACT = 1 << 24
F64_EXACT = 1 << 53
GEMV_ROWS = 4          # at most this many rows of `a`: Numba GEMV instead of BLAS
MADD8_ROWS = 64        # 8-bit a and b with at least this many rows, N, K ≥ 16 and
MADD8_OPS = 1 << 22    # M·N·K ≥ this: the byte kernel (when provably exact) beats BLAS incl. packing


def _blocks(K: int, kb: int) -> list[tuple[int, int]]:
    n = -(-K // kb)
    step = -(-K // n)
    return [(k0, min(K, k0 + step)) for k0 in range(0, K, step)]


_WS = threading.local()
WORKSPACE_MAX = 1 << 23      # elements (32 MiB of float32); larger scratch arrays are allocated per call


def _scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Per-thread reusable scratch array: fresh large allocations page-fault on every call,
    which can cost as much as a 512³ product; results never alias these buffers."""
    size = math.prod(shape)
    if size > WORKSPACE_MAX:
        return np.empty(shape, dtype)
    pool = _WS.__dict__.setdefault("pool", {})
    key = (name, np.dtype(dtype))
    buf = pool.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1 << 16), dtype)
        pool[key] = buf
    return buf[:size].reshape(shape)


def _shifted(x: np.ndarray, zp, dtype, zp_axis: int, name: str) -> np.ndarray:
    """x − zp as a float scratch array in one pass (exact: both are small integers)."""
    zp = np.asarray(zp)
    if zp.ndim == 0:
        z = np.full((1, 1), zp, dtype)
    elif zp_axis == 0:
        z = zp.astype(dtype).reshape(-1, 1)
    else:
        z = zp.astype(dtype).reshape(1, -1)
    out = _scratch(name, x.shape, dtype)
    to_float(x, z, out)
    return out


@njit(cache=True)
def to_float(x, z, out):
    """out = x − z in out's float dtype; z is (1, 1), (1, cols) or (rows, 1)."""
    R, C = x.shape
    per_col = z.shape[1] > 1
    per_row = z.shape[0] > 1
    ft = out.dtype.type
    for i in range(R):
        zr = z[i, 0] if per_row else z[0, 0]
        if per_col:
            for j in range(C):
                out[i, j] = ft(x[i, j]) - z[0, j]
        else:
            for j in range(C):
                out[i, j] = ft(x[i, j]) - zr


def to_float_reference(x, z, out) -> None:
    """NumPy twin of `to_float`."""
    out[...] = x.astype(out.dtype) - z


@njit(cache=True)
def f32_to_int32(x):
    """Integer-valued float32 → int32 (values known to fit), a fresh array."""
    R, C = x.shape
    out = np.empty((R, C), np.int32)
    for i in range(R):
        for j in range(C):
            out[i, j] = np.int32(x[i, j])
    return out


def exact_matmul(a, b, za, zb, max_a: int, max_b: int, out_dtype=np.int64, bias=None) -> np.ndarray:
    """Exact Σ_k (a−za)(b−zb) (+ bias (N,)) as `out_dtype` (M, N); zb scalar or (N,); max_*
    bound |operand − zp|.

    out_dtype int32 is allowed when |bias| + K·max_a·max_b < 2^31 (the caller's bound check)."""
    M = a.shape[0]
    if VNNI_WIDTH and vnni_fits(a, b) and min(M, a.shape[1], b.shape[1]) > 0 \
            and not (M < VNNI_MIN_ROWS and madd16_fits(M, a.shape[1], b, max_a)):
        return vnni_matmul(a, b, za, zb, VNNI_WIDTH, out_dtype, _scratch, bias)   # bias in the int32 epilogue
    acc = _exact_matmul(a, b, za, zb, max_a, max_b, out_dtype)
    if bias is not None:
        acc += np.asarray(bias).astype(acc.dtype)[None, :]
    return acc


def _exact_matmul(a, b, za, zb, max_a: int, max_b: int, out_dtype) -> np.ndarray:
    M, K = a.shape
    N = b.shape[1]
    p = max_a * max_b
    if p == 0 or K == 0 or M == 0 or N == 0:
        return np.zeros((M, N), out_dtype)
    if SIMD and M <= MADD16_ROWS and b.dtype.itemsize == 1:
        ma = max_a if madd16_fits(M, K, b, max_a) else max_abs_shifted(a, np.asarray(za))  # a is small
        if madd16_fits(M, K, b, ma):
            acc = madd16_matmul(a, b, int(za))
            zb = np.asarray(zb)
            if zb.ndim or int(zb):
                acc = acc - zb.astype(np.int64)[None] * (a.astype(np.int64) - za).sum(axis=1)[:, None]
            return acc.astype(out_dtype, copy=False)
    if M <= GEMV_ROWS and b.dtype.itemsize <= 2:
        lo, hi = np.iinfo(b.dtype).min, np.iinfo(b.dtype).max
        kb = F32_EXACT // max(1, max_a * max(-int(lo), int(hi)))   # bounds the raw-b partial sums
        if kb >= 16:
            acc = gemv_f32(a, b, np.int64(za), kb)
            zb = np.asarray(zb)
            if zb.ndim or int(zb):
                acc -= zb.astype(np.int64)[None] * (a.astype(np.int64) - za).sum(axis=1)[:, None]
            return acc.astype(out_dtype, copy=False)
    if SIMD and M > MADD16_ROWS and a.dtype.itemsize == 1 and b.dtype.itemsize == 1 and M >= MADD8_ROWS \
            and min(N, K) >= 16 and M * N * K >= MADD8_OPS:
        plan = madd8_plan(a, b)
        if plan is not None:
            return madd8_matmul(a, b, za, zb, plan, out_dtype, _scratch)
    kb32 = F32_EXACT // p
    if kb32 >= min(K, 64):
        dtype, kb = np.float32, kb32
    elif F64_EXACT // p >= 1:
        dtype, kb = np.float64, F64_EXACT // p
    else:  # products beyond 2^53 cannot occur for 16-bit codes; keep an exact path anyway
        return ((a.astype(np.int64) - za) @ (b.astype(np.int64) - np.asarray(zb, np.int64))).astype(out_dtype)
    af = _shifted(a, za, dtype, 0, "a")
    bf = _shifted(b, zb, dtype, 1, "b")
    prod = _scratch("prod", (M, N), dtype)
    blocks = _blocks(K, kb)
    if len(blocks) == 1:
        np.matmul(af, bf, out=prod)
        return f32_to_int32(prod) if out_dtype is np.int32 and dtype is np.float32 else prod.astype(out_dtype)
    wide = K * p < F64_EXACT
    total = np.zeros((M, N), np.float64 if wide else np.int64)
    for k0, k1 in blocks:
        np.matmul(af[:, k0:k1], bf[k0:k1], out=prod)
        total += prod if wide else prod.astype(np.int64)
    return total.astype(out_dtype)


@njit(cache=True, fastmath=True)
def gemv_f32(a, b, za, kb):
    """Σ_k (a[m,k]−za)·b[k,n] for few rows m, on raw b, as int64.

    float32 lanes over n, 8 rows of b per pass; the running sums are flushed to int64
    every `kb` rows, and the caller picks kb so every partial sum is an integer of
    magnitude ≤ 2^24: exact in any association order (so fastmath's reordering and FMA
    contraction cannot change the result)."""
    M, K = a.shape
    N = b.shape[1]
    out = np.zeros((M, N), np.int64)
    row = np.empty(N, np.float32)
    for m in range(M):
        for k0 in range(0, K, kb):
            k1 = min(K, k0 + kb)
            row[:] = 0.0
            k = k0
            while k + 8 <= k1:
                a0 = np.float32(a[m, k] - za)
                a1 = np.float32(a[m, k + 1] - za)
                a2 = np.float32(a[m, k + 2] - za)
                a3 = np.float32(a[m, k + 3] - za)
                a4 = np.float32(a[m, k + 4] - za)
                a5 = np.float32(a[m, k + 5] - za)
                a6 = np.float32(a[m, k + 6] - za)
                a7 = np.float32(a[m, k + 7] - za)
                for n in range(N):
                    row[n] += (a0 * np.float32(b[k, n]) + a1 * np.float32(b[k + 1, n])
                               + a2 * np.float32(b[k + 2, n]) + a3 * np.float32(b[k + 3, n])
                               + a4 * np.float32(b[k + 4, n]) + a5 * np.float32(b[k + 5, n])
                               + a6 * np.float32(b[k + 6, n]) + a7 * np.float32(b[k + 7, n]))
                k += 8
            while k < k1:
                a0 = np.float32(a[m, k] - za)
                for n in range(N):
                    row[n] += a0 * np.float32(b[k, n])
                k += 1
            for n in range(N):
                out[m, n] += np.int64(row[n])
    return out


def gemv_f32_reference(a, b, za, kb=None) -> np.ndarray:
    """NumPy twin of `gemv_f32` (kb only matters for float rounding, which cannot occur)."""
    return (a.astype(np.int64) - za) @ b.astype(np.int64)
