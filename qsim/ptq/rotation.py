"""Hadamard rotation (QuaRot, Ashkboos et al. 2024, arXiv:2404.00456) for W4A4.

y = x·Wᵀ = (x·Q)(W·Q)ᵀ for any orthogonal Q: rotating both the activation and the weight
leaves the float function unchanged but spreads outlier channels over all channels, so
4-bit per-tensor/per-token activations and 4-bit weights lose less. Q = D·(H_{2^k} ⊗ R_m)
with D a seeded random ±1 diagonal, H_{2^k} the normalised Sylvester Hadamard matrix of the
largest power of two dividing K, and R_m a seeded random orthogonal matrix for the odd
remainder m (QuaRot uses a known Hadamard of size 12/20/… there; qsim's widths 384 = 3·128,
576 = 9·64, 1536 = 3·512 need m = 3 or 9). Where the rotation cannot be folded into the
previous op (a post-LN residual, the SwiGLU product) it runs online, as QuaRot's online
Hadamard before down_proj.
"""

from __future__ import annotations

import functools

import numpy as np


def sylvester(n: int) -> np.ndarray:
    if n & (n - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power of two, got {n}")
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


@functools.lru_cache(maxsize=32)
def rotation_matrix(k: int, seed: int = 0) -> np.ndarray:
    """Orthogonal (k, k) float64 rotation D·(H ⊗ R), seeded."""
    p2 = k & -k
    m = k // p2
    rng = np.random.default_rng([seed, k])
    r = np.linalg.qr(rng.standard_normal((m, m)))[0] if m > 1 else np.ones((1, 1))
    q = np.kron(sylvester(p2), r)
    d = rng.choice([-1.0, 1.0], size=k)
    out = d[:, None] * q
    out.setflags(write=False)
    return out
