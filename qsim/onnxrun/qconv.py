"""The prepared integer convolution and matmul of the plan (`qsim.onnxrun.plan`): QLinearConv,
ConvInteger and QLinearMatMul with their requantization kernels (`requant_nchw`, `requant_rows`) and
the wide depthwise kernel, built once from the constant weights, scales and zero points.

Split from `plan` by topic; `plan.SPECIALIZERS` says which op each specialiser serves.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.specbase import _F32, _QDTYPES, F32, _scalar_scale, _scalar_zp


# -- QLinearConv ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def requant_nchw(acc, scale, zp, lo, hi, out):
    """out[n, c, p] = clamp(rne(fl32(acc[n, c, p]) · scale[c]) + zp, lo, hi): the fp32_rne
    requantization of `qsim.kernels.requantize` (channel axis 1) in one pass."""
    n_, c_, p_ = acc.shape
    for n in range(n_):
        for c in range(c_):
            s = scale[c]
            for p in range(p_):
                v = np.rint(np.float32(acc[n, c, p]) * s) + zp
                out[n, c, p] = lo if v < lo else (hi if v > hi else np.int64(v))
    return out


def requant_nchw_reference(acc, scale, zp, lo, hi) -> np.ndarray:
    """NumPy twin of `requant_nchw` (int64 result)."""
    y = np.rint(acc.astype(F32) * scale.astype(F32)[None, :, None]).astype(np.float64) + zp
    return np.clip(y, lo, hi).astype(np.int64)


@njit(cache=True, nogil=True)
def qdepthwise_wide(xpf, w, bias, wp, dh, dw, n_rows, out):
    """Exact integer depthwise sums on the padded width: out[c, p] = bias[c] + Σ_{i,j} w[c, i, j] ·
    xpf[c, p + i·dh·wp + j·dw] for p < n_rows·wp (stride 1; the caller keeps the valid columns and
    every stride-th row/column). xpf (C, L) holds x − x_zp, zero-padded, with one spare zero row;
    w (C, kh, kw) holds w − w_zp. The caller has proven that no sum can leave int32."""
    c_, kh, kw = w.shape
    n = n_rows * wp
    for c in range(c_):
        acc = out[c]
        b = bias[c]
        for p in range(n):
            acc[p] = b
        for i in range(kh):
            for j in range(kw):
                o = i * dh * wp + j * dw
                r = xpf[c, o:o + n]
                wv = w[c, i, j]
                for p in range(n):
                    acc[p] += wv * r[p]
    return out


def qdepthwise_reference(x, w, zx, zw, bias, stride, pads, dil) -> np.ndarray:
    """NumPy twin of the prepared depthwise path: (N, C, H, W) codes → int64 sums (N, C, Ho, Wo)."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    xs = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ws = w[:, 0].astype(np.int64) - np.broadcast_to(np.asarray(zw, np.int64), (c,))[:, None, None]
    ho = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.broadcast_to((np.zeros(c, np.int64) if bias is None else bias.astype(np.int64))[None, :, None, None],
                          (n, c, ho, wo)).copy()
    for i in range(kh):
        for j in range(kw):
            out += xs[:, :, i * dil[0]:i * dil[0] + stride[0] * (ho - 1) + 1:stride[0],
                      j * dil[1]:j * dil[1] + stride[1] * (wo - 1) + 1:stride[1]] * ws[None, :, i, j, None, None]
    return out


def _int_conv_operands_ok(w, wz, bias, attrs) -> bool:
    """Whether a constant integer conv weight (1-D/2-D, 8-bit), its zero point (scalar or per output
    channel, same dtype), int32 bias (O,) and kernel_shape attribute fit the prepared integer convs."""
    if w is None or w.ndim not in (3, 4) or w.dtype.name not in ("uint8", "int8"):
        return False
    o = w.shape[0]
    if wz is not None and (not isinstance(wz, np.ndarray) or wz.dtype != w.dtype
                           or not (wz.size == 1 or wz.shape[-1] == wz.size == o)):
        return False
    if bias is not None and (bias.dtype != np.int32 or bias.shape != (o,)):
        return False
    return "kernel_shape" not in attrs or tuple(attrs["kernel_shape"]) == tuple(w.shape[2:])


