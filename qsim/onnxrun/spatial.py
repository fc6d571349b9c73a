"""Window geometry shared by Conv, ConvInteger, QLinearConv and the pools (ONNX rules).

Everything here is exact index arithmetic or float64 sums of float32 values; the
float ops round once to float32 at the end, so they equal any runtime whenever
the float arithmetic itself is exact (e.g. power-of-two scales in QDQ models).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


@dataclass(frozen=True)
class Window:
    """Per spatial axis: stride, dilation, pad before/after and output length."""

    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]
    out: tuple[int, ...]


def _ints(attrs: dict, key: str, n: int, default: int) -> tuple[int, ...]:
    v = attrs.get(key)
    if v is None or len(v) == 0:
        return (default,) * n
    if len(v) != n:
        raise ValueError(f"attribute {key!r} must have {n} values for {n} spatial axes, got {list(v)}")
    return tuple(int(i) for i in v)


def window(attrs: dict, in_shape, kernel, *, ceil_mode: bool = False) -> Window:
    """Strides, dilations, pads and output size from ONNX attributes (auto_pad included)."""
    n = len(kernel)
    strides = _ints(attrs, "strides", n, 1)
    dil = _ints(attrs, "dilations", n, 1)
    if min(strides) < 1 or min(dil) < 1:
        raise ValueError(f"strides and dilations must be >= 1, got strides={strides}, dilations={dil}")
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in AUTO_PADS:
        raise ValueError(f"auto_pad must be one of {list(AUTO_PADS)}, got {auto_pad!r}")
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    if auto_pad == "NOTSET":
        pads = _ints(attrs, "pads", 2 * n, 0)
        begin, end = pads[:n], pads[n:]
        if min(pads) < 0:
            raise ValueError(f"pads must be >= 0, got {list(pads)}")
    elif auto_pad == "VALID":
        begin = end = (0,) * n
    else:
        total = [max(0, (-(-i // s) - 1) * s + e - i) for i, s, e in zip(in_shape, strides, eff)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    out = []
    for i, s, e, b, en in zip(in_shape, strides, eff, begin, end):
        span = i + b + en - e
        if span < 0:
            raise ValueError(f"kernel extent {e} is larger than the padded input {i + b + en}")
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= i + b:
            o -= 1  # the last window must start inside the input or its leading pad
        out.append(o)
    return Window(tuple(strides), tuple(dil), tuple(begin), tuple(end), tuple(out))


def _patches(xp: np.ndarray, kernel, win: Window):
    """Yield (kernel offset, strided view) for each kernel position over padded `xp`."""
    for idx in np.ndindex(*kernel):
        sl = tuple(
            slice(k * d, k * d + s * (o - 1) + 1, s)
            for k, d, s, o in zip(idx, win.dilations, win.strides, win.out)
        )
        yield idx, xp[(Ellipsis,) + sl]


def _pad(x: np.ndarray, win: Window, kernel, value) -> np.ndarray:
    """Pad spatial axes: leading pads, trailing pads plus any extra ceil_mode reach."""
    n = len(kernel)
    widths = [(0, 0)] * (x.ndim - n)
    for i, k in enumerate(kernel):
        need = (win.out[i] - 1) * win.strides[i] + (k - 1) * win.dilations[i] + 1
        extra = max(need - (x.shape[x.ndim - n + i] + win.begin[i]), 0)
        widths.append((win.begin[i], extra))
    return np.pad(x, widths, constant_values=value)


def conv_float(x: np.ndarray, w: np.ndarray, bias, win: Window, groups: int) -> np.ndarray:
    """Float N-D convolution in float64, (N, C, *S) x (O, C/g, *K) -> (N, O, *out)."""
    kernel = w.shape[2:]
    n, c = x.shape[:2]
    o = w.shape[0]
    if c % groups or o % groups or w.shape[1] != c // groups:
        raise ValueError(f"Conv: input channels {c}, weight {w.shape} and group={groups} do not fit")
    xp = _pad(x.astype(np.float64), win, kernel, 0.0)
    cols = np.stack([p for _, p in _patches(xp, kernel, win)], axis=2)  # (N, C, KK, *out)
    kk = cols.shape[2]
    cols = cols.reshape(n, groups, (c // groups) * kk, -1)
    wg = w.astype(np.float64).reshape(groups, o // groups, (c // groups) * kk)
    y = np.matmul(wg[None], cols).reshape((n, o) + win.out)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape((1, o) + (1,) * len(kernel))
    return y


def max_pool(x: np.ndarray, kernel, win: Window) -> np.ndarray:
    """Max over each window; padding never wins (-inf, or the integer type's minimum)."""
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = _pad(x, win, kernel, low)
    y = None
    for _, p in _patches(xp, kernel, win):
        y = p.copy() if y is None else np.maximum(y, p)
    return y


def max_pool_indices(x: np.ndarray, kernel, win: Window, storage_order: int = 0):
    """Max and its flat index into x (N, C, *S) per window, as ONNX MaxPool's Indices output.

    The first maximum in window scan order wins (strictly greater replaces), as in ORT;
    storage_order 1 numbers the spatial positions column-major.
    """
    n = len(kernel)
    spatial = x.shape[-n:]
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = _pad(x, win, kernel, low)
    y = idx = None
    strides_sp = np.ones(n, np.int64)
    order = range(n - 2, -1, -1) if not storage_order else range(1, n)
    for i in order:  # row-major: last axis fastest; column-major: first axis fastest
        j = i + 1 if not storage_order else i - 1
        strides_sp[i] = strides_sp[j] * spatial[j]
    for off, p in _patches(xp, kernel, win):
        pos = np.zeros(win.out, np.int64)
        for a in range(n):
            coord = np.arange(win.out[a]) * win.strides[a] + off[a] * win.dilations[a] - win.begin[a]
            shape = [1] * n
            shape[a] = -1
            pos = pos + (coord * strides_sp[a]).reshape(shape)
        if y is None:
            y, idx = p.copy(), np.broadcast_to(pos, p.shape).copy()
        else:
            better = p > y
            y = np.where(better, p, y)
            idx = np.where(better, pos, idx)
    lead = int(np.prod(spatial))
    base = (np.arange(int(np.prod(x.shape[:-n]))) * lead).reshape(x.shape[:-n] + (1,) * n)
    return y, idx + base


def avg_pool(x: np.ndarray, kernel, win: Window, count_include_pad: bool) -> np.ndarray:
    """Mean over each window; the divisor counts pads only with count_include_pad.

    Positions added only by ceil_mode lie outside the declared pads and never count.
    """
    n = len(kernel)
    spatial = x.shape[-n:]
    xp = _pad(x.astype(np.float64), win, kernel, 0.0)
    valid = _pad(np.ones(spatial), win, kernel, 0.0)
    declared = np.zeros(valid.shape)
    declared[tuple(slice(0, s + b + e) for s, b, e in zip(spatial, win.begin, win.end))] = 1.0
    mask = declared if count_include_pad else valid
    total = np.zeros(x.shape[:-n] + win.out)
    count = np.zeros(win.out)
    for (_, p), (_, m) in zip(_patches(xp, kernel, win), _patches(mask, kernel, win)):
        total += p
        count += m
    return total / count
