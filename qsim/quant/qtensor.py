"""`QTensor`: integer codes plus everything needed to reproduce and cost them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsim.quant.spec import QuantSpec


@dataclass(frozen=True)
class QTensor:
    """A quantized tensor: `x̂ = scale · (q − zero_point)`, broadcast by granularity.

    q           integer levels, same shape as the original tensor. For uniform schemes
                these are the codes themselves. For pow2, binary/ternary and the block
                formats they are the exact integer levels in units of `scale` (e.g.
                MXFP4 stores 2·e2m1 so levels are integers); `bits` is still the
                storage width of one element. For `kmeans`, q holds codebook indices
                and `codebook` the centroids (scale is 1).
    scale       float64 array in ONNX layout: shape () per tensor, (D,) per channel,
                x.shape with ceil(D/B) on `axis` per group/block. Values are exactly
                representable in the spec's `scale_dtype`.
    zero_point  int64 array shaped like `scale` (zeros unless `has_zero_point`).
    qmin, qmax  range of the integer levels in `q`.
    tensor_scale  NVFP4's fp32 per-tensor scale (already folded into `scale`).
    """

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    spec: QuantSpec
    axis: int | None
    qmin: int
    qmax: int
    has_zero_point: bool = False
    codebook: np.ndarray | None = None
    tensor_scale: float | None = None

    # -- layout -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.q.shape

    @property
    def size(self) -> int:
        return int(self.q.size)

    @property
    def bits(self) -> int:
        return self.spec.bits

    @property
    def signed(self) -> bool:
        return self.spec.signed

    @property
    def scheme(self) -> str:
        return self.spec.scheme

    @property
    def granularity(self) -> str:
        return self.spec.granularity

    @property
    def group_size(self) -> int | None:
        return self.spec.group_size

    def expand(self, param: np.ndarray) -> np.ndarray:
        """Broadcast a per-tensor/channel/group parameter to the full tensor shape."""
        return expand_param(param, self.q.shape, self.spec.granularity, self.axis, self.spec.group_size)

    # -- values -------------------------------------------------------------
    def dequantize(self, dtype=np.float64) -> np.ndarray:
        """Real values represented by the codes."""
        if self.codebook is not None:
            return self.codebook[self.q].astype(dtype)
        levels = self.q.astype(np.int64) - self.expand(self.zero_point)
        return (levels * self.expand(self.scale)).astype(dtype)

    # -- cost -----------------------------------------------------------------
    @property
    def n_scales(self) -> int:
        return int(np.size(self.scale)) if self.codebook is None else 0

    @property
    def storage_bits(self) -> int:
        """True storage cost: element codes + scales + zero points + codebook + tensor scale.

        An INT4 tensor with fp16 scales per group of 32 costs 4 + 16/32 = 4.5 bits per
        element; zero points are stored with the element width (as ONNX does).
        """
        total = self.size * self.bits + self.n_scales * self.spec.scale_bits
        if self.has_zero_point:
            total += int(np.size(self.zero_point)) * self.bits
        if self.codebook is not None:
            total += int(self.codebook.size) * 32
        if self.tensor_scale is not None:
            total += 32
        return int(total)

    @property
    def bits_per_element(self) -> float:
        return self.storage_bits / self.size


def param_shape(shape: tuple[int, ...], granularity: str, axis: int | None, group_size: int | None) -> tuple[int, ...]:
    """ONNX layout of scale/zero point for a tensor of `shape`."""
    if granularity in ("tensor", "global"):
        return ()
    if granularity == "channel":
        return (shape[axis],)
    blocks = -(-shape[axis] // group_size)
    return shape[:axis] + (blocks,) + shape[axis + 1:]


def expand_param(param, shape, granularity: str, axis: int | None, group_size: int | None) -> np.ndarray:
    """Broadcast a parameter in ONNX layout to `shape` (ragged last block allowed)."""
    param = np.asarray(param)
    if granularity in ("tensor", "global"):
        return np.broadcast_to(param, shape)
    if granularity == "channel":
        view = [1] * len(shape)
        view[axis] = shape[axis]
        return np.broadcast_to(param.reshape(view), shape)
    full = np.repeat(param, group_size, axis=axis)
    return np.take(full, np.arange(shape[axis]), axis=axis)