def _int_conv(w, wz, bias, attrs, ex):
    """acc(x, attrs) -> int accumulators (N, O, *spatial) of an integer 1-D/2-D conv with the constant
    weight w, or None when x does not fit (the generic op then runs). Depthwise convolutions whose
    sums provably fit int32 and the accumulator use `qdepthwise_wide`; the rest `conv2d_int`."""
    from qsim.onnxrun.ops import _kernels, int_range
    from qsim.onnxrun.spatial import window

    if not _int_conv_operands_ok(w, wz, bias, attrs):
        return None
    o = w.shape[0]
    groups = int(attrs.get("group", 1))
    kernel = w.shape[2:]
    nd = w.ndim - 2
    w4 = np.ascontiguousarray(w if nd == 2 else w[:, :, None, :])
    zw = 0 if wz is None else (int(wz.reshape(-1)[0]) if wz.size == 1 else wz.reshape(-1).astype(np.int64))
    acc_bits, overflow = ex.options["acc_bits"], ex.options["overflow"]
    hi_acc = (1 << (acc_bits - 1)) - 1
    depthwise = w.shape[1] == 1 and groups == o and o > 1
    if depthwise:
        wsh = w4[:, 0].astype(np.int64) - np.broadcast_to(np.asarray(zw, np.int64), (o,))[:, None, None]
        max_w = int(np.abs(wsh).max(initial=0))
        bias_max = 0 if bias is None else int(np.abs(bias.astype(np.int64)).max(initial=0))
        w_dw = wsh.astype(np.int32)
        b_dw = np.zeros(o, np.int32) if bias is None else bias.astype(np.int32)
    if groups == 1:  # exact float32 products when every partial sum provably stays below 2^24
        wsh1 = w4.reshape(o, -1).astype(np.int64) - np.broadcast_to(np.asarray(zw, np.int64), (o,))[:, None]
        max_w1 = int(np.abs(wsh1).max(initial=0))
        bias_max1 = 0 if bias is None else int(np.abs(bias.astype(np.int64)).max(initial=0))
        w_f32 = wsh1.astype(np.float32)
        b_f32 = None if bias is None else bias.astype(np.float32)[:, None]
    k = _kernels()
    wk = w4
    if groups == 1 and hasattr(k, "pack_weights"):  # packed once, like ORT's prepacked initializers
        try:
            wk = k.pack_weights(w4)
        except (ValueError, TypeError):
            wk = w4
    geo_cache: dict = {}

    def acc(x, attrs_, ctx, zxv):
        if x.ndim != nd + 2 or x.shape[1] != w.shape[1] * groups:
            return None
        x4 = x if nd == 2 else x[:, :, None, :]
        geo = geo_cache.get(x.shape[2:])
        if geo is None:
            try:
                win = window(attrs_, x.shape[2:], kernel)
            except ValueError:
                return None
            if nd == 1:
                geo = dict(stride=(1, win.strides[0]), padding=(0, win.begin[0], 0, win.end[0]),
                           dilation=(1, win.dilations[0]), groups=groups)
            else:
                geo = dict(stride=win.strides, padding=(win.begin[0], win.begin[1], win.end[0], win.end[1]),
                           dilation=win.dilations, groups=groups)
            geo_cache[x.shape[2:]] = geo
        if depthwise:
            lo_x, hi_x = int_range(x.dtype)
            max_x = max(abs(lo_x - zxv), abs(hi_x - zxv))
            bound = bias_max + w4.shape[2] * w4.shape[3] * max_x * max_w
            if bound <= hi_acc and bound < 1 << 31:
                out = _depthwise_int(x4, zxv, w_dw, b_dw, geo)
                return out if nd == 2 else out[:, :, 0, :]
        if groups == 1:
            lo_x, hi_x = int_range(x.dtype)
            bound = bias_max1 + w_f32.shape[1] * max(abs(lo_x - zxv), abs(hi_x - zxv)) * max_w1
            macs = w_f32.size * (x4.shape[0] * x4.shape[2] * x4.shape[3]) // (geo["stride"][0] * geo["stride"][1])
            # small products: BLAS float32 beats the integer kernel's per-call work (measured; larger: VNNI)
            if bound < F32_EXACT and bound <= hi_acc and macs <= FLOAT_PATH_MACS:
                out = _conv_int_f32(x4, zxv, w_f32, b_f32, w4.shape[2:], geo)
                return out if nd == 2 else out[:, :, 0, :]
        a, ovf = k.conv2d_int(np.ascontiguousarray(x4), wk, zxv, zw, bias, acc_bits=acc_bits, overflow=overflow,
                              **geo)
        ctx.overflows += int(ovf)
        a = np.asarray(a)
        return a if nd == 2 else a[:, :, 0, :]

    return acc


