"""Small integer convolutions (ConvInteger, QLinearConv; groups 1, 1-D / 2-D) as exact float32 sums
in one Numba call.

Where every partial sum of (x − x_zp)·(w − w_zp) (+ bias) is provably an integer below 2^24 in
magnitude (and within the emulated accumulator), float32 holds it exactly, so the sums can be
taken in any order — `exact_dots` lets LLVM reassociate and vectorise them — and still equal
the integers of the generic ops and of the plan's other prepared paths (BLAS float32, VNNI
GEMM, `conv2d_int`). On the silero VAD's few-pixel convolutions those paths spend most of their
time in per-call Python and packing (ConvInteger encoder.0: 22 → 9 µs). QLinearConv's
requantization is `qconv.requant_nchw`'s, as on its other prepared paths. The results equal the
generic ops bit for bit (tests/test_run_onnx_fastdynamic.py); hosts whose ORT saturates int16
pairs (`pair_saturate16`) keep the QLinearConv paths that model it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.qconv import requant_nchw

F32 = np.float32


@njit(cache=True, nogil=True)
def patches_f32(x, zx, p, cols):
    """cols (N·ho·wo, C·kh·kw) float32: each output pixel's patch of x (N, C, H, W) minus zx, padding 0.
    p = kh, kw, sh, sw, dh, dw, pad top, pad left, ho, wo."""
    kh, kw, sh, sw, dh, dw, pt, pl, ho, wo = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]
    n_, c_, h_, wd = x.shape
    zf = np.float32(zx)
    q = 0
    for n in range(n_):
        for oy in range(ho):
            for ox in range(wo):
                row = cols[q]
                r = 0
                for c in range(c_):
                    for i in range(kh):
                        yy = oy * sh + i * dh - pt
                        for j in range(kw):
                            xx = ox * sw + j * dw - pl
                            if 0 <= yy < h_ and 0 <= xx < wd:
                                row[r] = np.float32(x[n, c, yy, xx]) - zf
                            else:
                                row[r] = np.float32(0.0)
                            r += 1
                q += 1
    return cols


@njit(cache=True, nogil=True, fastmath=True)
def exact_dots(w, cols, acc):
    """acc[q, o] = Σ_k w[o, k]·cols[q, k]. Only for operands whose every partial sum is an integer below
    2^24 in magnitude: those sums are exact in float32 in any order, which lets this loop be
    reassociated and vectorised (fastmath) without changing a bit. Pixels in blocks of 4 with weight
    rows in pairs, single pixels with rows in blocks of 4 (each loaded value used several times)."""
    o_, k_ = w.shape
    q_ = cols.shape[0]
    q = 0
    while q + 4 <= q_:
        c0, c1, c2, c3 = cols[q], cols[q + 1], cols[q + 2], cols[q + 3]
        o = 0
        while o + 2 <= o_:
            wa = w[o]
            wb = w[o + 1]
            s0 = s1 = s2 = s3 = t0 = t1 = t2 = t3 = np.float32(0.0)
            for k in range(k_):
                va = wa[k]
                vb = wb[k]
                x0 = c0[k]
                x1 = c1[k]
                x2 = c2[k]
                x3 = c3[k]
                s0 += va * x0
                s1 += va * x1
                s2 += va * x2
                s3 += va * x3
                t0 += vb * x0
                t1 += vb * x1
                t2 += vb * x2
                t3 += vb * x3
            acc[q, o] = s0
            acc[q + 1, o] = s1
            acc[q + 2, o] = s2
            acc[q + 3, o] = s3
            acc[q, o + 1] = t0
            acc[q + 1, o + 1] = t1
            acc[q + 2, o + 1] = t2
            acc[q + 3, o + 1] = t3
            o += 2
        for o in range(o, o_):
            wr = w[o]
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for k in range(k_):
                v = wr[k]
                s0 += v * c0[k]
                s1 += v * c1[k]
                s2 += v * c2[k]
                s3 += v * c3[k]
            acc[q, o] = s0
            acc[q + 1, o] = s1
            acc[q + 2, o] = s2
            acc[q + 3, o] = s3
        q += 4
    for q in range(q, q_):
        c = cols[q]
        o = 0
        while o + 4 <= o_:
            wa, wb, wc, wd = w[o], w[o + 1], w[o + 2], w[o + 3]
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for k in range(k_):
                x = c[k]
                s0 += wa[k] * x
                s1 += wb[k] * x
                s2 += wc[k] * x
                s3 += wd[k] * x
            acc[q, o] = s0
            acc[q, o + 1] = s1
            acc[q, o + 2] = s2
            acc[q, o + 3] = s3
            o += 4
        for o in range(o, o_):
            wr = w[o]
            s = np.float32(0.0)
            for k in range(k_):
                s += wr[k] * c[k]
            acc[q, o] = s
    return acc


@njit(cache=True, nogil=True)
def conv_int_exact(x, zx, w, bias, p, out):
    """out (N, O, ho·wo) int32 = bias + Σ (x − zx)·w over each patch, x (N, C, H, W) 8-bit, w (O, C·kh·kw)
    float32 holding w − w_zp, bias (O,) float32; padding contributes 0 (`patches_f32`, `exact_dots`).
    The caller has proven every partial sum an integer below 2^24 (exact in float32)."""
    n_ = x.shape[0]
    o_, k_ = w.shape
    npix = p[8] * p[9]
    cols = np.empty((n_ * npix, k_), np.float32)
    patches_f32(x, zx, p, cols)
    acc = np.empty((n_ * npix, o_), np.float32)
    exact_dots(w, cols, acc)
    for n in range(n_):
        for o in range(o_):
            for q in range(npix):
                out[n, o, q] = np.int32(acc[n * npix + q, o] + bias[o])
    return out


EXACT_MACS = 400_000   # ConvInteger: above this the BLAS / VNNI paths of qconv._int_conv are as fast (measured)
QCONV_EXACT_MACS = 400_000   # QLinearConv: above this its one-call VNNI GEMM is as fast or faster (measured)
EXACT_PIXELS = 64   # more output pixels (all images): BLAS / the VNNI GEMM amortise their per-call work


_int_sums = conv_int_exact  # what qconv_exact calls (tests spy on the module's entry points)


@njit(cache=True, nogil=True)
def qconv_exact(x, zx, w, bias, p, scale, zy, lo, hi, acc, out):
    """`conv_int_exact` into acc (N, O, P) int32, then `qconv.requant_nchw` into out (N, O, P)."""
    _int_sums(x, zx, w, bias, p, acc)
    requant_nchw(acc, scale, zy, lo, hi, out)
    return out


class ExactConv:
    """A constant 8-bit weight (O, C, [kh,] kw), its zero point and int32 bias prepared for
    `conv_int_exact`; `params(x, zx)` says per call whether the exact path applies."""

    def __init__(self, w, wz, bias, attrs, ex, max_macs: int):
        from qsim.onnxrun.ops import int_range

        o = w.shape[0]
        self.o, self.nd, self.c = o, w.ndim - 2, w.shape[1]
        self.kernel = tuple(w.shape[2:])
        zw = np.broadcast_to(np.asarray(0 if wz is None else wz.reshape(-1), np.int64), (o,))
        wsh = w.reshape(o, -1).astype(np.int64) - zw[:, None]
        self.w_f = np.ascontiguousarray(wsh.astype(F32))
        b64 = np.zeros(o, np.int64) if bias is None else bias.astype(np.int64)
        self.b_f = b64.astype(F32)
        self.fixed = int(np.abs(b64).max(initial=0)), wsh.shape[1] * int(np.abs(wsh).max(initial=0))
        self.hi_acc = (1 << (ex.options["acc_bits"] - 1)) - 1
        self.ranges = {dt: int_range(dt) for dt in (np.dtype(np.uint8), np.dtype(np.int8))}
        self.geo: dict = {}
        self.max_macs = max_macs

    def params(self, x, zx: int, attrs):
        """(int64 parameter vector, output spatial shape) when x (its dtype, zero point zx, shape) can
        take the exact path: no sum can reach 2^24 or leave the accumulator, few products; else None."""
        from qsim.onnxrun.spatial import window

        r = self.ranges.get(x.dtype)
        if r is None or x.ndim != self.nd + 2 or x.shape[1] != self.c:
            return None
        bound = self.fixed[0] + self.fixed[1] * max(abs(r[0] - zx), abs(r[1] - zx))
        if bound >= 1 << 24 or bound > self.hi_acc:
            return None
        p = self.geo.get(x.shape)
        if p is None:
            try:
                win = window(attrs, x.shape[2:], self.kernel)
            except ValueError:
                return None
            one = self.nd == 1
            k2 = (1,) + self.kernel if one else self.kernel
            st, dl, bg, out = ((1,) + tuple(win.strides), (1,) + tuple(win.dilations), (0,) + tuple(win.begin),
                               (1,) + tuple(win.out)) if one else (win.strides, win.dilations, win.begin, win.out)
            pixels = x.shape[0] * out[0] * out[1]
            ok = pixels <= EXACT_PIXELS and pixels * self.w_f.size <= self.max_macs
            p = self.geo[x.shape] = (np.array([k2[0], k2[1], st[0], st[1], dl[0], dl[1], bg[0], bg[1], out[0],
                                               out[1]], np.int64), tuple(win.out)) if ok else False
        return p or None

    def x4(self, x):
        xc = np.ascontiguousarray(x)
        return xc if self.nd == 2 else xc.reshape(x.shape[0], x.shape[1], 1, x.shape[2])


def _exact_conv(w, wz, bias, attrs, ex, max_macs: int):
    from qsim.onnxrun.qconv import _int_conv_operands_ok

    if w is None or not _int_conv_operands_ok(w, wz, bias, attrs) or int(attrs.get("group", 1)) != 1:
        return None
    return ExactConv(w, wz, bias, attrs, ex, max_macs)


def spec_conv_integer(generic, node, attrs, consts, ex):
    """ConvInteger: `conv_int_exact` where it applies, else `qconv._spec_conv_integer`'s paths."""
    from qsim.onnxrun.qconv import _spec_conv_integer
    from qsim.onnxrun.specbase import _scalar_zp

    base = _spec_conv_integer(generic, node, attrs, consts, ex)
    consts = consts + [None] * (4 - len(consts))
    _, w, xz, wz = consts[:4]
    names = list(node.input) + [""] * (4 - len(node.input))
    zx_runtime = bool(names[2]) and xz is None
    zx_const = None if zx_runtime else _scalar_zp(xz)
    ec = None if base is None or (names[3] and wz is None) or (not zx_runtime and zx_const is None) \
        else _exact_conv(w, wz, None, attrs, ex, EXACT_MACS)
    if ec is None:
        return base

    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or args[1] is not w:
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
        p = ec.params(x, zxv, attrs_)
        if p is None:
            return base(ctx, args, attrs_)
        params, out_shape = p
        n = x.shape[0]
        y = np.empty((n, ec.o, int(params[8] * params[9])), np.int32)
        conv_int_exact(ec.x4(x), zxv, ec.w_f, ec.b_f, params, y)
        ctx.integer_node = True
        return [y.reshape((n, ec.o) + out_shape)]

    return fast


