"""AdaRound (Nagel et al. 2020, arXiv:2004.10568): learn, per weight, whether to round
down or up so that the layer's output (not the weight) is reconstructed.

W̃ = s·(clamp(⌊W/s⌋ + h(V) + z) − z), h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1), ζ = 1.1, γ = −0.1;
loss = tr(ΔHΔᵀ)/out (the output MSE on the calibration inputs, H = XᵀX/n) + λ Σ 1 − |2h − 1|^β,
β annealed from 20 to 2 after a 20 % warm-up without the regulariser; Adam on V (lr 1e-2);
V starts where h(V) equals the fractional part (RTN-like). Seeded: the only randomness is
none — the optimisation is deterministic from its RTN start (`seed` is kept for the API).
"""

from __future__ import annotations

import numpy as np

from qsim.ptq.core import Grid

ZETA, GAMMA = 1.1, -0.1


def _h(V):
    return np.clip(1.0 / (1.0 + np.exp(-V)) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def adaround_codes(w: np.ndarray, H: np.ndarray, grid: Grid, *, iters: int = 300, lr: float = 1e-2,
                   lam: float = 0.01, warmup: float = 0.2, beta=(20.0, 2.0), seed: int = 0) -> np.ndarray:
    """Integer codes (out, K) of `w` on `grid` learned by AdaRound for input moment H."""
    W = np.asarray(w, np.float64)
    S, Z = grid.S, grid.Z
    base = np.floor(W / S)
    lo, hi = grid.qmin - Z, grid.qmax - Z
    rest = np.clip(W / S - base, 1e-4, 1 - 1e-4)
    p = np.clip((rest - GAMMA) / (ZETA - GAMMA), 1e-6, 1 - 1e-6)
    V = np.log(p / (1 - p))
    H = np.asarray(H, np.float64)
    out = W.shape[0]
    # normalise the reconstruction term so λ has the same meaning for every layer
    norm = max(float(np.sum((W @ H) * W) / out), 1e-30)
    m = np.zeros_like(V)
    v = np.zeros_like(V)
    b1, b2, eps = 0.9, 0.999, 1e-8
    start = int(warmup * iters)
    for t in range(1, iters + 1):
        sig = 1.0 / (1.0 + np.exp(-V))
        raw = sig * (ZETA - GAMMA) + GAMMA
        h = np.clip(raw, 0.0, 1.0)
        lvl = base + h
        inside = (lvl >= lo) & (lvl <= hi)
        D = S * np.clip(lvl, lo, hi) - W                       # Ŵ − W
        g_w = 2.0 * (D @ H) / out / norm                       # d recon / dŴ
        g_h = g_w * S * inside
        if t > start:
            frac = (t - start) / max(iters - start, 1)
            b = beta[0] + (beta[1] - beta[0]) * frac
            u = 2 * h - 1
            g_h = g_h + lam * (-b * np.abs(u) ** (b - 1) * np.sign(u) * 2)
        g_v = g_h * ((raw > 0) & (raw < 1)) * (ZETA - GAMMA) * sig * (1 - sig)
        m = b1 * m + (1 - b1) * g_v
        v = b2 * v + (1 - b2) * g_v * g_v
        V -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    hard = (_h(V) >= 0.5).astype(np.float64)
    return np.clip(base + hard + Z, grid.qmin, grid.qmax)