F32_EXACT = 1 << 24
FLOAT_PATH_MACS = 5_000_000


def _conv_int_f32(x4, zx, w_f32, b_f32, kernel, geo) -> np.ndarray:
    """Exact integer conv (groups = 1) as a float32 product: x − zx and w − zw are small integers
    and the caller has proven every partial sum below 2^24, so any summation order (BLAS) gives
    the exact integers; returns them as float32 (N, O, Ho, Wo), bias included."""
    from qsim.onnxrun.f32_ops import _im2col2d

    n, c, h, wd = x4.shape
    kh, kw = kernel
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = geo["stride"], geo["dilation"], geo["padding"]
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((n, w_f32.shape[0], ho * wo), np.float32)
    pointwise = kh == kw == 1 and sh == sw == 1 and not any((pt, pl, pb, pr))
    for i in range(n):
        xf = np.subtract(x4[i], np.float32(zx), dtype=np.float32)
        cols = xf.reshape(c, h * wd) if pointwise else _im2col2d(
            xf, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, np.empty((c * kh * kw, ho * wo), np.float32))
        np.matmul(w_f32, cols, out=out[i])
        if b_f32 is not None:
            out[i] += b_f32
    return out.reshape(n, w_f32.shape[0], ho, wo)


def _depthwise_int(x4, zx, w_dw, b_dw, geo) -> np.ndarray:
    n, c, h, wd = x4.shape
    kh, kw = w_dw.shape[1:]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = geo["stride"], geo["dilation"], geo["padding"]
    hp, wp = h + pt + pb, wd + pl + pr
    hf, wf = hp - (kh - 1) * dh, wp - (kw - 1) * dw
    ho, wo = (hf - 1) // sh + 1, (wf - 1) // sw + 1
    xp = np.zeros((c, hp + 1, wp), np.int32)
    full = np.empty((c, hf * wp), np.int32)
    out = np.empty((n, c, ho, wo), np.int32)
    for i in range(n):
        np.subtract(x4[i], np.int32(zx), out=xp[:, pt:pt + h, pl:pl + wd], dtype=np.int32)
        qdepthwise_wide(xp.reshape(c, -1), w_dw, b_dw, wp, dh, dw, hf, full)
        out[i] = full.reshape(c, hf, wp)[:, ::sh, :wf:sw]
    return out


POINTWISE_DIRECT_PIXELS = 16   # 1×1 convs on at most this many pixels (SE blocks): `pointwise_requant`,
POINTWISE_DIRECT_MACS = 800_000   # or with at most this many products (measured: faster than the float32
                                  # BLAS path below, slower above)
POINTWISE_GEMM_MACS = 100_000     # where the VNNI GEMM (`ConvGemmRequant`) runs, only this (measured: the GEMM
                                  # is faster above, whatever the pixel count)


