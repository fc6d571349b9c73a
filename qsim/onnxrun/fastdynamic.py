"""Prepared ops of dynamically quantized graphs (`quantize_dynamic`): DynamicQuantizeLinear and
small ConvInteger in one Numba call each.

* DynamicQuantizeLinear: `ops.dynamic_quantize_linear` makes five NumPy passes (finite check,
  min, max, quantize) and scalar conversions (~9 µs on the VAD's few hundred values);
  `dql_pass` finds min / max / non-finite values in one pass, derives the scale and zero point
  with the same float32 operations and quantizes with `ops._quantize_tensor`.
* ConvInteger (groups 1, 1-D / 2-D) whose sums provably stay below 2^24 and within the
  accumulator: `conv_int_exact` sums (x − x_zp)·(w − w_zp) in float32 — every partial sum is an
  exact integer there, so any order gives the integers the generic op (and the prepared BLAS
  path of `plan._int_conv`) gives — in one call instead of five NumPy / BLAS calls.

Both equal the generic ops bit for bit (tests/test_run_onnx_fastdynamic.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.ops import _quantize_tensor

F32 = np.float32
_F32 = np.dtype(np.float32)


@njit(cache=True, nogil=True)
def dql_pass(x, q):
    """DynamicQuantizeLinear of finite float32 x into q (uint8); returns (ok, scale, zero point),
    ok False when x holds NaN or ±inf, or the scale underflows to 0 (q untouched)."""
    lo = np.float32(0.0)
    hi = np.float32(0.0)
    bad = False
    for i in range(x.size):
        v = x[i]
        bad |= not np.isfinite(v)
        lo = v if v < lo else lo
        hi = v if v > hi else hi
    if bad:
        return False, np.float32(1.0), 0
    s = np.float32(1.0) if hi == lo else np.float32(hi - lo) / np.float32(255.0)
    if s == 0:  # a range below 255 denormal steps: the generic op's NumPy arithmetic decides
        return False, s, 0
    zf = np.float32(0.0) - lo / s
    zf = min(max(zf, np.float32(0.0)), np.float32(255.0))
    z = np.int64(np.rint(zf))
    _quantize_tensor(x, s, z, 0, 255, q)
    return True, s, z


def spec_dynamic_quantize_linear(generic, node, attrs, consts, ex):
    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or x.dtype != _F32 or not x.flags.c_contiguous or x.size == 0:
            return generic(ctx, args, attrs_)
        q = np.empty(x.shape, np.uint8)
        ok, s, z = dql_pass(x.reshape(-1), q.reshape(-1))
        if not ok:
            return generic(ctx, args, attrs_)  # reports the NaN / Inf
        return [q, np.asarray(s, F32), np.asarray(z, np.uint8)]

    return fast


@njit(cache=True, nogil=True)
def conv_int_exact(x, zx, w_t, p, out):
    """out (N, O, ho·wo) int32 = Σ (x − zx)·w over each patch, x (N, C, H, W) 8-bit, w_t (C·kh·kw, O)
    float32 holding w − w_zp; padding contributes 0. p = kh, kw, sh, sw, dh, dw, pad top, pad left,
    ho, wo. The caller has proven every partial sum an integer below 2^24 (exact in float32)."""
    kh, kw, sh, sw, dh, dw, pt, pl, ho, wo = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]
    n_, c_, h_, wd = x.shape
    k_, o_ = w_t.shape
    npix = ho * wo
    zf = np.float32(zx)
    col = np.empty(k_, np.float32)
    acc = np.empty(o_, np.float32)
    for n in range(n_):
        for oy in range(ho):
            for ox in range(wo):
                r = 0
                for c in range(c_):
                    for i in range(kh):
                        yy = oy * sh + i * dh - pt
                        for j in range(kw):
                            xx = ox * sw + j * dw - pl
                            if 0 <= yy < h_ and 0 <= xx < wd:
                                col[r] = np.float32(x[n, c, yy, xx]) - zf
                            else:
                                col[r] = np.float32(0.0)
                            r += 1
                acc[:] = np.float32(0.0)
                for k in range(k_):
                    v = col[k]
                    if v != 0:
                        wk = w_t[k]
                        for o in range(o_):
                            acc[o] += v * wk[o]
                q = oy * wo + ox
                for o in range(o_):
                    out[n, o, q] = np.int32(acc[o])
    return out


EXACT_MACS = 2_000_000   # above this the prepared BLAS / VNNI paths of plan._int_conv are faster


def spec_conv_integer(generic, node, attrs, consts, ex):
    """ConvInteger: `conv_int_exact` where it applies, else `plan._spec_conv_integer`'s paths."""
    from qsim.onnxrun.ops import int_range
    from qsim.onnxrun.plan import _int_conv_operands_ok, _scalar_zp, _spec_conv_integer
    from qsim.onnxrun.spatial import window

    base = _spec_conv_integer(generic, node, attrs, consts, ex)
    consts = consts + [None] * (4 - len(consts))
    _, w, xz, wz = consts[:4]
    names = list(node.input) + [""] * (4 - len(node.input))
    if base is None or w is None or (names[3] and wz is None) or not _int_conv_operands_ok(w, wz, None, attrs) \
            or int(attrs.get("group", 1)) != 1:
        return base
    zx_runtime = bool(names[2]) and xz is None
    zx_const = None if zx_runtime else _scalar_zp(xz)
    if not zx_runtime and zx_const is None:
        return base
    o = w.shape[0]
    nd = w.ndim - 2
    kernel = tuple(w.shape[2:])
    zw = np.broadcast_to(np.asarray(0 if wz is None else wz.reshape(-1), np.int64), (o,))
    wsh = w.reshape(o, -1).astype(np.int64) - zw[:, None]
    max_w = int(np.abs(wsh).max(initial=0))
    w_t = np.ascontiguousarray(wsh.astype(F32).T)
    hi_acc = (1 << (ex.options["acc_bits"] - 1)) - 1
    ranges = {dt: int_range(dt) for dt in (np.dtype(np.uint8), np.dtype(np.int8))}
    geo: dict = {}

    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or x.dtype not in ranges or x.ndim != nd + 2 or x.shape[1] != w.shape[1] \
                or args[1] is not w:
            return base(ctx, args, attrs_)
        if zx_runtime:
            z = args[2]
            if type(z) is not np.ndarray or z.dtype != x.dtype or z.size != 1:
                return base(ctx, args, attrs_)
            zxv = int(z.reshape(-1)[0])
        else:
            if zx_const[1] is not None and x.dtype != zx_const[1]:
                return base(ctx, args, attrs_)
            zxv = zx_const[0]
        lo_x, hi_x = ranges[x.dtype]
        bound = w_t.shape[0] * max(abs(lo_x - zxv), abs(hi_x - zxv)) * max_w
        if bound >= 1 << 24 or bound > hi_acc:
            return base(ctx, args, attrs_)
        p = geo.get(x.shape)
        if p is None:
            try:
                win = window(attrs_, x.shape[2:], kernel)
            except ValueError:
                return base(ctx, args, attrs_)
            one = nd == 1
            k2 = (1,) + kernel if one else kernel
            st, dl, bg, out = ((1,) + tuple(win.strides), (1,) + tuple(win.dilations), (0,) + tuple(win.begin),
                               (1,) + tuple(win.out)) if one else (win.strides, win.dilations, win.begin, win.out)
            macs = x.shape[0] * out[0] * out[1] * w_t.size
            p = geo[x.shape] = (np.array([k2[0], k2[1], st[0], st[1], dl[0], dl[1], bg[0], bg[1], out[0], out[1]],
                                         np.int64), tuple(win.out)) if macs <= EXACT_MACS else False
        if p is False:
            return base(ctx, args, attrs_)
        params, out_shape = p
        n = x.shape[0]
        y = np.empty((n, o, int(params[8] * params[9])), np.int32)
        x4 = np.ascontiguousarray(x) if nd == 2 else np.ascontiguousarray(x).reshape(n, x.shape[1], 1, x.shape[2])
        conv_int_exact(x4, zxv, w_t, params, y)
        ctx.integer_node = True
        return [y.reshape((n, o) + out_shape)]

    return fast
