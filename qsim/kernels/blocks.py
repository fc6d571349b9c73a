"""Block-scaled matmul (MX formats, NVFP4, group-wise uniform): integer block dots, float scales.

For a (M, K) activation and an (N, K) weight, both blocked along K with the same block
size B, y[m, n] = Σ_g (sa[m, g]·sb[n, g]) · Σ_{k in block g} la[m, k]·lb[n, k], where la, lb
are the integer levels (q − zero point) of `QTensor`s. Block dot products are exact
integers (64-bit, no overflow possible for 16-bit levels); the float64 sum runs over g
ascending, each term fl64(fl64(sa·sb)·part), the order a block-scaled dot-product unit
with a wide float accumulator would use.
"""

from __future__ import annotations

import numpy as np

from qsim.kernels.gemm import grouped_core


def _levels_and_scales(t, name: str, rows: int | None):
    q = np.asarray(t.q)
    if q.ndim != 2:
        raise ValueError(f"{name} must be a 2-D QTensor, got shape {q.shape}")
    if t.codebook is not None:
        raise ValueError(f"{name} holds codebook indices (kmeans); block matmul needs integer levels")
    if t.spec.granularity != "group" or t.axis not in (1, -1):
        raise ValueError(f"{name} must be blocked along axis 1 (K): granularity 'group' or an MX/NVFP4 format, "
                         f"got granularity {t.spec.granularity!r} on axis {t.axis}")
    B = int(t.spec.group_size)
    G = -(-q.shape[1] // B)
    scale = np.asarray(t.scale, np.float64)
    if scale.shape != (q.shape[0], G):
        raise ValueError(f"{name}.scale must have shape {(q.shape[0], G)}, got {scale.shape}")
    levels = q.astype(np.int64)
    if t.has_zero_point:
        levels = levels - np.repeat(np.asarray(t.zero_point, np.int64), B, axis=1)[:, : q.shape[1]]
    return levels, scale, B


def matmul_blocks(qa, qb) -> np.ndarray:
    """float64 (M, N) product of qa (M, K) and the transposed weight qb (N, K), both blocked along K."""
    la, sa, Ba = _levels_and_scales(qa, "qa", None)
    lb, sb, Bb = _levels_and_scales(qb, "qb", None)
    if la.shape[1] != lb.shape[1]:
        raise ValueError(f"shape mismatch: qa is {la.shape} and qb is {lb.shape}; both must be (., K) with equal K")
    if Ba != Bb:
        raise ValueError(f"block sizes differ: qa uses {Ba}, qb uses {Bb}")
    G = sa.shape[1]
    parts, _ = grouped_core(la, np.ascontiguousarray(lb.T), Ba, 0, np.zeros((G, lb.shape[0]), np.int64), 64, False)
    y = np.zeros((la.shape[0], lb.shape[0]), np.float64)
    for g in range(G):
        y += (sa[:, g, None] * sb[None, :, g]) * parts[:, :, g].astype(np.float64)
    return y


def matmul_blocks_reference(qa, qb) -> np.ndarray:
    """Obvious twin of `matmul_blocks` (same float order, int64 block dots by einsum)."""
    la, sa, B = _levels_and_scales(qa, "qa", None)
    lb, sb, _ = _levels_and_scales(qb, "qb", None)
    K = la.shape[1]
    y = np.zeros((la.shape[0], lb.shape[0]), np.float64)
    for g in range(sa.shape[1]):
        part = la[:, g * B:min(K, (g + 1) * B)] @ lb[:, g * B:min(K, (g + 1) * B)].T
        y += (sa[:, g, None] * sb[None, :, g]) * part.astype(np.float64)
    return y
