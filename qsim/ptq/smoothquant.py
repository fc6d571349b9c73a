"""SmoothQuant (Xiao et al. 2022, arXiv:2211.10438): migrate activation outliers into the weights.

s_j = max|X_j|^α / max|W_j|^(1−α) (max over the calibration set and over every weight that
consumes the same input), X' = X·diag(s)⁻¹, W' = W·diag(s): the float function is unchanged and
the per-tensor activation range shrinks to what W8A8 can hold. Where the division folds into a
preceding LayerNorm/RMSNorm or linear weight, a runtime pays nothing for it; where it does not
(MiniLM's post-LN residual, GELU outputs), it is an explicit per-channel multiply before the
quantizer (said in the result's config).

α: the paper's fixed 0.5, or (`search_smoothing`, the default of `--ptq smoothquant`) chosen per
input — per group of layers reading it — from {no smoothing, α = 0, 0.1, …, 1} on calibration
statistics, as Intel Neural Compressor's SmoothQuant auto-tune does, for the smallest modelled
W8A8 output error of the group: the weight term tr(ΔW'·H'·ΔW'ᵀ) (H' = diag(s)⁻¹·H·diag(s)⁻¹, H from
the calibration rows) plus the activation term Δₐ²/12·‖Q(W')‖², Δₐ the per-tensor step of the
smoothed calibration range [min_j xmin_j/s_j, max_j xmax_j/s_j] (uniform rounding noise; the range
is the calibration min/max, so nothing clips).
"""

from __future__ import annotations

import numpy as np

ALPHAS = tuple(np.round(np.arange(0.0, 1.0001, 0.1), 2))


def smooth_scales(x_absmax: np.ndarray, weights, alpha: float = 0.5) -> np.ndarray:
    """Per-input-channel smoothing factors s (K,) for the weights (out, K) sharing one input."""
    wmax = np.max([np.abs(np.asarray(w, np.float64)).max(0) for w in weights], axis=0)
    xm = np.asarray(x_absmax, np.float64)
    s = np.power(np.maximum(xm, 1e-5), alpha) / np.power(np.maximum(wmax, 1e-5), 1 - alpha)
    return np.clip(s, 1e-5, None)


def modelled_error(s, x_min, x_max, weights, factor, wspec, aspec) -> float:
    """Modelled output error (summed over the group's output rows) of W8A8 with smoothing s."""
    from qsim.ptq.core import rtn
    from qsim.quant.quantize import uniform_params

    lo, hi = float(np.min(np.asarray(x_min) / s)), float(np.max(np.asarray(x_max) / s))
    step = float(np.asarray(uniform_params(lo, hi, aspec)[0]))
    f = factor.scaled(s)
    err = 0.0
    for w in weights:
        ws = np.asarray(w, np.float64) * s
        wq = rtn(ws, wspec).dequantize(np.float64)
        err += float(f.row_errors(wq - ws).sum()) + step * step / 12.0 * float(np.sum(wq * wq))
    return err


def search_smoothing(x_absmax, x_min, x_max, H, weights, wspec, aspec, alphas=ALPHAS, factor=None):
    """(s, α) with the smallest modelled W8A8 error over {no smoothing (α None, s = 1)} ∪ `alphas`."""
    from qsim.ptq.awq import ErrorFactor

    factor = factor or ErrorFactor(H)
    K = np.shape(x_absmax)[0]
    cands = [(None, np.ones(K))] + [(float(a), smooth_scales(x_absmax, weights, a)) for a in alphas]
    errs = [modelled_error(s, x_min, x_max, weights, factor, wspec, aspec) for _, s in cands]
    a, s = cands[int(np.argmin(errs))]
    return s, a