def _fused_qconv(w, wz, bias, attrs, ex, xdt, zx, scale, zy, lo, hi, ydt):
    """run(x, attrs) -> the QLinearConv output codes in one Numba call (a few per image for the GEMM),
    or None when this x is not one of its cases (the caller then runs the general path): depthwise
    convolutions (`qsim.kernels.conv.depthwise_requant`), small 1×1 convolutions
    (`pointwise_requant`) and, on VNNI hosts, every other groups-1 convolution as one VNNI GEMM
    with the requantization in its epilogue (`ConvGemmRequant`), whenever no sum can leave the
    emulated accumulator nor int32 (their lanes), from x's dtype alone. Weight − zero point, int32 bias and the geometry per
    input shape are prepared once. None when no case can apply to this node."""
    from qsim.kernels.conv import ConvGemmRequant, depthwise_requant, pointwise_requant
    from qsim.onnxrun.ops import int_range
    from qsim.onnxrun.spatial import window

    if not _int_conv_operands_ok(w, wz, bias, attrs):
        return None
    o = w.shape[0]
    groups = int(attrs.get("group", 1))
    kernel = tuple(w.shape[2:])
    nd = w.ndim - 2
    kk = int(np.prod(kernel))
    depthwise = w.shape[1] == 1 and groups == o and o > 1
    if not (depthwise or groups == 1):
        return None
    zw = np.broadcast_to(np.asarray(0 if wz is None else wz.reshape(-1), np.int64), (o,))
    wsh = w.reshape(o, -1).astype(np.int64) - zw[:, None]
    b64 = np.zeros(o, np.int64) if bias is None else bias.astype(np.int64)
    lo_x, hi_x = int_range(xdt)
    max_x = max(abs(lo_x - zx), abs(hi_x - zx))
    bound = int(np.abs(b64).max(initial=0)) + wsh.shape[1] * max_x * int(np.abs(wsh).max(initial=0))
    hi_acc = (1 << (ex.options["acc_bits"] - 1)) - 1
    if bound > hi_acc or bound >= 1 << 31:
        return None                     # an overflow is possible: the emulating path counts it
    if depthwise:
        w32 = np.ascontiguousarray(wsh.astype(np.int32).reshape((o, 1) + kernel if nd == 1 else (o,) + kernel))
    else:
        w32 = np.ascontiguousarray(wsh.astype(np.int32).T)     # (C, O)
    b32 = b64.astype(np.int32)
    gemm = None
    if not depthwise:
        try:
            gemm = ConvGemmRequant(w if nd == 2 else w[:, :, None, :], zw, b64, xdt, scale, zy, lo, hi)
        except ValueError:              # no VNNI here, or K > K_MAX
            if kk != 1:
                return None
    pw_macs = POINTWISE_DIRECT_MACS if gemm is None else POINTWISE_GEMM_MACS
    geo_cache: dict = {}

    def run(x, attrs_):
        if x.ndim != nd + 2 or x.shape[1] != w.shape[1] * groups:
            return None
        geo = geo_cache.get(x.shape)
        if geo is None:
            try:
                win = window(attrs_, x.shape[2:], kernel)
            except ValueError:
                return None
            st, dl, bg, en, osz = (tuple(win.strides), tuple(win.dilations), tuple(win.begin), tuple(win.end),
                                   tuple(win.out))
            if nd == 1:
                st, dl, bg, en, osz = (1,) + st, (1,) + dl, (0,) + bg, (0,) + en, (1,) + osz
            n_pix = x.shape[0] * int(np.prod(x.shape[2:]))
            if depthwise:
                geo = ("dw", (x.shape[0], o) + osz, st, dl, bg)
            elif kk == 1 and st == (1, 1) and not any(bg) and not any(en) and (
                    n_pix * wsh.size <= pw_macs or (gemm is None and n_pix <= POINTWISE_DIRECT_PIXELS)):
                geo = ("pw", (x.shape[0], o) + osz)
            elif gemm is not None:
                geo = ("gemm", (x.shape[0], o) + osz, (kernel if nd == 2 else (1,) + kernel), st, dl,
                       (bg[0], bg[1], en[0], en[1]))
            else:
                geo = ("no",)
            geo_cache[x.shape] = geo
        if geo[0] == "no":
            return None
        xc = np.ascontiguousarray(x)
        out = np.empty(geo[1], ydt)
        if geo[0] == "dw":
            st, dl, bg = geo[2], geo[3], geo[4]
            x4 = xc if nd == 2 else xc.reshape(x.shape[0], x.shape[1], 1, x.shape[2])
            depthwise_requant(x4, zx, w32, b32, scale, zy, lo, hi, st[0], st[1], dl[0], dl[1], bg[0], bg[1],
                              out)
        elif geo[0] == "pw":
            pointwise_requant(xc.reshape(x.shape[0], x.shape[1], -1), zx, w32, b32, scale, zy, lo, hi,
                              out.reshape(x.shape[0], o, -1))
        else:
            x4 = xc if nd == 2 else xc.reshape(x.shape[0], x.shape[1], 1, x.shape[2])
            o2 = out.reshape(x.shape[0], o, -1)
            for i in range(x.shape[0]):
                gemm(x4[i], zx, geo[2], geo[3], geo[4], geo[5], o2[i])
        return out if nd == 2 else out.reshape(out.shape[0], o, -1)

    return run


