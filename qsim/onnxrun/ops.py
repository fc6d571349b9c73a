"""Quantized ONNX ops on qsim's integer kernels (REFERENCE.md B1 semantics).

Each op is `op(ctx, inputs, attrs) -> list of outputs`; `inputs` holds None for an
absent optional input. Integer arithmetic goes through `qsim.kernels` only, so the
accumulator width, overflow mode and ORT's AVX2 pair saturation apply everywhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import ml_dtypes
import numpy as np
from numba import njit
from onnx import helper

from qsim.onnxrun.fptypes import FLOAT8, cast_narrow
from qsim.onnxrun.spatial import window

F32 = np.float32
CODE_TYPES = ("uint8", "int8", "uint16", "int16", "uint4", "int4", "uint2", "int2")


@dataclass
class NodeContext:
    """What an op needs to know about its node and the run options."""

    name: str
    op_type: str
    opset: int
    acc_bits: int = 32
    overflow: str = "wrap"
    pair_saturate16: bool = False
    n_outputs: int = 1
    overflows: int = 0
    integer_node: bool = False
    constant: tuple = ()

    def error(self, message: str) -> ValueError:
        return ValueError(f"node {self.name!r} ({self.op_type}): {message}")


def _kernels():
    # Imported on use so that `qsim --help` works without compiling any kernel.
    import qsim.kernels as k

    return k


@functools.lru_cache(maxsize=64)
def _int_range(name: str) -> tuple[int, int]:
    dtype = getattr(ml_dtypes, name) if name in ("int4", "uint4", "int2", "uint2") else np.dtype(name)
    info = ml_dtypes.iinfo(dtype) if name in ("int4", "uint4", "int2", "uint2") else np.iinfo(dtype)
    return int(info.min), int(info.max)


def int_range(dtype) -> tuple[int, int]:
    return _int_range(np.dtype(dtype).name)


def _i64(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


_SCALES: dict = {}
# Arrays the executor knows to be constant (initializers and folded values): id -> array.
CONSTANTS: dict = {}


def register_constants(arrays) -> None:
    if len(CONSTANTS) > 65536:
        CONSTANTS.clear()
        _SCALES.clear()
    for a in arrays:
        if isinstance(a, np.ndarray):
            CONSTANTS[id(a)] = a


def _scale(ctx, s, what: str) -> np.ndarray:
    """The scale as float32, checked finite and > 0 (memoised per constant array object)."""
    key = (id(s), what)
    hit = _SCALES.get(key)
    if hit is not None and hit[0] is s:
        return hit[1]
    s_in = s
    s = np.asarray(s)
    if s.dtype.kind != "f":
        raise ctx.error(f"{what} must be a float tensor, got {s.dtype}")
    s32 = s.astype(F32)
    if not np.all(np.isfinite(s32)) or np.any(s32 <= 0):
        raise ctx.error(f"{what} must be finite and > 0, got {s32.ravel()[:8]}")
    if CONSTANTS.get(id(s_in)) is s_in:
        s32.flags.writeable = False
        _SCALES[key] = (s_in, s32)
    return s32


def _codes(ctx, x, what: str, allowed=("uint8", "int8")) -> np.ndarray:
    if x.dtype.name not in allowed:
        raise ctx.error(f"{what} must have element type {' or '.join(allowed)}, got {x.dtype.name}")
    return x


def _zero_point(ctx, z, like: np.ndarray, what: str):
    """Zero point as int64 (0 when absent); its type must equal the tensor's."""
    if z is None:
        return np.zeros((), np.int64)
    if z.dtype != like.dtype:
        raise ctx.error(f"{what} has element type {z.dtype.name} but its tensor has {like.dtype.name}")
    return _i64(z)