def spec_qlinear_conv(generic, node, attrs, consts, ex):
    """QLinearConv: `qconv_exact` where it applies, else `qconv._spec_qlinear_conv`'s paths (whose
    checks and requantization constants it shares)."""
    from qsim.onnxrun.qconv import _spec_qlinear_conv

    base = _spec_qlinear_conv(generic, node, attrs, consts, ex)
    q = getattr(base, "qconv", None)
    if q is None:
        return base
    w, wz, bias, xdt, zx, scale, zy, lo, hi, ydt = q
    if int(np.prod(w.shape[2:])) == 1:
        return base  # 1×1: its pointwise kernel is faster
    ec = _exact_conv(w, wz, bias, attrs, ex, QCONV_EXACT_MACS)
    if ec is None:
        return base

    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or x.dtype != xdt:
            return base(ctx, args, attrs_)
        p = ec.params(x, zx, attrs_)
        if p is None:
            return base(ctx, args, attrs_)
        params, out_shape = p
        n = x.shape[0]
        npix = int(params[8] * params[9])
        out = np.empty((n, ec.o, npix), ydt)
        qconv_exact(ec.x4(x), zx, ec.w_f, ec.b_f, params, scale, zy, lo, hi, np.empty((n, ec.o, npix), np.int32),
                    out)
        ctx.integer_node = True
        return [out.reshape((n, ec.o) + out_shape)]

    return fast
