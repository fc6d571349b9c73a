"""SmoothQuant (Xiao et al. 2022, arXiv:2211.10438): migrate activation outliers into the weights.

s_j = max|X_j|^α / max|W_j|^(1−α) (α = 0.5 by default; max over the calibration set and over
every weight that consumes the same input), X' = X·diag(s)⁻¹, W' = W·diag(s): the float
function is unchanged and the per-tensor activation range shrinks to what W8A8 can hold.
Where the division folds into a preceding LayerNorm/RMSNorm or linear weight, a runtime pays
nothing for it; where it does not (MiniLM's post-LN residual, GELU outputs), it is an explicit
per-channel multiply before the quantizer (said in the result's config).
"""

from __future__ import annotations

import numpy as np


def smooth_scales(x_absmax: np.ndarray, weights, alpha: float = 0.5) -> np.ndarray:
    """Per-input-channel smoothing factors s (K,) for the weights (out, K) sharing one input."""
    wmax = np.max([np.abs(np.asarray(w, np.float64)).max(0) for w in weights], axis=0)
    xm = np.asarray(x_absmax, np.float64)
    s = np.power(np.maximum(xm, 1e-5), alpha) / np.power(np.maximum(wmax, 1e-5), 1 - alpha)
    return np.clip(s, 1e-5, None)
