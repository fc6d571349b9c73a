"""Prepared data-movement ops: what they do depends only on the input's shape and their
constant operands, so it is worked out once per input shape by the generic op itself.

* Slice / Gather with constant starts, ends, axes, steps / indices: the generic op run on the
  element numbers `arange(x.size).reshape(x.shape)` gives the source of every output element;
  later calls with that shape are one `np.take` (the generic ops spend 4–8 µs converting and
  checking their operands on every call, the silero VAD graphs run ~15 of them per chunk).
* Squeeze / Unsqueeze / Reshape with constant axes / shape: the output shape, recorded from the
  generic op's result; later calls are one `reshape` (the same elements in the same order).
* ReduceMean with constant axes: the axes and element count per input shape, then the generic
  op's own sum and division.
* Cast to float or between integer types, float32 Sigmoid / Tanh: the generic op's own kernel called
  directly (its dtype lookups and argument copies done once).

A shape the generic op rejects is never recorded: each call with it runs the generic op, which
reports the error. Results equal the generic op's bit for bit (tests/test_run_onnx_shapemaps.py).
"""

from __future__ import annotations

import numpy as np

F32 = np.dtype(np.float32)


def fixed_operands(node, consts):
    """[(input index, constant array)] for inputs 1.. when all present ones are constants, else None."""
    fixed = []
    for i in range(1, len(node.input)):
        if node.input[i]:
            if consts[i] is None:
                return None
            fixed.append((i, consts[i]))
    return fixed


def gather_by_shape(generic, fixed):
    """The op as one `np.take` per input shape: the generic op, run once on the flat element numbers, gives
    the source of every output element (for ops that only move elements: Slice, Gather, nearest Resize)."""
    maps: dict = {}

    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or any(args[i] is not c for i, c in fixed):
            return generic(ctx, args, attrs_)
        idx = maps.get(x.shape)
        if idx is None:
            try:
                idx = generic(ctx, [np.arange(x.size, dtype=np.intp).reshape(x.shape)] + args[1:], attrs_)[0]
            except Exception:  # the generic op reports what is wrong with the real input
                return generic(ctx, args, attrs_)
            maps[x.shape] = idx
        return [np.take(x.reshape(-1), idx)]

    return fast


def spec_gather_map(generic, node, attrs, consts, ex):
    """Slice / Gather with constant operands: a flat gather map per input shape."""
    fixed = fixed_operands(node, consts)
    return None if fixed is None else gather_by_shape(generic, fixed)


def spec_reshape_map(generic, node, attrs, consts, ex):
    """Squeeze / Unsqueeze / Reshape with constant operands: the output shape per input shape."""
    fixed = fixed_operands(node, consts)
    if fixed is None:
        return None
    shapes: dict = {}

    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or any(args[i] is not c for i, c in fixed):
            return generic(ctx, args, attrs_)
        shape = shapes.get(x.shape)
        if shape is None:
            y = generic(ctx, args, attrs_)  # raises for a shape it rejects (nothing recorded)
            shapes[x.shape] = y[0].shape
            return y
        return [x.reshape(shape)]

    return fast


def spec_cast(generic, node, attrs, consts, ex):
    """Cast to float32 / float64 (from anything), or of an integer / bool tensor to an integer / bool /
    float type: `float_ops.cast`'s plain astype, the target dtype looked up once."""
    from onnx import helper

    from qsim.onnxrun.fptypes import is_narrow_float

    to = np.dtype(helper.tensor_dtype_to_np_dtype(int(attrs["to"])))
    if is_narrow_float(to) or to.name in ("int4", "uint4", "int2", "uint2"):
        return None
    any_source = to in (np.dtype(np.float32), np.dtype(np.float64))

    def fast(ctx, args, attrs_):
        x = args[0]
        if not any_source and (type(x) is not np.ndarray or x.dtype.kind not in "iub"):
            return generic(ctx, args, attrs_)
        return [x.astype(to)]

    return fast


def spec_unary32(kernel_name: str):
    """float32 Sigmoid (`f32_ops._logistic`) / Tanh (`f32_ops._tanh`) with their constants converted once."""

    def maker(generic, node, attrs, consts, ex):
        from qsim.onnxrun import f32_ops

        if kernel_name == "logistic":
            kernel = f32_ops._logistic
            c = tuple(np.float32(f32_ops._LOGISTIC[k])
                      for k in ("a9", "a7", "a5", "a3", "a1", "b10", "b8", "b6", "b4", "b2", "b0"))
        else:
            kernel, c = f32_ops._tanh, tuple(np.float32(v) for v in f32_ops._TANH)

        def fast(ctx, args, attrs_):
            x = args[0]
            if type(x) is not np.ndarray or x.dtype != F32 or not x.flags.c_contiguous:
                return generic(ctx, args, attrs_)
            out = np.empty(x.shape, np.float32)
            kernel(x.reshape(-1), out.reshape(-1), c)
            return [out]

        return fast

    return maker


def spec_reduce_mean(generic, node, attrs, consts, ex):
    """ReduceMean with constant axes: `f32_ops.reduce_mean`'s normalised axes and element count once
    per input shape, then its own sum and division."""
    fixed = fixed_operands(node, consts)
    if fixed is None or attrs.get("noop_with_empty_axes", 0):
        return None
    keep = bool(attrs.get("keepdims", 1))
    per_shape: dict = {}

    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or x.dtype.kind != "f" or x.ndim == 0 or any(args[i] is not c for i, c in fixed):
            return generic(ctx, args, attrs_)
        hit = per_shape.get(x.shape)
        if hit is None:
            axes = args[1] if len(args) > 1 and args[1] is not None else attrs_.get("axes")
            if axes is None or len(np.asarray(axes).ravel()) == 0:
                axes = tuple(range(x.ndim))
            axes = tuple(int(a) % x.ndim for a in np.asarray(axes).ravel())
            hit = per_shape[x.shape] = (axes, int(np.prod([x.shape[a] for a in axes])))
        axes, count = hit
        s = x.sum(axis=axes, keepdims=keep, dtype=x.dtype)
        return [(s / x.dtype.type(count)).astype(x.dtype)]

    return fast


SHAPE_SPECIALIZERS = {
    ("", "Slice"): spec_gather_map,
    ("", "Gather"): spec_gather_map,
    ("", "Squeeze"): spec_reshape_map,
    ("", "Unsqueeze"): spec_reshape_map,
    ("", "Reshape"): spec_reshape_map,
    ("", "Cast"): spec_cast,
    ("", "Sigmoid"): spec_unary32("logistic"),
    ("", "Tanh"): spec_unary32("tanh"),
    ("", "ReduceMean"): spec_reduce_mean,
}
