"""Layer IR: the shapes of a network, independent of numerics and hardware.

Every MAC layer reduces to a `GemmView` — the one currency between workloads and
cost models. Non-MAC layers (elementwise, pooling, softmax, layernorm) carry
element counts so cost models can charge their memory traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence, Union

import numpy as np


def _pair(value, name: str) -> tuple[int, int]:
    """Accept an int or a 2-sequence of ints; name the argument on error."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, Sequence) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair


def _touched(size: int, out: int, k: int, stride: int, pad: int, dil: int) -> int:
    """Distinct input positions (padding excluded) that `out` windows of k taps read along one axis."""
    if stride <= dil * (k - 1) + 1 and dil == 1:  # windows overlap or abut: one contiguous span
        return max(0, min(size, (out - 1) * stride + k - pad) - max(0, -pad))
    pos = (np.arange(out)[:, None] * stride + np.arange(k)[None, :] * dil - pad).ravel()
    return int(np.unique(pos[(pos >= 0) & (pos < size)]).size)


def _positive(value: int, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class GemmView:
    """A MAC layer seen as `batch` independent block-diagonal GEMMs.

    `M` rows (output pixels × batch, or tokens), `N` output columns (output
    channels, all groups together), `K` reduction length per output
    (C/groups × R × S). With `groups > 1` each group multiplies an M×K slice by a
    K×(N/groups) slice. MACs = batch · M · N · K. Operand element counts are what
    must be stored/moved: A = activations, B = weights (or the second activation
    for `MatMul`), C = outputs; they differ from M·K etc. for convolutions, where
    the im2col view repeats input pixels.
    """

    M: int
    N: int
    K: int
    groups: int = 1
    batch: int = 1
    a_elements: int = 0
    b_elements: int = 0
    c_elements: int = 0
    b_is_weight: bool = True

    @property
    def macs(self) -> int:
        return self.batch * self.M * self.N * self.K


@dataclass(frozen=True)
class Layer:
    """Base of all layers: a name and element counts."""

    name: str

    @property
    def is_mac(self) -> bool:
        return False

    @property
    def macs(self) -> int:
        return 0

    @property
    def gemm(self) -> GemmView | None:
        return None

    @property
    def weight_elements(self) -> int:
        return 0

    @property
    def input_elements(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def output_elements(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer y = x·Wᵀ + b with W of shape (out_features, in_features).

    `batch` counts input rows (samples × tokens).
    """

    in_features: int = 1
    out_features: int = 1
    batch: int = 1
    bias: bool = True

    def __post_init__(self):
        _positive(self.in_features, "in_features")
        _positive(self.out_features, "out_features")
        _positive(self.batch, "batch")

    is_mac = property(lambda self: True)

    @property
    def gemm(self) -> GemmView:
        return GemmView(
            M=self.batch, N=self.out_features, K=self.in_features,
            a_elements=self.input_elements, b_elements=self.weight_elements,
            c_elements=self.output_elements,
        )

    @property
    def macs(self) -> int:
        return self.batch * self.in_features * self.out_features

    @property
    def weight_elements(self) -> int:
        return self.in_features * self.out_features

    @property
    def input_elements(self) -> int:
        return self.batch * self.in_features

    @property
    def output_elements(self) -> int:
        return self.batch * self.out_features

    @property
    def weight_shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)


@dataclass(frozen=True)
class Conv2d(Layer):
    """2-D convolution, NCHW activations and OIHW weights (O, C/groups, R, S).

    Depthwise is `groups == in_channels` (channel multiplier = out/in). `padding`
    is symmetric per spatial axis: an int or (pad_h, pad_w).
    """

    in_channels: int = 1
    out_channels: int = 1
    kernel_size: int | tuple[int, int] = 1
    input_hw: int | tuple[int, int] = 1
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    batch: int = 1
    bias: bool = True

    def __post_init__(self):
        _positive(self.in_channels, "in_channels")
        _positive(self.out_channels, "out_channels")
        _positive(self.groups, "groups")
        _positive(self.batch, "batch")
        for attr in ("kernel_size", "input_hw", "stride", "dilation"):
            for v in _pair(getattr(self, attr), attr):
                _positive(v, attr)
        for v in _pair(self.padding, "padding"):
            if v < 0:
                raise ValueError(f"padding must be >= 0, got {self.padding!r}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )
        oh, ow = self.output_hw
        if oh < 1 or ow < 1:
            raise ValueError(
                f"layer {self.name!r}: kernel {self.kernel_size} does not fit input {self.input_hw} "
                f"with padding {self.padding} and dilation {self.dilation}"
            )

    is_mac = property(lambda self: True)

    @property
    def output_hw(self) -> tuple[int, int]:
        (h, w), (r, s) = _pair(self.input_hw, "input_hw"), _pair(self.kernel_size, "kernel_size")
        (sh, sw), (ph, pw) = _pair(self.stride, "stride"), _pair(self.padding, "padding")
        dh, dw = _pair(self.dilation, "dilation")
        return ((h + 2 * ph - dh * (r - 1) - 1) // sh + 1, (w + 2 * pw - dw * (s - 1) - 1) // sw + 1)

    @property
    def depthwise(self) -> bool:
        return self.groups == self.in_channels and self.groups > 1

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        r, s = _pair(self.kernel_size, "kernel_size")
        return (self.out_channels, self.in_channels // self.groups, r, s)

    @property
    def gemm(self) -> GemmView:
        oh, ow = self.output_hw
        r, s = _pair(self.kernel_size, "kernel_size")
        return GemmView(
            M=self.batch * oh * ow, N=self.out_channels, K=(self.in_channels // self.groups) * r * s,
            groups=self.groups, a_elements=self.used_input_elements, b_elements=self.weight_elements,
            c_elements=self.output_elements,
        )

    @property
    def used_input_elements(self) -> int:
        """Input elements some window touches: a strided 1×1 conv reads one pixel in stride², not all."""
        (h, w), (r, s) = _pair(self.input_hw, "input_hw"), _pair(self.kernel_size, "kernel_size")
        (sh, sw), (ph, pw) = _pair(self.stride, "stride"), _pair(self.padding, "padding")
        (dh, dw), (oh, ow) = _pair(self.dilation, "dilation"), self.output_hw
        rows = _touched(h, oh, r, sh, ph, dh)
        cols = _touched(w, ow, s, sw, pw, dw)
        return self.batch * self.in_channels * rows * cols

    @property
    def macs(self) -> int:
        return self.gemm.macs

    @property
    def weight_elements(self) -> int:
        o, c, r, s = self.weight_shape
        return o * c * r * s

    @property
    def input_elements(self) -> int:
        h, w = _pair(self.input_hw, "input_hw")
        return self.batch * self.in_channels * h * w

    @property
    def output_elements(self) -> int:
        oh, ow = self.output_hw
        return self.batch * self.out_channels * oh * ow


@dataclass(frozen=True)
class MatMul(Layer):
    """Activation × activation product (attention scores, attention × values).

    `batch` independent (M×K)·(K×N) products, e.g. batch = sequences × heads.
    """

    m: int = 1
    n: int = 1
    k: int = 1
    batch: int = 1

    def __post_init__(self):
        for attr in ("m", "n", "k", "batch"):
            _positive(getattr(self, attr), attr)

    is_mac = property(lambda self: True)

    @property
    def gemm(self) -> GemmView:
        return GemmView(
            M=self.m, N=self.n, K=self.k, batch=self.batch, a_elements=self.batch * self.m * self.k,
            b_elements=self.batch * self.k * self.n, c_elements=self.output_elements, b_is_weight=False,
        )

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.n * self.k

    @property
    def input_elements(self) -> int:
        return self.batch * (self.m * self.k + self.k * self.n)

    @property
    def output_elements(self) -> int:
        return self.batch * self.m * self.n


ELEMENTWISE_KINDS = ("add", "mul", "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "copy")


@dataclass(frozen=True)
class Elementwise(Layer):
    """An elementwise op over `elements` outputs reading `operands` inputs each."""

    kind: str = "add"
    elements: int = 1
    operands: int = 1

    def __post_init__(self):
        if self.kind not in ELEMENTWISE_KINDS:
            raise ValueError(f"kind must be one of {ELEMENTWISE_KINDS}, got {self.kind!r}")
        _positive(self.elements, "elements")
        _positive(self.operands, "operands")

    @property
    def input_elements(self) -> int:
        return self.elements * self.operands

    @property
    def output_elements(self) -> int:
        return self.elements


@dataclass(frozen=True)
class Pool2d(Layer):
    """Max/average pooling (NCHW); `global_pool` reduces the whole spatial extent."""

    kind: str = "max"
    channels: int = 1
    input_hw: int | tuple[int, int] = 1
    kernel_size: int | tuple[int, int] = 1
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    batch: int = 1
    global_pool: bool = False

    def __post_init__(self):
        if self.kind not in ("max", "avg"):
            raise ValueError(f"kind must be 'max' or 'avg', got {self.kind!r}")
        _positive(self.channels, "channels")
        _positive(self.batch, "batch")
        for attr in ("kernel_size", "input_hw", "stride"):
            for v in _pair(getattr(self, attr), attr):
                _positive(v, attr)

    @property
    def output_hw(self) -> tuple[int, int]:
        if self.global_pool:
            return (1, 1)
        (h, w), (r, s) = _pair(self.input_hw, "input_hw"), _pair(self.kernel_size, "kernel_size")
        (sh, sw), (ph, pw) = _pair(self.stride, "stride"), _pair(self.padding, "padding")
        return ((h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1)

    @property
    def input_elements(self) -> int:
        h, w = _pair(self.input_hw, "input_hw")
        return self.batch * self.channels * h * w

    @property
    def output_elements(self) -> int:
        oh, ow = self.output_hw
        return self.batch * self.channels * oh * ow


@dataclass(frozen=True)
class Softmax(Layer):
    """Softmax over the last axis of a (rows, cols) view."""

    rows: int = 1
    cols: int = 1

    def __post_init__(self):
        _positive(self.rows, "rows")
        _positive(self.cols, "cols")

    @property
    def input_elements(self) -> int:
        return self.rows * self.cols

    output_elements = input_elements


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalisation over the last axis of a (rows, cols) view."""

    rows: int = 1
    cols: int = 1

    def __post_init__(self):
        _positive(self.rows, "rows")
        _positive(self.cols, "cols")

    @property
    def input_elements(self) -> int:
        return self.rows * self.cols

    output_elements = input_elements

    @property
    def weight_elements(self) -> int:
        return 2 * self.cols


@dataclass(frozen=True)
class Workload:
    """An ordered list of uniquely named layers."""

    name: str
    layers: tuple[Layer, ...] = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        seen: set[str] = set()
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"workload {self.name!r}: {layer!r} is not a qsim layer")
            if layer.name in seen:
                raise ValueError(f"workload {self.name!r}: layer name {layer.name!r} is used twice")
            seen.add(layer.name)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, key: Union[int, str]) -> Layer:
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise KeyError(f"workload {self.name!r} has no layer {key!r}")
        return self.layers[key]

    @property
    def mac_layers(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.is_mac)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def total_weights(self) -> int:
        return sum(layer.weight_elements for layer in self.layers)

    def to_frame(self):
        """One row per layer: kind, GEMM view, MACs and element counts."""
        import pandas as pd

        rows = []
        for layer in self.layers:
            g = layer.gemm
            rows.append({
                "layer": layer.name, "kind": type(layer).__name__, "macs": layer.macs,
                "M": g.M if g else None, "N": g.N if g else None, "K": g.K if g else None,
                "groups": g.groups if g else None, "weights": layer.weight_elements,
                "inputs": layer.input_elements, "outputs": layer.output_elements,
            })
        return pd.DataFrame(rows)