def _spec_qlinear_conv(generic, node, attrs, consts, ex):
    from qsim.onnxrun.ops import int_range

    if len(consts) < 8 or ex.options["pair_saturate16"]:
        return None
    _, xs, xz, w, ws, wz, ys, yz = consts[:8]
    bias = consts[8] if len(consts) > 8 else None
    if len(node.input) > 8 and node.input[8] and bias is None:
        return None  # a bias computed at run time: the generic op
    sx, sy = _scalar_scale(xs), _scalar_scale(ys)
    zx, zy = _scalar_zp(xz), _scalar_zp(yz)
    if sx is None or sy is None or zx is None or zy is None or zy[1] not in _QDTYPES[:2] or w is None:
        return None
    o = w.shape[0]
    if not isinstance(ws, np.ndarray) or ws.dtype != _F32 or not (ws.size == 1 or ws.shape[-1] == ws.size == o) \
            or not (np.all(np.isfinite(ws)) and np.all(ws > 0)):
        return None
    xdt = zx[1]
    if xdt is None or xdt.name not in ("uint8", "int8"):
        return None
    acc_fn = _int_conv(w, wz, bias, attrs, ex)
    if acc_fn is None:
        return None
    scale = ((F32(sx) * ws.reshape(-1).astype(F32)) / F32(sy)).astype(F32)
    if not np.all(np.isfinite(scale)):
        return None
    scale = np.ascontiguousarray(np.broadcast_to(scale, (o,)))
    lo, hi = int_range(zy[1])
    ydt = zy[1]
    zxv, zyv = zx[0], zy[0]
    fused = _fused_qconv(w, wz, bias, attrs, ex, xdt, zxv, scale, zyv, lo, hi, ydt)

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype != xdt:
            return generic(ctx, args, attrs_)
        if fused is not None:
            out = fused(x, attrs_)
            if out is not None:
                ctx.integer_node = True
                return [out]
        acc = acc_fn(x, attrs_, ctx, zxv)
        if acc is None:
            return generic(ctx, args, attrs_)
        ctx.integer_node = True
        out = np.empty(acc.shape, ydt)
        requant_nchw(acc.reshape(acc.shape[0], acc.shape[1], -1), scale, zyv, lo, hi,
                     out.reshape(acc.shape[0], acc.shape[1], -1))
        return [out]

    fast.qconv = (w, wz, bias, xdt, zxv, scale, zyv, lo, hi, ydt)  # for exactconv.spec_qlinear_conv
    return fast


def _spec_conv_integer(generic, node, attrs, consts, ex):
    consts = consts + [None] * (4 - len(consts))
    _, w, xz, wz = consts[:4]
    if len(node.input) > 3 and node.input[3] and wz is None:
        return None
    zx_runtime = len(node.input) > 2 and bool(node.input[2]) and xz is None  # DynamicQuantizeLinear's zero point
    zx = (0, None) if zx_runtime else _scalar_zp(xz)
    if zx is None or w is None:
        return None
    acc_fn = _int_conv(w, wz, None, attrs, ex)
    if acc_fn is None:
        return None

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype.name not in ("uint8", "int8"):
            return generic(ctx, args, attrs_)
        if zx_runtime:
            z = args[2]
            if z is None or z.dtype != x.dtype or z.size != 1:
                return generic(ctx, args, attrs_)
            zxv = int(z.reshape(-1)[0])
        else:
            if zx[1] is not None and x.dtype != zx[1]:
                return generic(ctx, args, attrs_)
            zxv = zx[0]
        acc = acc_fn(x, attrs_, ctx, zxv)
        if acc is None:
            return generic(ctx, args, attrs_)
        ctx.integer_node = True
        return [acc.astype(np.int32)]

    return fast


