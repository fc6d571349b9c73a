"""Task and fidelity metrics: accuracy, SQNR, Spearman/Pearson correlation."""

from __future__ import annotations

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax is the label (first maximum wins ties)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"logits must be (N, classes) with N = len(labels) = {len(labels)}, got {logits.shape}")
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10·log10(Σ ref² / Σ (ref − test)²) in dB; +inf when identical.

    float32 inputs are differenced in float32 and their sums of squares taken by BLAS dot
    (relative error ~1e-6, i.e. ~1e-5 dB), which keeps per-layer SQNR cheap in sweeps."""
    ref, test = np.asarray(reference), np.asarray(test)
    if ref.shape != test.shape:
        raise ValueError(f"reference and test must have the same shape, got {ref.shape} and {test.shape}")
    dt = np.float32 if ref.dtype == np.float32 and test.dtype == np.float32 else np.float64
    r = np.ascontiguousarray(ref, dtype=dt).ravel()
    err = r - np.ascontiguousarray(test, dtype=dt).ravel()
    noise, signal = float(np.dot(err, err)), float(np.dot(r, r))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"pearson needs two 1-D arrays of equal length >= 2, got {a.shape} and {b.shape}")
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / den) if den > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a, b) -> float:
    """Pearson correlation of the (tie-averaged) ranks."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman needs two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    return pearson(_ranks(a), _ranks(b))