# -- QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear ------------------
def _expand(ctx, p: np.ndarray, shape, axis: int, block: int, what: str) -> np.ndarray:
    """Broadcast a per-tensor, per-axis or blocked (opset 21) parameter to `shape`."""
    if block == 0:
        if p.size == 1 and p.ndim <= 1:
            return p.reshape(())
        if p.ndim != 1 or p.shape[0] != shape[axis]:
            raise ctx.error(f"{what} of shape {p.shape} must be a scalar or 1-D of length {shape[axis]} (axis {axis})")
        view = [1] * len(shape)
        view[axis] = -1
        return p.reshape(view)
    if block < 0:
        raise ctx.error(f"block_size must be >= 0, got {block}")
    want = list(shape)
    want[axis] = -(-shape[axis] // block)
    if list(p.shape) != want:
        raise ctx.error(f"blocked {what} must have shape {want} for block_size {block} on axis {axis}, "
                        f"got {list(p.shape)}")
    return np.take(np.repeat(p, block, axis=axis), np.arange(shape[axis]), axis=axis)


def _axis(ctx, attrs, ndim: int, scale=None) -> int:
    """The quantization axis; ignored (as ONNX and ORT do) when the scale is per tensor."""
    axis = int(attrs.get("axis", 1))
    if scale is not None and np.asarray(scale).size == 1 and np.asarray(scale).ndim <= 1 \
            and not int(attrs.get("block_size", 0)):
        return 0
    if ndim and not -ndim <= axis < ndim:
        raise ctx.error(f"axis must be in [{-ndim}, {ndim - 1}], got {axis}")
    return axis % ndim if ndim else 0


@njit(cache=True, nogil=True)
def _quantize_tensor(x, s, z, qmin, qmax, out):
    """Per-tensor quantize_fp32 in one pass; returns True when x holds a NaN (out is then
    meaningless: the caller raises). No early exit, so the loop vectorises."""
    lo = np.float32(qmin - z)
    hi = np.float32(qmax - z)
    nan = False
    for i in range(x.size):
        v = x[i] / s
        nan |= v != v
        v = min(max(v, lo), hi)
        out[i] = np.int64(np.rint(v)) + z
    return nan


@njit(cache=True, nogil=True)
def _dequantize_tensor(x, s, z, out):
    for i in range(x.size):
        out[i] = np.float32(np.int64(x[i]) - z) * s
    return out


FAST_CODES = ("uint8", "int8", "uint16", "int16", "int32")


def quantize_fp32(x, scale, zp, qmin: int, qmax: int) -> np.ndarray:
    """ORT/MLAS: fp32 x/scale, clamp to [qmin−zp, qmax−zp] in float, rne, add zp (int64 out)."""
    v = np.asarray(x, F32) / np.asarray(scale, F32)
    v = np.clip(v, F32(qmin) - zp.astype(F32), F32(qmax) - zp.astype(F32))
    return np.clip(np.rint(v).astype(np.int64) + zp, qmin, qmax)


def quantize_linear(ctx, inputs, attrs):
    x, scale, zp = (inputs + [None] * 3)[:3]
    if x.dtype.kind != "f":
        raise ctx.error(f"input x must be float, got {x.dtype}")
    if zp is not None:
        out_dtype = zp.dtype
    elif int(attrs.get("output_dtype", 0)):
        out_dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(attrs["output_dtype"])))
    else:
        out_dtype = np.dtype(np.uint8)
    if out_dtype.name in FLOAT8:
        return [_quantize_float8(ctx, x, scale, zp, attrs, out_dtype)]
    if out_dtype.name not in CODE_TYPES:
        raise ctx.error(f"output type {out_dtype.name} is not supported; supported: "
                        f"{', '.join(CODE_TYPES + FLOAT8)}")
    scale_arr = np.asarray(scale)
    if (x.dtype == F32 and out_dtype.name in FAST_CODES and scale_arr.size == 1 and scale_arr.dtype == F32
            and (zp is None or zp.size == 1) and not int(attrs.get("block_size", 0))):
        s32 = _scale(ctx, scale_arr, "y_scale").reshape(())
        qmin, qmax = int_range(out_dtype)
        out = np.empty(x.shape, out_dtype)
        z = 0 if zp is None else int(np.asarray(zp).reshape(()))
        if _quantize_tensor(np.ascontiguousarray(x).reshape(-1), F32(s32), z, qmin, qmax, out.reshape(-1)):
            raise ctx.error("input x contains NaN; its quantized code is implementation-defined")
        return [out]
    if np.isnan(x).any():
        raise ctx.error("input x contains NaN; its quantized code is implementation-defined")
    axis, block = _axis(ctx, attrs, x.ndim, scale), int(attrs.get("block_size", 0))
    s = _expand(ctx, _scale(ctx, scale, "y_scale"), x.shape, axis, block, "y_scale")
    z = np.zeros((), np.int64) if zp is None else _expand(ctx, _i64(zp), x.shape, axis, block, "y_zero_point")
    qmin, qmax = int_range(out_dtype)
    return [quantize_fp32(x, s, z, qmin, qmax).astype(out_dtype)]


