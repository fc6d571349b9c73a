"""int8 TFLite ops with LiteRT's arithmetic, through qsim's kernels.

Integer accumulation is `qsim.kernels.conv2d_int` / `matmul_int` (exact int32); the
requantization follows the chosen LiteRT path (REFERENCE.md B2):

* ``reference`` (BUILTIN_REF) and ``optimized`` (BUILTIN_WITHOUT_DEFAULT_DELEGATES):
  TFLite's fixed-point MultiplyByQuantizedMultiplier, multiplier from
  double(s_in)·double(s_w)/double(s_out) via frexp (``gemmlowp`` policy; the optimized
  kernels round the final shift half up: ``tflite_optimized``), per-channel
  FULLY_CONNECTED in the reference path as round_half_away(acc · m) in float64.
* ``xnnpack`` (the default interpreter): float32 requantization
  rne(fl32(fl32(acc) · fl32(fl32(s_in·s_w)/s_out))).

LOGISTIC int8 is LiteRT's 256-entry table (dequantize in float32, 1/(1+exp(−x)),
round half away of y/s_out, add the zero point); CONCATENATION requantizes inputs whose
scale differs in float (round half away); QUANTIZE int8↔uint8 is a fixed-point requantize.
"""

from __future__ import annotations

import math

import numpy as np

PATHS = ("reference", "optimized", "xnnpack")
F32 = np.float32


class OpContext:
    def __init__(self, name: str, op: str, path: str):
        self.name, self.op, self.path = name, op, path

    def error(self, message: str) -> ValueError:
        return ValueError(f"operator {self.name} ({self.op}): {message}")


def _k():
    import qsim.kernels as k

    return k


def _qparams(ctx, t, what):
    if t.scale is None or t.zero_point is None:
        raise ctx.error(f"{what} {t.name!r} is not quantized")
    return t.scale, t.zero_point


def _act_range(ctx, fused: int, out) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8/uint8 outputs."""
    info = np.iinfo(out.dtype)
    lo, hi = int(info.min), int(info.max)
    s, z = float(out.scale[0]), int(out.zero_point[0])
    if fused == 0:
        return lo, hi
    if fused == 1:  # RELU
        return max(lo, z), hi
    if fused == 3:  # RELU6
        return max(lo, z), min(hi, z + _round_away(6.0 / np.float32(s)))
    if fused == 2:  # RELU_N1_TO_1
        return max(lo, z + _round_away(-1.0 / np.float32(s))), min(hi, z + _round_away(1.0 / np.float32(s)))
    raise ctx.error(f"fused activation {fused} is not supported")


def _round_away(v: float) -> int:
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def _requant(ctx, acc: np.ndarray, s_in: float, s_w: np.ndarray, out, lo: int, hi: int, axis: int,
             fc_per_channel: bool = False) -> np.ndarray:
    """int32 accumulators (channels along `axis`) -> output codes for the context's LiteRT path."""
    k = _k()
    s_out, z_out = float(out.scale[0]), int(out.zero_point[0])
    shape = [1] * acc.ndim
    shape[axis] = -1
    s_w = np.asarray(s_w, np.float32)
    if ctx.path == "xnnpack":
        scale = (np.float32(s_in) * s_w).astype(F32) / np.float32(s_out)
        scale = scale.astype(F32).reshape(shape) if scale.size > 1 else scale.astype(F32).reshape(())
        v = (acc.astype(F32) * scale).astype(F32)
        return np.clip(np.rint(v).astype(np.int64) + z_out, lo, hi)
    m = np.float64(s_in) * s_w.astype(np.float64) / np.float64(s_out)
    if fc_per_channel and ctx.path == "reference":
        v = acc.astype(np.float64) * (m.reshape(shape) if m.size > 1 else m.reshape(()))
        r = np.trunc(v) + np.sign(v) * (np.abs(v - np.trunc(v)) >= 0.5)
        return np.clip(r.astype(np.int64) + z_out, lo, hi)
    mult, shift = k.quantize_multiplier(m)
    mult = mult.reshape(shape) if mult.size > 1 else mult.reshape(())
    shift = shift.reshape(shape) if shift.size > 1 else shift.reshape(())
    fn = k.multiply_by_quantized_multiplier if ctx.path == "reference" else k.multiply_by_quantized_multiplier_halfup
    return np.clip(fn(acc.astype(np.int64), mult, shift).astype(np.int64) + z_out, lo, hi)


