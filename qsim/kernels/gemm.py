"""Integer matrix products with an emulated accumulator: exact, with overflow counts.

Dispatch: when no partial sum can leave the accumulator range (bound
|bias| + K·max|a−za|·max|b−zb| ≤ 2^(acc_bits−1) − 1) wrap and saturate are the identity,
so the exact product (`qsim.kernels.exact`, BLAS on provably exact blocks) is the answer
and 0 overflows occurred. Otherwise the sequential kernel of `qsim.kernels.accumulate`
emulates every addition in the documented order (bias, then k ascending).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.kernels._checks import (
    check_acc, check_bias, check_codes, check_product_fits, check_zero_point, max_abs_shifted, type_max_abs,
)
from qsim.kernels.accumulate import grouped_exact, seq_matmul, seq_matmul_pairsat16
from qsim.kernels.exact import F32_EXACT, GEMV_ROWS, VNNI_WIDTH, exact_matmul
from qsim.kernels.madd16 import MADD16_ROWS
from qsim.kernels.prepack import PackedWeights, packed_matmul


def _check_2d(a, b) -> None:
    if a.ndim != 2:
        raise ValueError(f"a must be 2-D (M, K), got shape {a.shape}")
    if b.ndim != 2:
        raise ValueError(f"b must be 2-D (K, N), got shape {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"shape mismatch: a is {a.shape} and b is {b.shape}; a's K must equal b's K")


def _out_dtype(bits: int):
    return np.int32 if bits <= 32 else np.int64


def operand_bounds(a, za, w, zw, w_k_axis: int, K: int, bias, hi: int, blas: bool) -> tuple[int, int]:
    """(max |a − za|, max |w − zw|): from the dtypes when that already proves what the
    kernels need (product and whole sum inside the accumulator; a single exact float32
    block for BLAS), else from the data (one min/max pass, no int64 copy)."""
    bias_max = 0 if bias is None else int(np.abs(bias).max(initial=0))
    ma, mw = type_max_abs(a.dtype, za), type_max_abs(w.dtype, zw)
    if ma is not None and mw is not None and bias_max + max(K, 1) * ma * mw <= hi \
            and not (blas and K * ma * mw > F32_EXACT):
        return ma, mw
    return max_abs_shifted(a, za), max_abs_shifted(w, zw, axis=w_k_axis)


def matmul_core(a, b, za, zb, bias, bits: int, saturate: bool, max_a: int, max_b: int):
    """Validated operands → (acc (M, N) int32 when it provably fits, else int64; overflow count)."""
    M, K = a.shape
    N = b.shape[1]
    hi = (1 << (bits - 1)) - 1
    bias_max = 0 if bias is None else int(np.abs(bias).max(initial=0))
    bound = bias_max + K * max_a * max_b
    if bound <= hi or bits == 64:
        if bound >= 1 << 63:
            raise ValueError(f"K={K} is too long for an exact 64-bit accumulation of these operands")
        return exact_matmul(a, b, za, zb, max_a, max_b, np.int32 if bound < 1 << 31 else np.int64, bias), 0
    a64 = a.astype(np.int64) - za
    b64 = b.astype(np.int64) - np.asarray(zb, np.int64)
    has_bias = bias is not None
    bias_arr = bias if has_bias else np.zeros(N, np.int64)
    out, count = seq_matmul(a64, b64, bias_arr, has_bias, max(K, 1), 1, bits, saturate)
    return out[:, :, 0], int(count)


def matmul_int(a, b, a_zero_point=0, b_zero_point=0, bias=None, *, acc_bits=32, overflow="wrap",
               pair_saturate16=False):
    """Σ_k (a−za)(b−zb) (+ bias) on an emulated `acc_bits` accumulator.

    a (M, K), b (K, N): integer codes of 1–16 bits (any int dtype); a_zero_point scalar;
    b_zero_point scalar or (N,); bias None or int32-range (N,). Order of additions: bias
    first, then k = 0..K−1; `overflow` ("wrap" | "saturate") applies after each one.
    pair_saturate16 reproduces ONNX Runtime's u8×s8 AVX2 kernel: raw-code products of
    adjacent k summed in saturating int16, then the exact zero-point correction as the
    last addition (int16 saturations count as overflow events too).
    b may be a `PackedWeights` of a (K, N) weight (`qsim.kernels.pack_weights`): same
    arguments, same result, the weight packed once instead of per call.
    Returns (acc int32 if acc_bits ≤ 32 else int64, number of overflow events).
    """
    if isinstance(b, PackedWeights):
        if not pair_saturate16:
            res = packed_matmul(a, b, a_zero_point, b_zero_point, bias, acc_bits, overflow)
            if res is not None:
                return res
        b = b.array
    a = check_codes(a, "a")
    b = check_codes(b, "b")
    _check_2d(a, b)
    N = b.shape[1]
    za = check_zero_point(a_zero_point, a, "a_zero_point")
    zb = check_zero_point(b_zero_point, b, "b_zero_point", (N,))
    bias = check_bias(bias, N)
    bits, _, hi = check_acc(acc_bits, overflow)
    saturate = overflow == "saturate"
    if pair_saturate16:
        if bits < 16:
            raise ValueError(f"acc_bits must be >= 16 with pair_saturate16 (int16 pair sums), got {bits}")
        zb_vec = np.broadcast_to(zb, (N,)).astype(np.int64)
        a64 = a.astype(np.int64)
        b64 = b.astype(np.int64)
        corr = (-int(za) * b64.sum(0)[None, :] - zb_vec[None, :] * a64.sum(1)[:, None]
                + a.shape[1] * int(za) * zb_vec[None, :])
        has_bias = bias is not None
        out, count = seq_matmul_pairsat16(a64, b64, bias if has_bias else np.zeros(N, np.int64), has_bias,
                                          np.ascontiguousarray(corr), bits, saturate)
        return out.astype(_out_dtype(bits)), int(count)
    blas = a.shape[0] > GEMV_ROWS and not (a.shape[0] <= MADD16_ROWS and b.dtype.itemsize == 1) \
        and not (VNNI_WIDTH and a.dtype.itemsize == 1 and b.dtype.itemsize == 1)
    max_a, max_b = operand_bounds(a, za, b, zb, 0, a.shape[1], bias, hi, blas)
    check_product_fits(max_a, max_b, hi, bits)
    acc, count = matmul_core(a, b, za, zb, bias, bits, saturate, max_a, max_b)
    return acc.astype(_out_dtype(bits), copy=False), count


def _group_zero_points(b_zero_point, b, G: int, N: int) -> np.ndarray:
    """b zero point as (G, N) int64 (scalar, (N,) or (G, N) accepted)."""
    z = np.asarray(b_zero_point)
    if z.ndim == 2:
        if z.shape != (G, N):
            raise ValueError(f"b_zero_point per group must have shape ({G}, {N}), got {z.shape}")
        for g in range(G):
            check_zero_point(z[g], b, "b_zero_point", (N,))
        return z.astype(np.int64)
    return np.broadcast_to(check_zero_point(z, b, "b_zero_point", (N,)), (G, N)).astype(np.int64)


def grouped_core(a, b, group_size: int, za, zbg, bits: int, saturate: bool):
    """Validated operands → (parts (M, N, G) int32 or int64, overflow count); zbg is (G, N)."""
    M, K = a.shape
    N = b.shape[1]
    G = zbg.shape[0]
    a64 = a.astype(np.int64) - za
    max_a = int(np.abs(a64).max(initial=0))
    zb_k = np.repeat(zbg, group_size, axis=0)[:K]
    b64 = b.astype(np.int64) - zb_k
    max_b = int(np.abs(b64).max(initial=0))
    if bits != 64:
        check_product_fits(max_a, max_b, (1 << (bits - 1)) - 1, bits)
    p = max_a * max_b
    if bits == 64 and min(group_size, K) * p > (1 << 63) - 1:
        raise ValueError(f"group sums of up to {min(group_size, K)} products of {max_a} x {max_b} can exceed int64; "
                         f"levels this wide (e.g. MXFP8 E5M2 at both extremes) need a float path")
    if bits == 64 or min(group_size, K) * p <= (1 << (bits - 1)) - 1:
        # No group sum can overflow: plain exact sums, int32 lanes when every sum fits them.
        dt = np.int32 if min(group_size, K) * p <= (1 << 31) - 1 else np.int64
        return grouped_exact(np.ascontiguousarray(a64, dtype=dt), np.ascontiguousarray(b64, dtype=dt), group_size), 0
    out, count = seq_matmul(a64, b64, np.zeros(N, np.int64), False, group_size, G, bits, saturate)
    return out, int(count)


def matmul_int_grouped(a, b, group_size, a_zero_point=0, b_zero_point=0, *, acc_bits=32, overflow="wrap"):
    """Per-group partial sums along K: parts[m, n, g] = Σ_{k in group g} (a−za)(b−zb[g, n]).

    Each group's sum is its own `acc_bits` accumulator (start 0, k ascending, no bias),
    as in group-wise quantized kernels that rescale each group's int32 partial sum.
    b_zero_point scalar, (N,) or (G, N). Returns (parts (M, N, ceil(K/group_size)) int32
    or int64, overflow count)."""
    a = check_codes(a, "a")
    b = check_codes(b, "b")
    _check_2d(a, b)
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    K, N = b.shape
    G = -(-K // int(group_size))
    za = check_zero_point(a_zero_point, a, "a_zero_point")
    zbg = _group_zero_points(b_zero_point, b, G, N)
    bits, _, _ = check_acc(acc_bits, overflow)
    parts, count = grouped_core(a, b, int(group_size), int(za), zbg, bits, overflow == "saturate")
    return parts.astype(_out_dtype(bits), copy=False), count


def rescale_groups(parts, a_scale, b_scale_groups) -> np.ndarray:
    """Float64 y[m, n] = a_scale[m] · Σ_g b_scale[g, n]·parts[m, n, g].

    Order (fixed, so results are reproducible): for g = 0..G−1, t = fl64(b_scale[g,n]·parts)
    is added to a float64 running sum; the sum is multiplied by a_scale last. a_scale is a
    scalar or per row (M,); b_scale_groups is (G, N), (G,) or a scalar."""
    p = np.asarray(parts)
    if p.ndim != 3 or p.dtype.kind not in "iu":
        raise ValueError(f"parts must be an integer array (M, N, G), got {p.dtype} {p.shape}")
    M, N, G = p.shape
    sa = _positive(a_scale, "a_scale")
    if sa.ndim not in (0, 1) or (sa.ndim == 1 and sa.shape != (M,)):
        raise ValueError(f"a_scale must be a scalar or shape ({M},), got {sa.shape}")
    sb = _positive(b_scale_groups, "b_scale_groups")
    if sb.ndim == 1 and sb.shape == (G,):
        sb = sb[:, None]
    try:
        sb = np.broadcast_to(sb, (G, N))
    except ValueError:
        raise ValueError(f"b_scale_groups must be (G, N) = ({G}, {N}), (G,) or a scalar, got {sb.shape}") from None
    total = rescale_core(np.ascontiguousarray(p), np.ascontiguousarray(sb, dtype=np.float64))
    return total * (sa[:, None] if sa.ndim == 1 else sa)


@njit(cache=True)
def rescale_core(p, sb):
    """Σ_g sb[g, n]·p[m, n, g] in float64, g ascending (reads each (m, n) row of groups contiguously)."""
    M, N, G = p.shape
    total = np.zeros((M, N), np.float64)
    for m in range(M):
        for n in range(N):
            t = 0.0
            for g in range(G):
                t += sb[g, n] * np.float64(p[m, n, g])
            total[m, n] = t
    return total


def rescale_core_reference(p, sb) -> np.ndarray:
    """NumPy twin of `rescale_core` (same operations in the same order)."""
    total = np.zeros(p.shape[:2], np.float64)
    for g in range(p.shape[2]):
        total += sb[g][None, :] * p[:, :, g].astype(np.float64)
    return total


def _positive(x, name: str) -> np.ndarray:
    s = np.asarray(x, dtype=np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {s.ravel()[:8].tolist()}")
    return s
