"""Small sequential architectures as data: a tuple of ops with real shapes.

An architecture is an input shape (C, H, W) plus a tuple of ops. 1-D signals are
(C, 1, L) and their convolutions are `Conv` with kernel (1, k): the same integer
conv kernel runs them. Every MAC op (`Conv`, `Dense`) carries a `relu` flag: the
ReLU is fused into its output (a clamp at the zero point in the integer pipeline).
`to_workload` turns the spec into a `qsim.workload.Workload` with the real shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsim.workload import Conv2d, Dense, Elementwise, Pool2d, Workload


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class Conv:
    """2-D convolution, OIHW weights (out, in/groups, kh, kw); symmetric padding (ph, pw)."""

    name: str
    in_ch: int
    out_ch: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    relu: bool = True

    def __post_init__(self):
        for attr in ("kernel", "stride", "padding"):
            object.__setattr__(self, attr, _pair(getattr(self, attr)))

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_ch, self.in_ch // self.groups) + self.kernel

    def out_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        _, h, w = shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (self.out_ch, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)


@dataclass(frozen=True)
class Linear:
    """Fully connected y = x·Wᵀ + b, W of shape (out, in)."""

    name: str
    in_features: int
    out_features: int
    relu: bool = False

    @property
    def weight_shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    def out_shape(self, shape) -> tuple[int]:
        return (self.out_features,)


@dataclass(frozen=True)
class MaxPool:
    """Non-overlapping max pooling (kernel = stride). Exact on integer codes: max commutes
    with any monotone quantizer."""

    name: str
    size: int = 2

    def out_shape(self, shape):
        c, h, w = shape
        return (c, h // self.size, w // self.size)


@dataclass(frozen=True)
class Flatten:
    """(C, H, W) → (C·H·W,) in C-major order, as PyTorch's nn.Flatten."""

    name: str

    def out_shape(self, shape):
        return (int(np.prod(shape)),)


MAC_OPS = (Conv, Linear)


@dataclass(frozen=True)
class Architecture:
    """An input shape and a sequence of ops; shapes are checked on construction."""

    name: str
    input_shape: tuple[int, ...]
    ops: tuple

    def __post_init__(self):
        shape = tuple(self.input_shape)
        names = set()
        for op in self.ops:
            if op.name in names:
                raise ValueError(f"architecture {self.name!r}: op name {op.name!r} is used twice")
            names.add(op.name)
            if isinstance(op, Conv) and (len(shape) != 3 or shape[0] != op.in_ch):
                raise ValueError(f"{self.name}.{op.name}: expects {op.in_ch} input channels, gets shape {shape}")
            if isinstance(op, Linear) and shape != (op.in_features,):
                raise ValueError(f"{self.name}.{op.name}: expects {op.in_features} features, gets shape {shape}")
            shape = op.out_shape(shape)
            if min(shape) < 1:
                raise ValueError(f"{self.name}.{op.name}: empty output shape {shape}")

    @property
    def mac_ops(self) -> tuple:
        return tuple(op for op in self.ops if isinstance(op, MAC_OPS))

    def shapes(self) -> list[tuple[int, ...]]:
        """Output shape of every op (batch excluded)."""
        out, shape = [], tuple(self.input_shape)
        for op in self.ops:
            shape = op.out_shape(shape)
            out.append(shape)
        return out

    def to_workload(self, batch: int = 1) -> Workload:
        """The layer IR of this architecture, with the fused ReLUs as elementwise layers."""
        layers, shape = [], tuple(self.input_shape)
        for op in self.ops:
            out = op.out_shape(shape)
            if isinstance(op, Conv):
                layers.append(Conv2d(op.name, in_channels=op.in_ch, out_channels=op.out_ch, kernel_size=op.kernel,
                                     input_hw=shape[1:], stride=op.stride, padding=op.padding, groups=op.groups,
                                     batch=batch))
            elif isinstance(op, Linear):
                layers.append(Dense(op.name, in_features=op.in_features, out_features=op.out_features, batch=batch))
            elif isinstance(op, MaxPool):
                layers.append(Pool2d(op.name, kind="max", channels=shape[0], input_hw=shape[1:],
                                     kernel_size=op.size, stride=op.size, batch=batch))
            if isinstance(op, MAC_OPS) and op.relu:
                layers.append(Elementwise(f"{op.name}_relu", kind="relu", elements=batch * int(np.prod(out))))
            shape = out
        return Workload(self.name, layers)


