"""Shared pieces of the PTQ algorithms: the fixed quantization grid of one weight matrix,
RTN, the layer reconstruction error, and QTensor assembly.

Every algorithm works on a 2-D weight `w` of shape (out, K) — a linear layer's matrix or
a conv's OIHW weight reshaped to (O, C·kh·kw) — and on the second moment of its input
`H = XᵀX / n` (K, K), computed from the calibration set. Scales and zero points come
from the weight spec exactly as round-to-nearest computes them (`qsim.quant.quantize`);
the algorithms choose the integer codes (GPTQ, AdaRound) or transform the weight before
quantization (AWQ, SmoothQuant, rotation, CLE). The result is always a plain `QTensor`
that the integer kernels consume unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsim.quant import QuantSpec, quantize
from qsim.quant.qtensor import QTensor, expand_param

PTQ_SCHEMES = ("affine", "symmetric")
PTQ_GRANULARITIES = ("tensor", "channel", "group")


def weight_axis(spec: QuantSpec) -> int | None:
    """Scale axis of an (out, K) weight: channel → 0 (rows), group → 1 (along K)."""
    return 0 if spec.granularity == "channel" else 1 if spec.granularity == "group" else None


def rtn(w: np.ndarray, spec: QuantSpec, value_range=None) -> QTensor:
    """Round-to-nearest of an (out, K) weight: the baseline every method is measured against."""
    return quantize(np.asarray(w), spec, axis=weight_axis(spec), value_range=value_range)


@dataclass(frozen=True)
class Grid:
    """The fixed quantization grid of one (out, K) weight: scale and zero point per element."""

    spec: QuantSpec
    scale: np.ndarray          # ONNX layout (as QTensor.scale)
    zero_point: np.ndarray
    S: np.ndarray              # (out, K) float64
    Z: np.ndarray              # (out, K) float64
    qmin: int
    qmax: int

    @classmethod
    def of(cls, w: np.ndarray, spec: QuantSpec, value_range=None) -> "Grid":
        qt = rtn(w, spec, value_range)
        return cls.from_params(w.shape, spec, qt.scale, qt.zero_point)

    @classmethod
    def from_params(cls, shape, spec, scale, zero_point) -> "Grid":
        axis = weight_axis(spec)
        S = np.array(expand_param(scale, shape, spec.granularity, axis, spec.group_size), np.float64)
        Z = np.array(expand_param(zero_point, shape, spec.granularity, axis, spec.group_size), np.float64)
        qmin, qmax = spec.qrange
        return cls(spec, np.asarray(scale, np.float64), np.asarray(zero_point, np.int64), S, Z, qmin, qmax)

    def codes(self, w, cols=slice(None)) -> np.ndarray:
        """Nearest codes of `w` (columns `cols` of the grid), clamped."""
        return np.clip(np.rint(w / self.S[:, cols]) + self.Z[:, cols], self.qmin, self.qmax)

    def dequant(self, codes, cols=slice(None)) -> np.ndarray:
        return (codes - self.Z[:, cols]) * self.S[:, cols]

    def qtensor(self, codes: np.ndarray) -> QTensor:
        """The QTensor of these codes on this grid (what `quantize` returns for them)."""
        deq = self.dequant(np.asarray(codes, np.float64))
        qt = quantize(deq, self.spec, axis=weight_axis(self.spec), scale=self.scale, zero_point=self.zero_point)
        if not np.array_equal(qt.q.astype(np.int64), np.asarray(codes, np.int64)):  # pragma: no cover - guard
            raise RuntimeError("internal error: codes do not survive re-quantization on their own grid")
        return qt


def second_moment(x: np.ndarray) -> np.ndarray:
    """H = XᵀX / n (float64) of calibration rows x (n, K)."""
    x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    return x.T @ x / max(len(x), 1)


def layer_error(w: np.ndarray, w_hat: np.ndarray, H: np.ndarray) -> float:
    """Mean squared output error E‖x(W − Ŵ)ᵀ‖² / out = tr(ΔHΔᵀ) / out."""
    d = np.asarray(w_hat, np.float64) - np.asarray(w, np.float64)
    return float(np.sum((d @ H) * d) / d.shape[0])


def check_weight_spec(spec: QuantSpec, method: str) -> None:
    if spec.scheme not in PTQ_SCHEMES:
        raise ValueError(f"--ptq {method}: needs a uniform weight scheme {list(PTQ_SCHEMES)} (integer levels on a "
                         f"scale grid), got {spec.scheme!r}")
    if spec.granularity not in PTQ_GRANULARITIES:
        raise ValueError(f"--ptq {method}: weight granularity must be one of {list(PTQ_GRANULARITIES)}, got "
                         f"{spec.granularity!r} (a model-wide 'global' range is not a per-layer grid)")


def grid_rows(grid: Grid, rows: slice) -> Grid:
    """The grid of a block of output rows (a conv group's filters)."""
    from dataclasses import replace

    return replace(grid, S=grid.S[rows], Z=grid.Z[rows])