def _pads(in_size, k_size, stride, dil, padding: int):
    eff = (k_size - 1) * dil + 1
    if padding == 0:  # SAME
        out = -(-in_size // stride)
        total = max((out - 1) * stride + eff - in_size, 0)
        return out, total // 2, total - total // 2
    out = -(-(in_size - eff + 1) // stride)
    return out, 0, 0


def _conv(ctx, x, xt, w, wt, b, out, opts, depthwise: bool):
    k = _k()
    if x.ndim != 4:
        raise ctx.error(f"input must be NHWC, got shape {x.shape}")
    s_in, z_in = _qparams(ctx, xt, "input")
    s_w, z_w = _qparams(ctx, wt, "filter")
    if np.any(z_w != 0):
        raise ctx.error("filter zero points must be 0 (TFLite int8 weights are symmetric)")
    sh, sw = opts.StrideH(), opts.StrideW()
    dh, dw = opts.DilationHFactor(), opts.DilationWFactor()
    n, h, wd, c = x.shape
    if depthwise:
        _, kh, kw, oc = w.shape
        mult = oc // c
        w4 = np.ascontiguousarray(w[0].transpose(2, 0, 1)[:, None])  # (C·mult, 1, kh, kw)
        groups = c
        if mult != 1:
            raise ctx.error("depth multipliers other than 1 are not supported")
    else:
        oc, kh, kw, _ = w.shape
        w4 = np.ascontiguousarray(w.transpose(0, 3, 1, 2))  # OIHW
        groups = 1
    ho, pt, pb = _pads(h, kh, sh, dh, opts.Padding())
    wo, pl, pr = _pads(wd, kw, sw, dw, opts.Padding())
    x4 = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    bias = None if b is None else np.asarray(b, np.int32)
    acc, _ = k.conv2d_int(x4, w4, int(z_in[0]), 0, bias, stride=(sh, sw), padding=(pt, pl, pb, pr),
                          dilation=(dh, dw), groups=groups)
    acc = np.asarray(acc)[:, :, :ho, :wo]
    lo, hi = _act_range(ctx, opts.FusedActivationFunction(), out)
    y = _requant(ctx, acc, float(s_in[0]), s_w if s_w.size > 1 else s_w[0], out, lo, hi, axis=1)
    return y.transpose(0, 2, 3, 1).astype(out.dtype)


def conv_2d(ctx, args, tensors, out, opts):
    return [_conv(ctx, args[0], tensors[0], args[1], tensors[1], args[2] if len(args) > 2 else None, out[0], opts,
                  False)]


def depthwise_conv_2d(ctx, args, tensors, out, opts):
    return [_conv(ctx, args[0], tensors[0], args[1], tensors[1], args[2] if len(args) > 2 else None, out[0], opts,
                  True)]


def fully_connected(ctx, args, tensors, out, opts):
    k = _k()
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    s_in, z_in = _qparams(ctx, tensors[0], "input")
    s_w, z_w = _qparams(ctx, tensors[1], "weights")
    if np.any(z_w != 0):
        raise ctx.error("weight zero points must be 0")
    n_out, depth = w.shape
    x2 = x.reshape(-1, depth)
    acc, _ = k.matmul_int(np.ascontiguousarray(x2), np.ascontiguousarray(w.T), int(z_in[0]), 0,
                          None if b is None else np.asarray(b, np.int32))
    acc = np.asarray(acc, np.int64)
    lo, hi = _act_range(ctx, opts.FusedActivationFunction() if opts is not None else 0, out[0])
    y = _requant(ctx, acc, float(s_in[0]), s_w if s_w.size > 1 else s_w[0], out[0], lo, hi, axis=1,
                 fc_per_channel=s_w.size > 1)
    shape = out[0].shape if out[0].shape else y.shape
    return [y.astype(out[0].dtype).reshape(shape)]


def _logistic_table(s_in: float, z_in: int, s_out: float, z_out: int, dtype) -> np.ndarray:
    """LiteRT's int8/uint8 LOGISTIC lookup table (float32 arithmetic, exp rounded once)."""
    info = np.iinfo(dtype)
    vals = np.arange(int(info.min), int(info.max) + 1)
    x = (np.float32(s_in) * (vals - z_in).astype(F32)).astype(F32)
    e = np.exp(-x.astype(np.float64)).astype(F32)  # correctly rounded float32 exp
    y = (F32(1.0) / (F32(1.0) + e)).astype(F32)
    inv = F32(1.0) / F32(s_out)
    r = (y * inv).astype(F32)
    rounded = np.floor(np.abs(r) + F32(0.5)) * np.sign(r)
    q = (rounded + F32(z_out)).astype(np.int64)
    return np.clip(q, info.min, info.max).astype(dtype)


def logistic(ctx, args, tensors, out, opts):
    x = args[0]
    s_in, z_in = _qparams(ctx, tensors[0], "input")
    s_out, z_out = _qparams(ctx, out[0], "output")
    table = _logistic_table(float(s_in[0]), int(z_in[0]), float(s_out[0]), int(z_out[0]), x.dtype)
    info = np.iinfo(x.dtype)
    return [table[x.astype(np.int64) - int(info.min)]]


def quantize(ctx, args, tensors, out, opts):
    """Requantize between int8/uint8 (TFLite Requantize: fixed-point effective scale s_in/s_out)."""
    k = _k()
    x = args[0]
    if x.dtype.kind == "f":
        raise ctx.error("float input QUANTIZE is not supported (the models here are fully int8)")
    s_in, z_in = _qparams(ctx, tensors[0], "input")
    s_out, z_out = _qparams(ctx, out[0], "output")
    info = np.iinfo(out[0].dtype)
    m = np.float64(s_in[0]) / np.float64(s_out[0])
    mult, shift = k.quantize_multiplier(np.array(m))
    v = k.multiply_by_quantized_multiplier(x.astype(np.int64) - int(z_in[0]), mult.reshape(()), shift.reshape(()))
    return [np.clip(np.asarray(v, np.int64) + int(z_out[0]), info.min, info.max).astype(out[0].dtype)]


def concatenation(ctx, args, tensors, out, opts):
    axis = opts.Axis()
    o = out[0]
    parts = []
    for a, t in zip(args, tensors):
        if o.scale is not None and t.scale is not None and (t.scale[0] != o.scale[0]
                                                              or t.zero_point[0] != o.zero_point[0]):
            scale = F32(t.scale[0]) * (F32(1.0) / F32(o.scale[0]))
            bias = F32(-t.zero_point[0]) * scale
            v = (a.astype(F32) * scale + bias).astype(F32)
            r = np.floor(np.abs(v) + F32(0.5)) * np.sign(v)
            info = np.iinfo(o.dtype)
            a = np.clip(r.astype(np.int64) + int(o.zero_point[0]), info.min, info.max).astype(o.dtype)
        parts.append(a)
    if opts.FusedActivationFunction():
        raise ctx.error("fused activations on CONCATENATION are not supported")
    return [np.concatenate(parts, axis=axis)]


def reshape(ctx, args, tensors, out, opts):
    shape = out[0].shape
    if len(args) > 1 and args[1] is not None:
        shape = tuple(int(v) for v in np.asarray(args[1]).ravel())
    return [args[0].reshape(shape)]


def slice_index(begin, end, strides, opts, ndim: int) -> tuple:
    """STRIDED_SLICE's begin/end/strides and masks as a NumPy index (no ellipsis / new-axis masks)."""
    sl = []
    for i in range(ndim):
        if opts.ShrinkAxisMask() >> i & 1:
            sl.append(int(begin[i]))
            continue
        b = None if opts.BeginMask() >> i & 1 else int(begin[i])
        e = None if opts.EndMask() >> i & 1 else int(end[i])
        sl.append(slice(b, e, int(strides[i])))
    return tuple(sl)


def strided_slice(ctx, args, tensors, out, opts):
    x, begin, end, strides = args[:4]
    if opts.EllipsisMask() or opts.NewAxisMask():
        raise ctx.error("ellipsis and new-axis masks are not supported")
    return [np.ascontiguousarray(x[slice_index(begin, end, strides, opts, x.ndim)])]


def split_v(ctx, args, tensors, out, opts):
    x, sizes, axis = args[0], [int(v) for v in np.asarray(args[1]).ravel()], int(np.asarray(args[2]).ravel()[0])
    axis %= x.ndim
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return list(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


OPS = {
    "CONV_2D": conv_2d, "DEPTHWISE_CONV_2D": depthwise_conv_2d, "FULLY_CONNECTED": fully_connected,
    "LOGISTIC": logistic, "QUANTIZE": quantize, "CONCATENATION": concatenation, "RESHAPE": reshape,
    "STRIDED_SLICE": strided_slice, "SPLIT_V": split_v,
}
STATE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")