def init_weights(arch: Architecture, seed: int) -> dict[str, np.ndarray]:
    """He-uniform initialisation (fan-in), zero biases; float32; seeded."""
    rng = np.random.default_rng(seed)
    params = {}
    for op in arch.mac_ops:
        shape = op.weight_shape
        fan_in = int(np.prod(shape[1:]))
        bound = np.sqrt(6.0 / fan_in)
        params[f"{op.name}.w"] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
        params[f"{op.name}.b"] = np.zeros(shape[0], dtype=np.float32)
    return params


# -- the architectures ----------------------------------------------------------
def mnist_cnn() -> Architecture:
    return Architecture("mnist_cnn", (1, 28, 28), (
        Conv("conv1", 1, 16, 3, stride=2, padding=1),
        Conv("conv2", 16, 32, 3, stride=2, padding=1),
        Flatten("flatten"),
        Linear("fc", 32 * 7 * 7, 10),
    ))


def mnist_dwsep() -> Architecture:
    return Architecture("mnist_dwsep", (1, 28, 28), (
        Conv("conv1", 1, 16, 3, stride=2, padding=1),
        Conv("dw", 16, 16, 3, stride=2, padding=1, groups=16),
        Conv("pw", 16, 32, 1),
        Flatten("flatten"),
        Linear("fc", 32 * 7 * 7, 10),
    ))


def mnist_mlp() -> Architecture:
    return Architecture("mnist_mlp", (1, 28, 28), (
        Flatten("flatten"),
        Linear("fc1", 784, 128, relu=True),
        Linear("fc2", 128, 10),
    ))


def mnist1d_cnn() -> Architecture:
    """The ConvBase of the mnist1d paper: 3 strided 1-D convs, 25 channels, then linear."""
    return Architecture("mnist1d_cnn", (1, 1, 40), (
        Conv("conv1", 1, 25, (1, 5), stride=(1, 2), padding=(0, 1)),
        Conv("conv2", 25, 25, (1, 3), stride=(1, 2), padding=(0, 1)),
        Conv("conv3", 25, 25, (1, 3), stride=(1, 2), padding=(0, 1)),
        Flatten("flatten"),
        Linear("fc", 25 * 5, 10),
    ))


def digits_mlp() -> Architecture:
    return Architecture("digits_mlp", (1, 8, 8), (
        Flatten("flatten"),
        Linear("fc1", 64, 64, relu=True),
        Linear("fc2", 64, 10),
    ))


def digits_cnn() -> Architecture:
    return Architecture("digits_cnn", (1, 8, 8), (
        Conv("conv1", 1, 16, 3, padding=1),
        MaxPool("pool1", 2),
        Conv("conv2", 16, 32, 3, padding=1),
        MaxPool("pool2", 2),
        Flatten("flatten"),
        Linear("fc", 32 * 2 * 2, 10),
    ))


def fashion_cnn() -> Architecture:
    """Fashion-MNIST CNN: two strided 3x3 convs, a hidden dense layer, then the classifier."""
    return Architecture("fashion_cnn", (1, 28, 28), (
        Conv("conv1", 1, 16, 3, stride=2, padding=1),
        Conv("conv2", 16, 32, 3, stride=2, padding=1),
        Flatten("flatten"),
        Linear("fc1", 32 * 7 * 7, 64, relu=True),
        Linear("fc2", 64, 10),
    ))
