"""Empirical bias correction (Nagel et al., DFQ 2019, arXiv:1906.04721 §4.2).

The quantized layer's expected output error is E[(Ŵ − W)x] = (Ŵ − W)·E[x]; subtracting it
from the bias makes the layer's mean output error zero on the calibration data. E[x] is
taken from the calibration inputs of the layer (the empirical variant; the data-free one
needs BatchNorm statistics, which these networks do not have).
"""

from __future__ import annotations

import numpy as np


def corrected_bias(b: np.ndarray, w: np.ndarray, w_hat: np.ndarray, mean_x: np.ndarray) -> np.ndarray:
    """b − (Ŵ − W)·E[x] for an (out, K) weight and the mean calibration input E[x] (K,)."""
    d = np.asarray(w_hat, np.float64) - np.asarray(w, np.float64)
    return (np.asarray(b, np.float64) - d @ np.asarray(mean_x, np.float64)).astype(np.float32)