def _quantize_float8(ctx, x, scale, zp, attrs, out_dtype):
    """Float8/float4 codes: saturate(fl32(x / scale) + zp) with the type's rne cast (zp is 0 in practice)."""
    axis, block = _axis(ctx, attrs, x.ndim, scale), int(attrs.get("block_size", 0))
    s = _expand(ctx, _scale(ctx, scale, "y_scale"), x.shape, axis, block, "y_scale")
    v = np.asarray(x, F32) / s
    if zp is not None:
        v = v + _expand(ctx, zp.astype(F32), x.shape, axis, block, "y_zero_point")
    return cast_narrow(v, out_dtype, saturate=bool(attrs.get("saturate", 1)))


def dequantize_linear(ctx, inputs, attrs):
    x, scale, zp = (inputs + [None] * 3)[:3]
    if x.dtype.name in FLOAT8:
        axis, block = _axis(ctx, attrs, x.ndim, scale), int(attrs.get("block_size", 0))
        s = _expand(ctx, _scale(ctx, scale, "x_scale"), x.shape, axis, block, "x_scale")
        v = x.astype(F32)
        if zp is not None:
            v = v - _expand(ctx, zp.astype(F32), x.shape, axis, block, "x_zero_point")
        return [(v * s).astype(scale.dtype)]
    _codes(ctx, x, "x", CODE_TYPES + ("int32",))
    if zp is not None and x.dtype.name == "int32" and np.any(zp != 0):
        raise ctx.error("int32 input takes no zero point (it must be absent or 0)")
    if zp is not None and zp.dtype != x.dtype:
        raise ctx.error(f"x_zero_point has element type {zp.dtype.name} but x has {x.dtype.name}")
    scale_arr = np.asarray(scale)
    if (x.dtype.name in FAST_CODES and scale_arr.size == 1 and scale_arr.dtype == F32
            and (zp is None or zp.size == 1) and not int(attrs.get("block_size", 0))):
        s32 = _scale(ctx, scale_arr, "x_scale").reshape(())
        z = 0 if zp is None else int(np.asarray(zp).reshape(()))
        out = np.empty(x.shape, F32)
        _dequantize_tensor(np.ascontiguousarray(x).reshape(-1), F32(s32), z, out.reshape(-1))
        return [out]
    axis, block = _axis(ctx, attrs, x.ndim, scale), int(attrs.get("block_size", 0))
    s = _expand(ctx, _scale(ctx, scale, "x_scale"), x.shape, axis, block, "x_scale")
    z = np.zeros((), np.int64) if zp is None else _expand(ctx, _i64(zp), x.shape, axis, block, "x_zero_point")
    y = (_i64(x) - z).astype(F32) * s  # fl32(fl32(x − zp) · s)
    return [y.astype(scale.dtype)]


def dynamic_quantize_linear(ctx, inputs, attrs):
    """uint8 only; ORT's fp32 range → scale → zero point → quantize."""
    x = inputs[0]
    if x.dtype != F32:
        raise ctx.error(f"input x must be float32, got {x.dtype}")
    if not np.isfinite(x).all():
        raise ctx.error("input x contains NaN or Inf; its scale would be undefined")
    lo = min(F32(x.min()), F32(0)) if x.size else F32(0)
    hi = max(F32(x.max()), F32(0)) if x.size else F32(0)
    s = F32(1) if hi == lo else F32(hi - lo) / F32(255)
    z = np.asarray(np.rint(np.clip(F32(0) - lo / s, F32(0), F32(255)))).astype(np.int64)
    if x.flags.c_contiguous:  # the same quantize_fp32 in one Numba pass (x is finite here)
        q = np.empty(x.shape, np.uint8)
        _quantize_tensor(x.reshape(-1), F32(s), int(z), 0, 255, q.reshape(-1))
    else:
        q = quantize_fp32(x, s, z, 0, 255).astype(np.uint8)
    return [q, np.asarray(s, F32), np.asarray(z, np.uint8)]


