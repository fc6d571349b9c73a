"""Batched activation × activation products (attention): many small matmul_int at once.

Python-level calls per (sequence, head) cost more than the arithmetic. When no
overflow event is possible (K·max|a−za|·max|b−zb| fits the accumulator) the sequential
accumulator never wraps or saturates, so every order of exact integer additions gives
the same result — one float64 batched matmul computes it exactly as long as partial
sums stay below 2^53. Otherwise each matrix goes through `matmul_int`, which emulates
every addition.
"""

from __future__ import annotations

import numpy as np

from qsim.kernels._checks import check_acc, check_codes, check_zero_point
from qsim.kernels.gemm import matmul_int


def matmul_int_batched(a, b, a_zero_point=0, b_zero_point=0, *, acc_bits=32, overflow="wrap"):
    """Σ_k (a−za)(b−zb) for a (B, M, K) and b (B, K, N); scalar zero points.

    Returns (acc (B, M, N) int32 if acc_bits ≤ 32 else int64, overflow events).
    """
    a = check_codes(a, "a")
    b = check_codes(b, "b")
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"a and b must be (B, M, K) and (B, K, N) with equal B and K, got {a.shape} and {b.shape}")
    za = int(check_zero_point(a_zero_point, a, "a_zero_point"))
    zb = int(check_zero_point(b_zero_point, b, "b_zero_point"))
    bits, _, hi = check_acc(acc_bits, overflow)
    out_dtype = np.int32 if bits <= 32 else np.int64
    if a.size == 0 or b.size == 0:
        return np.zeros((a.shape[0], a.shape[1], b.shape[2]), out_dtype), 0
    max_a = max(abs(int(a.min()) - za), abs(int(a.max()) - za))
    max_b = max(abs(int(b.min()) - zb), abs(int(b.max()) - zb))
    bound = a.shape[2] * max_a * max_b
    if bound <= hi and bound < 2**53:
        acc = np.matmul(a.astype(np.float64) - za, b.astype(np.float64) - zb)
        return acc.astype(out_dtype), 0
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), out_dtype)
    total = 0
    for i in range(a.shape[0]):
        out[i], n = matmul_int(a[i], b[i], za, zb, acc_bits=bits, overflow=overflow)
        total += n
    return out, total