@njit(cache=True, nogil=True)
def requant_rows(acc, scale, zp, lo, hi, out):
    """out[m, n] = clamp(rne(fl32(acc[m, n]) · scale[n]) + zp, lo, hi): `requantize(fp32_rne)`
    with the weight scale per column (channel_axis −1); acc may be larger than out (its top-left
    block is read: a padded kernel result)."""
    m_, n_ = out.shape
    for m in range(m_):
        for n in range(n_):
            v = np.rint(np.float32(acc[m, n]) * scale[n]) + zp
            out[m, n] = lo if v < lo else (hi if v > hi else np.int64(v))
    return out


def _padded_base(acc: np.ndarray) -> np.ndarray:
    """The C-contiguous 2-D array whose top-left block the (M, N) view acc is (a packed kernel's
    padded result), else acc: `requant_rows` reads it in its fast contiguous layout."""
    base = acc.base
    if acc.flags.c_contiguous or not isinstance(base, np.ndarray) or base.ndim != 2 \
            or not base.flags.c_contiguous or base.dtype != acc.dtype or acc.strides != base.strides \
            or base.shape[0] < acc.shape[0] or base.shape[1] < acc.shape[1] or acc.ndim != 2 \
            or acc.__array_interface__["data"][0] != base.__array_interface__["data"][0]:
        return acc
    return base


def _qlinear_matmul_runtime_b(generic, consts, ex):
    """QLinearMatMul of two activations (attention's Q·Kᵀ and P·V) with constant per-tensor scales and
    zero points: when every partial sum provably stays below 2^24 (and within the accumulator), the
    exact sums are one batched float32 product of a − za and b − zb (any order gives the same
    integers), then the fp32_rne requantization of `requant_rows`; else the generic op."""
    from qsim.onnxrun.ops import int_range

    _, as_, az, _, bs, bz, ys, yz = consts[:8]
    sa, sb, sy = _scalar_scale(as_), _scalar_scale(bs), _scalar_scale(ys)
    za, zb, zy = _scalar_zp(az), _scalar_zp(bz), _scalar_zp(yz)
    if None in (sa, sb, sy, za, zb, zy) or za[1] not in _QDTYPES[:2] or zb[1] not in _QDTYPES[:2] \
            or zy[1] not in _QDTYPES[:2]:
        return None
    adt, bdt, ydt = za[1], zb[1], zy[1]
    scale = F32(F32(sa) * F32(sb)) / F32(sy)
    if not np.isfinite(scale):
        return None
    lo, hi = int_range(ydt)
    (lo_a, hi_a), (lo_b, hi_b) = int_range(adt), int_range(bdt)
    max_ab = max(abs(lo_a - za[0]), abs(hi_a - za[0])) * max(abs(lo_b - zb[0]), abs(hi_b - zb[0]))
    hi_acc = (1 << (ex.options["acc_bits"] - 1)) - 1
    k_max = min(F32_EXACT - 1, hi_acc) // max_ab
    fza, fzb = F32(za[0]), F32(zb[0])
    scales: dict = {}

    def fast(ctx, args, attrs_):
        a, b = args[0], args[3]
        if a.dtype != adt or b.dtype != bdt or a.ndim < 2 or b.ndim < 2 or a.shape[-1] > k_max \
                or a.shape[-1] != b.shape[-2] or a.size == 0 or b.size == 0:
            return generic(ctx, args, attrs_)
        try:
            acc = np.matmul(np.subtract(a, fza, dtype=np.float32), np.subtract(b, fzb, dtype=np.float32))
        except ValueError:
            return generic(ctx, args, attrs_)
        ctx.integer_node = True
        n = acc.shape[-1]
        sv = scales.get(n)
        if sv is None:
            sv = scales[n] = np.full(n, scale, np.float32)
        out = np.empty(acc.shape, ydt)
        requant_rows(acc.reshape(-1, n), sv, zy[0], lo, hi, out.reshape(-1, n))
        return [out]

    return fast


