"""Empirical bias correction (Nagel et al., DFQ 2019, arXiv:1906.04721 §4.2).

The quantized layer's expected output error is E[(Ŵ − W)x] = (Ŵ − W)·E[x]; subtracting it
from the bias makes the layer's mean output error zero on the calibration data. E[x] is
taken from the calibration inputs of the layer (the empirical variant; the data-free one
needs BatchNorm statistics, which these networks do not have). With `mean_xq`, the mean input
of the layer in the network whose earlier layers are already quantized (and corrected), the
correction also absorbs the mean error those layers propagate: b + W·E[x] − Ŵ·E[x_q].
"""

from __future__ import annotations

import numpy as np


def corrected_bias(b: np.ndarray, w: np.ndarray, w_hat: np.ndarray, mean_x: np.ndarray,
                   mean_xq: np.ndarray | None = None) -> np.ndarray:
    """b + W·E[x] − Ŵ·E[x_q] for an (out, K) weight (x_q = x without `mean_xq`: b − (Ŵ − W)·E[x])."""
    mq = np.asarray(mean_x if mean_xq is None else mean_xq, np.float64)
    return (np.asarray(b, np.float64) + np.asarray(w, np.float64) @ np.asarray(mean_x, np.float64)
            - np.asarray(w_hat, np.float64) @ mq).astype(np.float32)
