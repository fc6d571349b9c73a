"""The prepared float ops of the plan (`qsim.onnxrun.plan`): elementwise Add / Sub / Mul / Div,
Clip, Pad, nearest Resize, ConvTranspose (stride = kernel), HardSigmoid, Conv and If.

Split from `plan` by topic; `plan.SPECIALIZERS` says which op each specialiser serves.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.specbase import _F32, F32


# -- float elementwise -----------------------------------------------------------------------------------
def _spec_binary(ufunc):
    def maker(generic, node, attrs, consts, ex):
        def fast(ctx, args, attrs_):
            a, b = args[0], args[1]
            if a.dtype != _F32 or b.dtype != _F32:
                return generic(ctx, args, attrs_)
            try:
                y = ufunc(a, b)
            except ValueError:
                return generic(ctx, args, attrs_)
            return [y if type(y) is np.ndarray else np.asarray(y)]

        return fast

    return maker


def _spec_clip(generic, node, attrs, consts, ex):
    if ex.opset < 11:
        return None
    lo = consts[1] if len(consts) > 1 else None
    hi = consts[2] if len(consts) > 2 else None
    if any(len(node.input) > i and node.input[i] and c is None for i, c in ((1, lo), (2, hi))):
        return None  # a bound computed at run time
    lo32 = None if lo is None else np.asarray(lo).astype(F32)
    hi32 = None if hi is None else np.asarray(hi).astype(F32)
    hi_in_place = hi32 is not None and hi32.size == 1

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype != _F32:
            return generic(ctx, args, attrs_)
        y = x if lo32 is None else np.maximum(x, lo32)
        if hi32 is not None:  # in place into maximum's fresh result where the shapes allow (one array less)
            y = np.minimum(y, hi32, out=y) if type(y) is np.ndarray and y is not x and hi_in_place \
                and y.ndim >= hi32.ndim else np.minimum(y, hi32)
        return [np.array(y, F32) if y is x or type(y) is not np.ndarray else y]

    return fast


def reflect_pad_axis(x: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    """np.pad(mode="reflect") along one axis when both pads are shorter than it (no repeated
    reflection): the mirrored edges (excluding the edge element) concatenated around x."""
    n = x.shape[axis]
    lead = (slice(None),) * axis
    left = x[lead + (slice(before, 0, -1),)]
    stop = n - 2 - after
    right = x[lead + (slice(n - 2, stop if stop >= 0 else None, -1),)]
    return np.concatenate([left, x, right], axis=axis)


def _spec_pad(generic, node, attrs, consts, ex):
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if ex.opset < 11 or mode != "reflect" or len(consts) < 2 or consts[1] is None:
        return None
    if len(node.input) > 3 and node.input[3]:
        return None  # axes: the generic op
    pads = [int(v) for v in np.asarray(consts[1]).ravel()]
    k = len(pads) // 2
    nonzero = [i for i in range(k) if pads[i] or pads[i + k]]
    if len(nonzero) != 1 or min(pads) < 0:
        return None
    axis = nonzero[0]
    before, after = pads[axis], pads[axis + k]

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.ndim != k or not (before < x.shape[axis] and after < x.shape[axis]):
            return generic(ctx, args, attrs_)
        return [reflect_pad_axis(x, axis, before, after)]

    return fast


# -- Resize (nearest) --------------------------------------------------------------------------------------------
def _spec_resize_nearest(generic, node, attrs, consts, ex):
    """Nearest Resize with constant roi / scales / sizes is a gather (`shapemaps.gather_by_shape`)."""
    from qsim.onnxrun.shapemaps import fixed_operands, gather_by_shape

    mode = attrs.get("mode", b"nearest")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "nearest":
        return None
    fixed = fixed_operands(node, consts)  # None: roi / scales / sizes computed at run time, the generic op
    return None if fixed is None else gather_by_shape(generic, fixed)


# -- float ConvTranspose, stride = kernel (the detection heads' 2x2 / stride 2 upsampling) -------------------
@njit(cache=True, nogil=True)
def place_taps(col, out):
    """out[o, h·kh + i, w·kw + j] = 0 + col[o, i, j, h, w] (the zero-initialised col2im's one add per
    element where strides = kernel: −0 becomes +0 as there)."""
    og, kh, kw, h, wd = col.shape
    for o in range(og):
        for r in range(h):
            for i in range(kh):
                row = out[o, r * kh + i]
                for j in range(kw):
                    src = col[o, i, j, r]
                    for c in range(wd):
                        row[c * kw + j] = np.float32(0.0) + src[c]


def _spec_conv_transpose(generic, node, attrs, consts, ex):
    """`f32_ops.conv_transpose` where the taps do not overlap (strides = kernel, no pads, dilation 1,
    no output padding): the same GEMM from the weights transposed once, each tap's plane placed by a
    reshape (0 + col, as the generic op's zero-initialised col2im adds it), then the bias."""
    from qsim.onnxrun.f32gemm import sgemm

    if len(consts) < 2 or consts[1] is None:
        return None
    w = consts[1]
    b = consts[2] if len(consts) > 2 else None
    if (len(node.input) > 2 and node.input[2] and b is None) or w.dtype != _F32 or w.ndim != 4:
        return None
    g, og, kernel = int(attrs.get("group", 1)), w.shape[1], tuple(w.shape[2:])
    ints = {k: [int(v) for v in attrs.get(k, [])] for k in ("strides", "dilations", "output_padding", "pads")}
    auto = attrs.get("auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "VALID") or g != 1 \
            or ints["strides"] != list(kernel) or any(d != 1 for d in ints["dilations"]) \
            or any(ints["output_padding"]) or any(ints["pads"]) or "output_shape" in attrs \
            or (b is not None and (b.dtype.kind != "f" or b.shape != (og,))):
        return None
    c, (kh, kw) = w.shape[0], kernel
    wt_t = np.ascontiguousarray(w.astype(F32).reshape(1, c, og * kh * kw)[0].T)
    bias = None if b is None else b.astype(F32).reshape(1, -1, 1, 1)

    def fast(ctx, args, attrs_):
        x = args[0]
        if not isinstance(x, np.ndarray) or x.dtype != _F32 or x.ndim != 4 or x.shape[1] != c \
                or args[1] is not w or (b is not None and args[2] is not b):
            return generic(ctx, args, attrs_)
        n, _, h, wd = x.shape
        y = np.empty((n, og, h * kh, wd * kw), F32)
        for i in range(n):
            col = sgemm(wt_t, x[i].reshape(c, h * wd), packed=False, trans_a=True)
            place_taps(col.reshape(og, kh, kw, h, wd), y[i])
        if bias is not None:
            y += bias
        return [y]

    return fast


# -- HardSigmoid (float32) ----------------------------------------------------------------------------------------
def _spec_hard_sigmoid(generic, node, attrs, consts, ex):
    """`f32_ops.hard_sigmoid` with the clip as maximum / minimum in place (np.clip's Python wrapper costs
    more than the work on the SE gates' few values); beta ≠ 0, so x·alpha + beta is never −0 and the two
    clips agree (NaN propagates through both)."""
    alpha, beta = F32(attrs.get("alpha", 0.2)), F32(attrs.get("beta", 0.5))
    if beta == 0 or not np.isfinite(beta):
        return None
    zero, one = F32(0), F32(1)

    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or x.dtype != _F32 or x.ndim == 0:
            return generic(ctx, args, attrs_)
        y = x * alpha
        y += beta
        np.maximum(y, zero, out=y)
        np.minimum(y, one, out=y)
        return [y]

    return fast


# -- float Conv --------------------------------------------------------------------------------------------------
def _spec_conv(generic, node, attrs, consts, ex):
    """Float Conv with constant weights: grouped once; 1-D / 2-D ones (depthwise aside) in one Numba
    call (`fastconv.conv_once`), the rest through `f32_ops.conv_prepared`."""
    from qsim.onnxrun.f32_ops import conv_prepared
    from qsim.onnxrun.fastconv import conv_once, conv_params
    from qsim.onnxrun.spatial import window

    if len(consts) < 2 or consts[1] is None:
        return None
    w = consts[1]
    b = consts[2] if len(consts) > 2 else None
    if len(node.input) > 2 and node.input[2] and b is None:
        return None  # a bias computed at run time: the generic op
    if w.dtype.kind != "f" or w.ndim not in (3, 4) or (b is not None and b.dtype.kind != "f"):
        return None
    g = int(attrs.get("group", 1))
    o = w.shape[0]
    if o % g or (b is not None and b.shape != (o,)):
        return None
    kernel = w.shape[2:]
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != tuple(kernel):
        return None
    kk = int(np.prod(kernel))
    wg = np.ascontiguousarray(w.astype(F32).reshape(g, o // g, w.shape[1] * kk))
    bias = None if b is None else b.astype(F32)
    wg_t = np.ascontiguousarray(wg.transpose(0, 2, 1))

    wins: dict = {}
    no_bias = np.zeros(0, F32)

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype != _F32 or x.ndim != w.ndim or x.shape[1] != w.shape[1] * g:
            return generic(ctx, args, attrs_)
        hit = wins.get(x.shape[2:])
        if hit is None:
            try:
                win = window(attrs_, x.shape[2:], kernel)
            except ValueError:
                return generic(ctx, args, attrs_)
            hit = wins[x.shape[2:]] = (win, conv_params(win, kernel, x.shape[1], g, o // g, bias is not None))
        win, params = hit
        if params is None or not x.flags.c_contiguous:
            return conv_prepared(ctx, x, w, wg, bias, attrs_, wg_t, win)
        n = x.shape[0]
        y = np.empty((n, g, o // g, int(params[8] * params[9])), F32)
        conv_once(x if x.ndim == 4 else x.reshape(n, x.shape[1], 1, x.shape[2]), wg, wg_t,
                  no_bias if bias is None else bias, params, y)
        return [y.reshape((n, o) + win.out)]

    return fast


def _spec_if(generic, node, attrs, consts, ex):
    """If: the taken branch through its own prepared plan (`control_flow.prepared_if`)."""
    from qsim.onnxrun.control_flow import prepared_if

    return prepared_if(generic, node, attrs, consts, ex)