def _spec_qlinear_matmul(generic, node, attrs, consts, ex):
    from qsim.onnxrun.ops import _kernels, int_range

    if len(consts) < 8 or ex.options["pair_saturate16"]:
        return None
    _, as_, az, b, bs, bz, ys, yz = consts[:8]
    if b is None and len(node.input) > 3 and node.input[3]:  # b computed at run time
        return _qlinear_matmul_runtime_b(generic, consts, ex)
    if b is None or b.ndim != 2 or b.dtype.name not in ("uint8", "int8") or b.shape[0] == 0:
        return None
    sa, sy = _scalar_scale(as_), _scalar_scale(ys)
    za, zy = _scalar_zp(az), _scalar_zp(yz)
    if sa is None or sy is None or za is None or zy is None or za[1] is None or zy[1] not in _QDTYPES[:2] \
            or za[1] not in _QDTYPES[:2]:
        return None
    n = b.shape[1]
    if not isinstance(bs, np.ndarray) or bs.dtype != _F32 or not (bs.size == 1 or bs.shape[-1] == bs.size == n) \
            or not (np.all(np.isfinite(bs)) and np.all(bs > 0)):
        return None
    if bz is not None and (not isinstance(bz, np.ndarray) or bz.dtype != b.dtype
                           or not (bz.size == 1 or bz.shape[-1] == bz.size == n)):
        return None
    scale = ((F32(sa) * bs.reshape(-1).astype(F32)) / F32(sy)).astype(F32)
    if not np.all(np.isfinite(scale)):
        return None
    scale = np.ascontiguousarray(np.broadcast_to(scale, (n,)))
    zb = 0 if bz is None else (int(bz.reshape(-1)[0]) if bz.size == 1 else bz.reshape(-1).astype(np.int64))
    k = _kernels()
    try:
        pw = k.pack_weights(b) if hasattr(k, "pack_weights") else b
    except (ValueError, TypeError):
        pw = b
    adt, ydt = za[1], zy[1]
    lo, hi = int_range(ydt)
    acc_bits, overflow = ex.options["acc_bits"], ex.options["overflow"]
    bsh = b.astype(np.int64) - np.broadcast_to(np.asarray(zb, np.int64), (n,))[None, :]
    lo_a, hi_a = int_range(adt)
    bound = b.shape[0] * max(abs(lo_a - za[0]), abs(hi_a - za[0])) * int(np.abs(bsh).max(initial=0))
    # exact float32 product when every partial sum provably stays below 2^24 (see _conv_int_f32)
    b_f32 = bsh.astype(np.float32) if bound < F32_EXACT and bound <= (1 << (acc_bits - 1)) - 1 else None
    if getattr(pw, "packed", False):
        b_f32 = None   # the packed VNNI product is faster at every size measured (10×120×360: 5 vs 15 µs)

    def fast(ctx, args, attrs_):
        a = args[0]
        if a.dtype != adt or a.ndim < 2 or a.shape[-1] != b.shape[0]:
            return generic(ctx, args, attrs_)
        ctx.integer_node = True
        a2 = np.ascontiguousarray(a).reshape(-1, a.shape[-1])
        if b_f32 is not None and a2.shape[0] * b_f32.size <= FLOAT_PATH_MACS:
            acc = np.subtract(a2, np.float32(za[0]), dtype=np.float32) @ b_f32
            out = np.empty((a2.shape[0], n), ydt)
            requant_rows(acc, scale, zy[0], lo, hi, out)
            return [out.reshape(a.shape[:-1] + (n,))]
        acc, ovf = k.matmul_int(a2, pw, za[0], zb, acc_bits=acc_bits, overflow=overflow)
        ctx.overflows += int(ovf)
        out = np.empty((a2.shape[0], n), ydt)
        requant_rows(_padded_base(np.asarray(acc)), scale, zy[0], lo, hi, out)
        return [out.reshape(a.shape[:-1] + (n,))]

    return fast
