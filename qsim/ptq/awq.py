"""AWQ (Lin et al. 2023, arXiv:2306.00978): activation-aware weight quantization.

Input channels that see large activations matter more: scale them up before quantizing,
W' = W·diag(s), and divide the activation by s (folded into the op before; in a float
weight-only runtime the effective weight is Q(W·diag(s))·diag(s)⁻¹). s = mean|x_j|^α,
normalised by sqrt(max·min), with α searched on the grid {0, 1/n_grid, …, (n_grid−1)/n_grid}
(AutoAWQ's n_grid = 20) for the smallest layer output error tr(ΔHΔᵀ). Then AutoAWQ's clip
search: each output row's range is shrunk by a ratio in {1, 0.95, …, 0.5} where that lowers
the row's output error. No backpropagation; deterministic.
"""

from __future__ import annotations

import numpy as np

from qsim.ptq.core import Grid, layer_error, rtn, weight_axis
from qsim.quant import QuantSpec
from qsim.quant.quantize import observe


def awq_scales(w: np.ndarray, H: np.ndarray, x_absmean: np.ndarray, spec: QuantSpec, n_grid: int = 20):
    """(s (K,), α, error) minimising the output error of Q(W·diag(s))·diag(s)⁻¹."""
    W = np.asarray(w, np.float64)
    xm = np.maximum(np.asarray(x_absmean, np.float64), 1e-8)
    best = (np.ones(W.shape[1]), 0.0, np.inf)
    for i in range(n_grid):
        a = i / n_grid
        s = xm ** a
        s = s / np.sqrt(s.max() * s.min())
        w_hat = rtn(W * s, spec).dequantize(np.float64) / s
        err = layer_error(W, w_hat, H)
        if err < best[2]:
            best = (s, a, err)
    return best


def clip_search(w: np.ndarray, H: np.ndarray, spec: QuantSpec, ratios=np.arange(1.0, 0.49, -0.05)) -> Grid:
    """Grid of `w` whose per-row range is shrunk by the ratio with the smallest row output error
    (per-tensor grids: one ratio for the whole tensor)."""
    W = np.asarray(w, np.float64)
    axis = weight_axis(spec)
    lo, hi = observe(W, spec, axis)
    per_row = spec.granularity != "tensor"
    best_err = np.full(W.shape[0] if per_row else 1, np.inf)
    best_lo, best_hi = np.array(lo, copy=True), np.array(hi, copy=True)
    for r in ratios:
        g = Grid.of(W, spec, value_range=(lo * r, hi * r))
        d = g.dequant(g.codes(W)) - W
        e = np.sum((d @ H) * d, axis=1)
        if not per_row:
            e = np.array([e.sum()])
        better = e < best_err
        best_err = np.where(better, e, best_err)
        if per_row:
            rows = better if lo.ndim == 1 else better[:, None]
            best_lo = np.where(rows, lo * r, best_lo)
            best_hi = np.where(rows, hi * r, best_hi)
        elif better[0]:
            best_lo, best_hi = lo * r, hi * r
    return Grid.of(W, spec, value_range=(best_lo, best_hi))
