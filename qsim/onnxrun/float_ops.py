"""Float and shape ops found around quantized nodes in QDQ models.

Float arithmetic runs in float64 and is rounded once to the output type: it equals
ONNX Runtime bit for bit whenever the exact result is representable (QDQ models with
power-of-two scales), and is within one rounding of it otherwise. Elementwise ops use
the type's own correctly rounded arithmetic, as ORT does.
"""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from qsim.onnxrun.fptypes import cast_narrow, is_float, is_narrow_float
from qsim.onnxrun.spatial import avg_pool, conv_float, max_pool, max_pool_indices, window


def _float(ctx, x, what: str = "input"):
    if x.dtype.kind != "f":
        raise ctx.error(f"{what} must be a float tensor, got {x.dtype}")
    return x


def conv(ctx, inputs, attrs):
    x, w, b = (inputs + [None] * 3)[:3]
    _float(ctx, x, "X")
    kernel = w.shape[2:]
    if x.ndim < 3 or w.ndim != x.ndim:
        raise ctx.error(f"X {x.shape} and W {w.shape} must both be (N, C, *spatial) with the same rank")
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != tuple(kernel):
        raise ctx.error(f"kernel_shape {list(attrs['kernel_shape'])} does not match W {w.shape}")
    try:
        win = window(attrs, x.shape[2:], kernel)
        y = conv_float(x, w, b, win, int(attrs.get("group", 1)))
    except ValueError as exc:
        raise ctx.error(str(exc)) from None
    return [y.astype(x.dtype)]


def gemm(ctx, inputs, attrs):
    a, b, c = (inputs + [None] * 3)[:3]
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ctx.error(f"A {a.shape} and B {b.shape} (after transA/transB) are not (M, K) and (K, N)")
    y = float(attrs.get("alpha", 1.0)) * (a.astype(np.float64) @ b.astype(np.float64))
    if c is not None:
        y = y + float(attrs.get("beta", 1.0)) * c.astype(np.float64)
    return [y.astype(a.dtype)]


def matmul(ctx, inputs, attrs):
    a, b = inputs[:2]
    wide = np.float64 if a.dtype.kind == "f" else np.int64
    try:
        y = np.matmul(a.astype(wide), b.astype(wide))
    except ValueError as exc:
        raise ctx.error(f"A {a.shape} and B {b.shape}: {exc}") from None
    return [y.astype(a.dtype)]


def _binary(fn):
    def op(ctx, inputs, attrs):
        a, b = inputs[:2]
        if a.dtype != b.dtype:
            raise ctx.error(f"inputs have different element types {a.dtype} and {b.dtype}")
        try:
            return [np.asarray(fn(a, b)).astype(a.dtype)]
        except ValueError as exc:
            raise ctx.error(f"shapes {a.shape} and {b.shape} do not broadcast: {exc}") from None

    return op


def _div(a, b):
    if a.dtype.kind == "f":
        return a / b
    if np.any(b == 0):
        raise ValueError("integer division by zero")
    q = np.abs(a.astype(np.int64)) // np.abs(b.astype(np.int64))  # C division truncates toward zero
    return q * np.sign(a) * np.sign(b)


def relu(ctx, inputs, attrs):
    x = inputs[0]
    return [np.maximum(x, np.zeros((), x.dtype))]


def clip(ctx, inputs, attrs):
    x = inputs[0]
    if ctx.opset < 11:
        lo, hi = attrs.get("min", -np.inf), attrs.get("max", np.inf)
    else:
        lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
        hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo).astype(x.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi).astype(x.dtype))
    return [y.astype(x.dtype)]


def reshape(ctx, inputs, attrs):
    x, shape = inputs[:2]
    shape = [int(s) for s in np.asarray(shape).ravel()]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    try:
        return [x.reshape(shape)]
    except ValueError:
        raise ctx.error(f"cannot reshape {x.shape} to {shape}") from None


def flatten(ctx, inputs, attrs):
    x = inputs[0]
    axis = int(attrs.get("axis", 1))
    if not -x.ndim <= axis <= x.ndim:
        raise ctx.error(f"axis must be in [{-x.ndim}, {x.ndim}], got {axis}")
    axis = axis + x.ndim if axis < 0 else axis
    return [x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))]