# -- integer matmul ---------------------------------------------------------------
def _scalar(ctx, v, what: str):
    if v.size != 1:
        raise ctx.error(f"{what} must be a scalar (per-tensor), got shape {v.shape}")
    return v.reshape(())


def _per_column(ctx, v, n: int, what: str):
    """Scalar, or one value per output column (shape (N,) or (1, ..., N))."""
    if v.size == 1:
        return v.reshape(())
    if v.shape[-1] != n or v.size != n:
        raise ctx.error(f"{what} must be a scalar or have {n} values along its last axis, got shape {v.shape}")
    return v.reshape(n)


def matmul_operands(ctx, a: np.ndarray, b: np.ndarray):
    """ONNX/NumPy matmul broadcasting: (A as ≥2-D, B as ≥2-D, broadcast batch shape), or a clear node error."""
    if a.ndim == 0 or b.ndim == 0:
        raise ctx.error("MatMul inputs must have at least one dimension")
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ctx.error(f"inner dimensions differ: A {a.shape} and B {b.shape}")
    try:
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ctx.error(f"batch dimensions of A {a.shape} and B {b.shape} do not broadcast") from None
    return a2, b2, batch


def matmul_squeeze(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Drop the dimensions a 1-D operand gained (NumPy matmul semantics)."""
    if a.ndim == 1:
        y = y[..., 0, :]
    if b.ndim == 1:
        y = y[..., 0]
    return y


def _batched(ctx, a: np.ndarray, b: np.ndarray, fn) -> np.ndarray:
    """ONNX/NumPy matmul broadcasting around a 2-D kernel call `fn(a2, b2) -> (acc, overflows)`."""
    a2, b2, batch = matmul_operands(ctx, a, b)
    a3 = np.broadcast_to(a2, batch + a2.shape[-2:]).reshape((-1,) + a2.shape[-2:])
    b3 = np.broadcast_to(b2, batch + b2.shape[-2:]).reshape((-1,) + b2.shape[-2:])
    outs = []
    for i in range(a3.shape[0]):
        acc, ovf = fn(np.ascontiguousarray(a3[i]), np.ascontiguousarray(b3[i]))
        ctx.overflows += int(ovf)
        outs.append(acc)
    return matmul_squeeze(np.stack(outs).reshape(batch + (a2.shape[-2], b2.shape[-1])), a, b)


def _pair(ctx, a: np.ndarray, b: np.ndarray) -> bool:
    """ORT's AVX2 int16 pair saturation only exists on its u8 x s8 path."""
    return bool(ctx.pair_saturate16 and a.dtype == np.uint8 and b.dtype == np.int8)


def _matmul_acc(ctx, a, b, za, zb, n_cols: int):
    ctx.integer_node = True
    k = _kernels()
    zb = _per_column(ctx, zb, n_cols, "b_zero_point")
    za = int(_scalar(ctx, za, "a_zero_point (ORT rejects per-row zero points too)"))
    pair = _pair(ctx, a, b)

    def call(a2, b2):
        return k.matmul_int(a2, b2, za, zb if zb.ndim else int(zb), acc_bits=ctx.acc_bits,
                            overflow=ctx.overflow, pair_saturate16=pair)

    return _batched(ctx, a, b, call)


def matmul_integer(ctx, inputs, attrs):
    a, b, za, zb = (inputs + [None] * 4)[:4]
    _codes(ctx, a, "A")
    _codes(ctx, b, "B")
    za, zb = _zero_point(ctx, za, a, "a_zero_point"), _zero_point(ctx, zb, b, "b_zero_point")
    return [_matmul_acc(ctx, a, b, za, zb, 1 if b.ndim == 1 else b.shape[-1]).astype(np.int32)]


def _requant(ctx, acc, in_s, w_s, out_s, out_z, out_dtype, channel_axis: int):
    qmin, qmax = int_range(out_dtype)
    y = _kernels().requantize(acc, in_s, w_s, out_s, out_z, policy="fp32_rne", qmin=qmin, qmax=qmax,
                              channel_axis=channel_axis)
    return np.asarray(y).astype(out_dtype)


def qlinear_matmul(ctx, inputs, attrs):
    a, a_s, a_z, b, b_s, b_z, y_s, y_z = inputs[:8]
    _codes(ctx, a, "a")
    _codes(ctx, b, "b")
    if y_z is None:
        raise ctx.error("y_zero_point is required (it fixes the output type)")
    _codes(ctx, y_z, "y_zero_point")
    n = 1 if b.ndim == 1 else b.shape[-1]
    a_z, b_z = _zero_point(ctx, a_z, a, "a_zero_point"), _zero_point(ctx, b_z, b, "b_zero_point")
    acc = _matmul_acc(ctx, a, b, a_z, b_z, n)
    if b.ndim == 1:
        acc = acc[..., None]
    a_s = float(_scalar(ctx, _scale(ctx, a_s, "a_scale"), "a_scale"))
    b_s = _per_column(ctx, _scale(ctx, b_s, "b_scale"), n, "b_scale")
    y_s = float(_scalar(ctx, _scale(ctx, y_s, "y_scale"), "y_scale"))
    y_zi = int(_scalar(ctx, _i64(y_z), "y_zero_point"))
    y = _requant(ctx, acc.reshape(-1, acc.shape[-1]), F32(a_s), b_s if b_s.ndim else F32(b_s), F32(y_s), y_zi,
                 y_z.dtype, -1).reshape(acc.shape)
    return [y[..., 0] if b.ndim == 1 else y]


# -- integer convolution --------------------------------------------------------------
def _conv_setup(ctx, x, w, attrs):
    """2-D kernel arguments for a 1-D or 2-D ONNX conv (1-D is lifted to height 1)."""
    nd = x.ndim - 2
    if nd not in (1, 2) or w.ndim != x.ndim:
        raise ctx.error(f"only 1-D and 2-D convolutions are supported, got x {x.shape} and w {w.shape}")
    kernel = w.shape[2:]
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != tuple(kernel):
        raise ctx.error(f"kernel_shape {list(attrs['kernel_shape'])} does not match the weight shape {w.shape}")
    groups = int(attrs.get("group", 1))
    if groups < 1 or x.shape[1] % groups or w.shape[0] % groups or w.shape[1] * groups != x.shape[1]:
        raise ctx.error(f"x channels {x.shape[1]}, weight {w.shape} and group={groups} do not fit")
    try:
        win = window(attrs, x.shape[2:], kernel)
    except ValueError as exc:
        raise ctx.error(str(exc)) from None
    if nd == 1:
        x, w = x[:, :, None, :], w[:, :, None, :]
        geo = dict(stride=(1, win.strides[0]), padding=(0, win.begin[0], 0, win.end[0]),
                   dilation=(1, win.dilations[0]), groups=groups)
    else:
        geo = dict(stride=win.strides, padding=(win.begin[0], win.begin[1], win.end[0], win.end[1]),
                   dilation=win.dilations, groups=groups)
    return np.ascontiguousarray(x), np.ascontiguousarray(w), geo, nd


def _im2col_hwc(x: np.ndarray, w_shape, zx: int, geo: dict):
    """Integer patches (N, G, Ho·Wo, K) with K ordered (kh, kw, c) as in ORT's QLinearConv;
    padding holds the x zero point, so it contributes 0."""
    n, c, h, wd = x.shape
    kh, kw = w_shape[2:]
    (sh, sw), (dh, dw), (pt, pl, pb, pr), g = geo["stride"], geo["dilation"], geo["padding"], geo["groups"]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=zx)
    ho = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    wo = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    taps = [xp[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw]
            for i in range(kh) for j in range(kw)]
    cols = np.stack(taps, axis=2).reshape(n, g, c // g, kh * kw, ho * wo).transpose(0, 1, 4, 3, 2)
    return np.ascontiguousarray(cols.reshape(n, g, ho * wo, -1)), (ho, wo)


def _conv_acc(ctx, x, w, zx, zw, bias, attrs, ort_pairs: bool):
    """int32 accumulators (N, O, *out).

    With pair saturation requested, ORT's QLinearConv u8×s8 GEMM path is reproduced by
    (kh, kw, c)-ordered patches through `matmul_int(pair_saturate16=True)`. ORT's depthwise
    kernel and its ConvInteger were measured exact on AVX2, so they stay exact.
    """
    ctx.integer_node = True
    k = _kernels()
    zx = int(_scalar(ctx, zx, "x_zero_point"))
    o = w.shape[0]
    zw = _per_column(ctx, zw, o, "w_zero_point")
    x4, w4, geo, nd = _conv_setup(ctx, x, w, attrs)
    g = geo["groups"]
    depthwise = w4.shape[1] == 1 and o == g
    if not (ort_pairs and _pair(ctx, x, w) and not depthwise):
        acc, ovf = k.conv2d_int(x4, w4, zx, zw if zw.ndim else int(zw), bias, acc_bits=ctx.acc_bits,
                                overflow=ctx.overflow, **geo)
        ctx.overflows += int(ovf)
    else:
        cols, (ho, wo) = _im2col_hwc(x4, w4.shape, zx, geo)
        og = o // g
        wk = w4.reshape(g, og, w4.shape[1], -1).transpose(0, 1, 3, 2).reshape(g, og, -1)
        zws = np.broadcast_to(zw, (o,)).reshape(g, og)
        bs = None if bias is None else np.asarray(bias).reshape(g, og)
        acc = np.empty((x4.shape[0], o, ho * wo), np.int64)
        for ni in range(x4.shape[0]):
            for gi in range(g):
                r, ovf = k.matmul_int(cols[ni, gi], np.ascontiguousarray(wk[gi].T), zx, zws[gi].copy(),
                                      None if bs is None else bs[gi].copy(), acc_bits=ctx.acc_bits,
                                      overflow=ctx.overflow, pair_saturate16=True)
                ctx.overflows += int(ovf)
                acc[ni, gi * og:(gi + 1) * og] = np.asarray(r).T
        acc = acc.reshape(x4.shape[0], o, ho, wo)
    acc = np.asarray(acc)
    return acc[:, :, 0, :] if nd == 1 else acc


def conv_integer(ctx, inputs, attrs):
    x, w, zx, zw = (inputs + [None] * 4)[:4]
    _codes(ctx, x, "x")
    _codes(ctx, w, "w")
    zx, zw = _zero_point(ctx, zx, x, "x_zero_point"), _zero_point(ctx, zw, w, "w_zero_point")
    return [_conv_acc(ctx, x, w, zx, zw, None, attrs, ort_pairs=False).astype(np.int32)]


def qlinear_conv(ctx, inputs, attrs):
    x, x_s, x_z, w, w_s, w_z, y_s, y_z, bias = (inputs + [None] * 9)[:9]
    _codes(ctx, x, "x")
    _codes(ctx, w, "w")
    if y_z is None:
        raise ctx.error("y_zero_point is required (it fixes the output type)")
    _codes(ctx, y_z, "y_zero_point")
    o = w.shape[0]
    if bias is not None and (bias.dtype != np.int32 or bias.shape != (o,)):
        raise ctx.error(f"B must be int32 of shape ({o},), got {bias.dtype} {bias.shape}")
    x_z, w_z = _zero_point(ctx, x_z, x, "x_zero_point"), _zero_point(ctx, w_z, w, "w_zero_point")
    acc = _conv_acc(ctx, x, w, x_z, w_z, bias, attrs, ort_pairs=True)
    x_s = float(_scalar(ctx, _scale(ctx, x_s, "x_scale"), "x_scale"))
    w_s = _per_column(ctx, _scale(ctx, w_s, "w_scale"), o, "w_scale")
    y_s = float(_scalar(ctx, _scale(ctx, y_s, "y_scale"), "y_scale"))
    y_zi = int(_scalar(ctx, _i64(y_z), "y_zero_point"))
    return [_requant(ctx, acc, F32(x_s), w_s if w_s.ndim else F32(w_s), F32(y_s), y_zi, y_z.dtype, 1)]


QUANT_OPS = {
    "QuantizeLinear": quantize_linear,
    "DequantizeLinear": dequantize_linear,
    "DynamicQuantizeLinear": dynamic_quantize_linear,
    "MatMulInteger": matmul_integer,
    "QLinearMatMul": qlinear_matmul,
    "ConvInteger": conv_integer,
    "QLinearConv": qlinear_conv,
}