def _pool_window(ctx, x, attrs):
    kernel = tuple(int(k) for k in attrs.get("kernel_shape", ()))
    if not kernel or x.ndim != len(kernel) + 2:
        raise ctx.error(f"kernel_shape {list(kernel)} must name one size per spatial axis of X {x.shape}")
    try:
        return kernel, window(attrs, x.shape[2:], kernel, ceil_mode=bool(attrs.get("ceil_mode", 0)))
    except ValueError as exc:
        raise ctx.error(str(exc)) from None


def max_pool_op(ctx, inputs, attrs):
    x = inputs[0]
    kernel, win = _pool_window(ctx, x, attrs)
    if ctx.n_outputs > 1:
        y, idx = max_pool_indices(x, kernel, win, int(attrs.get("storage_order", 0)))
        return [y.astype(x.dtype), idx.astype(np.int64)]
    return [max_pool(x, kernel, win).astype(x.dtype)]


def average_pool(ctx, inputs, attrs):
    x = _float(ctx, inputs[0], "X")
    kernel, win = _pool_window(ctx, x, attrs)
    return [avg_pool(x, kernel, win, bool(attrs.get("count_include_pad", 0))).astype(x.dtype)]


def global_average_pool(ctx, inputs, attrs):
    x = _float(ctx, inputs[0], "X")
    axes = tuple(range(2, x.ndim))
    return [x.astype(np.float64).mean(axis=axes, keepdims=True).astype(x.dtype)]


def identity(ctx, inputs, attrs):
    return [inputs[0]]


CONSTANT_KINDS = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                  "value_ints": np.int64}


def constant(ctx, inputs, attrs):
    if "value" in attrs:
        return [numpy_helper.to_array(attrs["value"])]
    for key, dtype in CONSTANT_KINDS.items():
        if key in attrs:
            return [np.asarray(attrs[key], dtype)]
    raise ctx.error(f"supported attributes are 'value' and {sorted(CONSTANT_KINDS)}, got {sorted(attrs)}")


def cast(ctx, inputs, attrs):
    to = np.dtype(helper.tensor_dtype_to_np_dtype(int(attrs["to"])))
    x = inputs[0]
    if is_narrow_float(to):
        return [cast_narrow(x, to, bool(attrs.get("saturate", 1)), attrs.get("round_mode", "up"))]
    if is_float(x.dtype) and to.kind in "iub" and to.name not in ("int4", "uint4", "int2", "uint2"):
        return [_float_to_int(ctx, x, to)]
    if is_float(x.dtype) and to.name in ("int4", "uint4", "int2", "uint2"):
        return [_float_to_int(ctx, x, to)]
    return [x.astype(to)]


def _float_to_int(ctx, x, to):
    """ORT truncates toward zero (C cast); narrow int types wrap like ONNX's reference; NaN or values
    outside the target's range are undefined behaviour in C, so they are errors here."""
    import ml_dtypes

    if to == np.bool_:
        return x.astype(np.float32) != 0
    x64 = x.astype(np.float64)
    info = ml_dtypes.iinfo(to) if to.name in ("int4", "uint4", "int2", "uint2") else np.iinfo(to)
    t = np.trunc(x64)
    if to.name in ("int4", "uint4", "int2", "uint2"):
        bits = {"int4": 4, "uint4": 4, "int2": 2, "uint2": 2}[to.name]
        if not np.all(np.isfinite(t)):
            raise ctx.error("Cast of NaN or Inf to an integer type is undefined")
        w = np.mod(t.astype(np.int64), 1 << bits)
        if info.min < 0:
            w = np.where(w > info.max, w - (1 << bits), w)
        return w.astype(to)
    if not np.all(np.isfinite(t)) or t.min(initial=0) < info.min or t.max(initial=0) > info.max:
        raise ctx.error(f"Cast to {to.name}: NaN, Inf or values outside [{info.min}, {info.max}] are undefined")
    return t.astype(to)


def transpose(ctx, inputs, attrs):
    perm = attrs.get("perm")
    return [np.transpose(inputs[0], None if perm is None else [int(p) for p in perm])]


FLOAT_OPS = {
    "Conv": conv, "Gemm": gemm, "MatMul": matmul,
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply), "Div": _binary(_div),
    "Relu": relu, "Clip": clip, "Reshape": reshape, "Flatten": flatten,
    "MaxPool": max_pool_op, "AveragePool": average_pool, "GlobalAveragePool": global_average_pool,
    "Identity": identity, "Constant": constant, "Cast": cast, "Transpose": transpose,
}
