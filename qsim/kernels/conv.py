"""Integer 2-D convolution (NCHW, OIHW) as im2col + the emulated-accumulator matmul.

Column order k = (input channel within the group, kernel row, kernel column), so the
accumulation order is bias, then that k ascending (see `qsim.kernels.accumulate`).
Padding holds the input zero point: padded taps add exactly 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.kernels._checks import (
    check_acc, check_bias, check_codes, check_product_fits, check_zero_point, conv_output_hw, max_abs_shifted,
    type_max_abs,
)
from qsim.kernels.exact import F32_EXACT, VNNI_WIDTH
from qsim.kernels.vnni import K_MAX as VNNI_K_MAX
from qsim.kernels.vnni import gemm_vnni256, gemm_vnni512, pack_weight, vnni_conv
from qsim.kernels.gemm import matmul_core, operand_bounds
from qsim.kernels.prepack import PackedWeights, packed_conv


def bias_max_of(bias) -> int:
    return 0 if bias is None else int(np.abs(bias).max(initial=0))


def _pair(v, name: str, minimum: int) -> tuple[int, int]:
    t = tuple(int(x) for x in (v if np.ndim(v) else (v, v)))
    if len(t) != 2 or min(t) < minimum:
        raise ValueError(f"{name} must be two integers >= {minimum}, got {v!r}")
    return t


def _padding(v) -> tuple[int, int, int, int]:
    t = tuple(int(x) for x in (v if np.ndim(v) else (v,) * 4))
    if len(t) != 4 or min(t) < 0:
        raise ValueError(f"padding must be (top, left, bottom, right) non-negative integers, got {v!r}")
    return t


def im2col(x, kh: int, kw: int, stride, padding, dilation, pad_value) -> tuple[np.ndarray, int, int]:
    """(N·Ho·Wo, C·kh·kw) patches in x's dtype, padded with `pad_value`; columns (c, i, j)."""
    N, C, H, W = x.shape
    top, left, bottom, right = padding
    Hp, Wp = H + top + bottom, W + left + right
    Ho = (Hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (Wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"kernel {kh}x{kw} (dilation {dilation}) does not fit the padded input {Hp}x{Wp}")
    if any(padding):
        xp = np.full((N, C, Hp, Wp), pad_value, dtype=x.dtype)
        xp[:, :, top:top + H, left:left + W] = x
    else:
        xp = np.ascontiguousarray(x)
    sN, sC, sH, sW = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp, shape=(N, Ho, Wo, C, kh, kw),
        strides=(sN, sH * stride[0], sW * stride[1], sC, sH * dilation[0], sW * dilation[1]), writeable=False)
    return view.reshape(N * Ho * Wo, C * kh * kw), Ho, Wo


def _depthwise_exact(x, w, zx: int, zw, bias, stride, padding, dilation, bits: int) -> np.ndarray:
    """One input channel per group and no overflow possible (caller's bound check): the
    Numba tap loop below, in int32 lanes when the accumulator is ≤ 32 bits."""
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    top, left, bottom, right = padding
    Ho, Wo = conv_output_hw(H, W, (kh, kw), stride, padding, dilation)
    dt = np.int32 if bits <= 32 else np.int64
    xp = np.zeros((N, C, H + top + bottom, W + left + right), dt)      # padding holds the zero point: 0 after shift
    xp[:, :, top:top + H, left:left + W] = x
    xp[:, :, top:top + H, left:left + W] -= zx
    wz = (w[:, 0].astype(np.int64) - np.asarray(zw, np.int64)[:, None, None]).astype(dt)
    b = np.zeros(O, dt) if bias is None else np.asarray(bias).astype(dt)
    return depthwise_taps(xp, wz, b, stride[0], stride[1], dilation[0], dilation[1], Ho, Wo)


@njit(cache=True)
def depthwise_taps(xp, wz, bias, sh, sw, dh, dw, Ho, Wo):
    """out[n, o] = bias[o] + Σ_{i,j} xp[n, o // mult, i·dh + sh·y, j·dw + sw·x] · wz[o, i, j]."""
    N, C = xp.shape[0], xp.shape[1]
    O, kh, kw = wz.shape
    mult = O // C
    out = np.empty((N, O, Ho, Wo), xp.dtype)
    for n in range(N):
        for o in range(O):
            c = o // mult
            for y in range(Ho):
                for x in range(Wo):
                    out[n, o, y, x] = bias[o]
                for i in range(kh):
                    row = i * dh + sh * y
                    for j in range(kw):
                        wv = wz[o, i, j]
                        c0 = j * dw
                        for x in range(Wo):
                            out[n, o, y, x] += xp[n, c, row, c0 + sw * x] * wv
    return out


def depthwise_taps_reference(xp, wz, bias, sh, sw, dh, dw, Ho, Wo) -> np.ndarray:
    """NumPy twin of `depthwise_taps` (int64)."""
    O, kh, kw = wz.shape
    xs = xp[:, np.arange(O) // (O // xp.shape[1])].astype(np.int64)
    out = np.broadcast_to(bias.astype(np.int64)[None, :, None, None], (xp.shape[0], O, Ho, Wo)).copy()
    for i in range(kh):
        for j in range(kw):
            out += xs[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw] \
                * wz[None, :, i, j, None, None].astype(np.int64)
    return out


def _nchw(acc, N: int, Ho: int, Wo: int, O: int) -> np.ndarray:
    """(N, O, Ho, Wo) from the rows (n, y, x) × columns o of acc's top-left block (NumPy's
    transposing copy measured faster than a Numba loop here, and needs no compile)."""
    return np.ascontiguousarray(acc[:N * Ho * Wo, :O].reshape(N, Ho, Wo, O).transpose(0, 3, 1, 2))


def conv2d_int(x, w, x_zero_point=0, w_zero_point=0, bias=None, *, stride=(1, 1), padding=(0, 0, 0, 0),
               dilation=(1, 1), groups=1, acc_bits=32, overflow="wrap"):
    """Integer conv: x (N, C, H, W) codes, w (O, C/groups, kH, kW) codes → (acc (N, O, Ho, Wo), overflows).

    x_zero_point scalar; w_zero_point scalar or (O,); bias (O,) int32; padding
    (top, left, bottom, right) filled with x_zero_point; groups == C is depthwise (O/C is the
    channel multiplier). Accumulator emulation as in `matmul_int`."""
    pw = w if isinstance(w, PackedWeights) else None     # `qsim.kernels.pack_weights`: packed once
    x = check_codes(x, "x")
    w = check_codes(pw.array if pw is not None else w, "w")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"w must be 4-D (O, C/groups, kH, kW), got shape {w.shape}")
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    if C % groups or O % groups or Cg != C // groups:
        raise ValueError(f"shape mismatch: x has C={C}, w has {O} outputs x {Cg} inputs; with groups={groups} "
                         f"need C % groups == 0, O % groups == 0 and w.shape[1] == C/groups")
    stride = _pair(stride, "stride", 1)
    dilation = _pair(dilation, "dilation", 1)
    padding = _padding(padding)
    zx = check_zero_point(x_zero_point, x, "x_zero_point")
    zw = np.broadcast_to(check_zero_point(w_zero_point, w, "w_zero_point", (O,)), (O,))
    bias = check_bias(bias, O)
    bits, _, hi = check_acc(acc_bits, overflow)
    w2 = w.reshape(O, Cg * kh * kw)
    vnni = bool(VNNI_WIDTH) and x.dtype.itemsize == 1 and w.dtype.itemsize == 1 and groups == 1
    if pw is not None and vnni and pw.packed and pw.width == VNNI_WIDTH and type_max_abs(x.dtype, zx) is not None:
        max_x, max_w = type_max_abs(x.dtype, zx), pw.max_abs(zw)            # the weight's range is known
        if bias_max_of(bias) + Cg * kh * kw * max_x * max_w > hi:
            max_x = max_abs_shifted(x, zx)
    else:
        max_x, max_w = operand_bounds(x, zx, w2, zw, 1, Cg * kh * kw, bias, hi, not vnni)
    check_product_fits(max_x, max_w, hi, bits)
    Og, Kg = O // groups, Cg * kh * kw
    bias_max = 0 if bias is None else int(np.abs(bias).max(initial=0))
    no_overflow = bias_max + Kg * max_x * max_w <= hi
    if Cg == 1 and groups > 1 and no_overflow:  # true depthwise; a 1-channel input is faster as a GEMM
        return _depthwise_exact(x, w, int(zx), zw, bias, stride, padding, dilation, bits), 0
    if vnni and no_overflow and Kg <= VNNI_K_MAX and bias_max + Kg * max_x * max_w < 1 << 31 and bits <= 32:
        # VNNI: patches packed straight from x (no im2col copy), bias in the int32 epilogue.
        if pw is not None and pw.packed and pw.width == VNNI_WIDTH:
            zw_arg = int(zw[0]) if O and np.ndim(w_zero_point) == 0 else zw
            acc, Ho, Wo = packed_conv(x, pw, int(zx), zw_arg, bias, (kh, kw), stride, padding, dilation)
            return _nchw(acc, N, Ho, Wo, O), 0
        acc, Ho, Wo = vnni_conv(x, w2, int(zx), zw, bias, (kh, kw), stride, padding, dilation, VNNI_WIDTH)
        return _nchw(acc, N, Ho, Wo, O), 0
    cols, Ho, Wo = im2col(x, kh, kw, stride, padding, dilation, int(zx))
    if groups > 1 and no_overflow and Kg * max_x * max_w <= F32_EXACT:
        # No overflow possible and every group's sum is an exact float32: one batched product.
        P = N * Ho * Wo
        xf = cols.reshape(P, groups, Kg).transpose(1, 0, 2).astype(np.float32) - np.float32(int(zx))
        wf = (w2.astype(np.float32) - zw.astype(np.float32)[:, None]).reshape(groups, Og, Kg).transpose(0, 2, 1)
        acc = np.matmul(xf, wf).transpose(1, 0, 2).reshape(P, O).astype(np.int64)
        if bias is not None:
            acc += bias[None, :]
        count = 0
    elif groups == 1:
        acc, count = matmul_core(cols, np.ascontiguousarray(w2.T), int(zx), zw, bias, bits, overflow == "saturate",
                                 max_x, max_w)
    else:
        acc = np.empty((N * Ho * Wo, O), np.int64)
        count = 0
        for g in range(groups):
            sl = slice(g * Og, (g + 1) * Og)
            part, c = matmul_core(np.ascontiguousarray(cols[:, g * Kg:(g + 1) * Kg]), np.ascontiguousarray(w2[sl].T),
                                  int(zx), zw[sl], None if bias is None else bias[sl], bits, overflow == "saturate",
                                  max_x, max_w)
            acc[:, sl] = part
            count += c
    acc = acc.reshape(N, Ho, Wo, O).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(acc, dtype=np.int32 if bits <= 32 else np.int64), count


# -- fused integer conv + fp32_rne requantization (the prepared QLinearConv of `qsim.onnxrun.qconv`) ---------------
@njit(cache=True, nogil=True)
def depthwise_requant(x, zx, w, bias, scale, zy, lo, hi, sh, sw, dh, dw, pt, pl, out):
    """Depthwise QLinearConv in one pass, one input channel per output channel:
    acc[n, c, y, q] = bias[c] + Σ_{i,j} w[c, i, j] · (x[n, c, y·sh + i·dh − pt, q·sw + j·dw − pl] − zx)
    (taps outside x add 0: the padding holds the zero point), then
    out = clamp(rne(fl32(acc) · scale[c]) + zy, lo, hi) as `requant_nchw` of `qsim.onnxrun.qconv`.
    x (N, C, H, W) 8-bit codes, w (C, kh, kw) int32 = w − w_zp, bias (C,) int32, out (N, C, Ho, Wo).
    The caller has proven that no partial sum can leave int32 (then every order gives the same
    integers as the emulated accumulator). One zero-padded int32 plane and one row of sums are the
    only work arrays."""
    N, C, H, W = x.shape
    kh, kw = w.shape[1], w.shape[2]
    Ho, Wo = out.shape[2], out.shape[3]
    Hp = max(H + pt, (Ho - 1) * sh + (kh - 1) * dh + 1) + 1      # a spare zero row for the wide mode
    Wp = max(W + pl, (Wo - 1) * sw + (kw - 1) * dw + 1)
    xp = np.zeros((Hp, Wp), np.int32)
    xpf = xp.reshape(Hp * Wp)
    # Three loop orders, the one with the fewest 16-lane steps (+ 2 per loop start; measured weights)
    # for this shape:
    # channels-last (small images, many channels): per output pixel and tap one loop over the
    # channels; wide: per channel and tap one loop over all Ho rows at once, sums kept on the
    # padded width at column stride 1 (row pitch sh·Wp; the columns past Wo and between strides
    # and the rows between strides are discarded); row: per channel, output row and tap one loop
    # over Wo.
    kk = kh * kw
    L_wide = ((Ho - 1) * sh + 1) * Wp
    cost_cl = 3 * Ho * Wo * kk * ((C + 15) // 16 + 2)
    cost_wide = C * kk * ((L_wide + 15) // 16 + 2)                                  # (three taps a pass:
    cost_row = C * Ho * kk * ((Wo + 15) // 16 + 2) * (1 if sw == 1 else 3)          # half the sum traffic)
    zx32 = np.int32(zx)
    if cost_cl <= cost_wide and cost_cl <= cost_row:
        xq = np.zeros((Hp, Wp, C), np.int32)
        wt = np.empty((kh, kw, C), np.int32)
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    wt[i, j, c] = w[c, i, j]
        accv = np.empty(C, np.int32)
        for n in range(N):
            for c in range(C):
                for y in range(H):
                    for q in range(W):
                        xq[pt + y, pl + q, c] = np.int32(x[n, c, y, q]) - zx32
            for yo in range(Ho):
                for xo in range(Wo):
                    for c in range(C):
                        accv[c] = bias[c]
                    for i in range(kh):
                        for j in range(kw):
                            r = xq[yo * sh + i * dh, xo * sw + j * dw]
                            wr = wt[i, j]
                            for c in range(C):
                                accv[c] += wr[c] * r[c]
                    for c in range(C):
                        v = np.rint(np.float32(accv[c]) * scale[c]) + zy
                        out[n, c, yo, xo] = lo if v < lo else (hi if v > hi else np.int64(v))
        return out
    wide = cost_wide < cost_row
    L = L_wide if wide else Wo
    acc = np.empty(L, np.int32)
    for n in range(N):
        for c in range(C):
            xc = x[n, c]
            for y in range(H):
                xr = xp[pt + y, pl:pl + W]       # slices: indices from range() need no wraparound test
                xs = xc[y]
                for q in range(W):
                    xr[q] = np.int32(xs[q]) - zx32
            s = scale[c]
            b = bias[c]
            oc = out[n, c]
            if wide:
                for q in range(L):
                    acc[q] = b
                for i in range(kh):
                    o = i * dh * Wp
                    j = 0
                    while j + 3 <= kw:               # three taps per pass over acc
                        w0, w1, w2 = w[c, i, j], w[c, i, j + 1], w[c, i, j + 2]
                        r0 = xpf[o + j * dw:o + j * dw + L]
                        r1 = xpf[o + (j + 1) * dw:o + (j + 1) * dw + L]
                        r2 = xpf[o + (j + 2) * dw:o + (j + 2) * dw + L]
                        for q in range(L):
                            acc[q] += w0 * r0[q] + w1 * r1[q] + w2 * r2[q]
                        j += 3
                    while j < kw:
                        wv = w[c, i, j]
                        r = xpf[o + j * dw:o + j * dw + L]
                        for q in range(L):
                            acc[q] += wv * r[q]
                        j += 1
                for yo in range(Ho):
                    orow = oc[yo]
                    if sw == 1:
                        ar = acc[yo * sh * Wp:yo * sh * Wp + Wo]
                        for q in range(Wo):
                            v = np.rint(np.float32(ar[q]) * s) + zy
                            orow[q] = lo if v < lo else (hi if v > hi else np.int64(v))
                    else:
                        a0 = yo * sh * Wp
                        for q in range(Wo):
                            v = np.rint(np.float32(acc[a0 + q * sw]) * s) + zy
                            orow[q] = lo if v < lo else (hi if v > hi else np.int64(v))
                continue
            for yo in range(Ho):
                for q in range(Wo):
                    acc[q] = b
                for i in range(kh):
                    xr = xp[yo * sh + i * dh]
                    j = 0
                    if sw == 1:
                        while j + 3 <= kw:           # three taps per pass over acc
                            w0, w1, w2 = w[c, i, j], w[c, i, j + 1], w[c, i, j + 2]
                            r0 = xr[j * dw:j * dw + Wo]
                            r1 = xr[(j + 1) * dw:(j + 1) * dw + Wo]
                            r2 = xr[(j + 2) * dw:(j + 2) * dw + Wo]
                            for q in range(Wo):
                                acc[q] += w0 * r0[q] + w1 * r1[q] + w2 * r2[q]
                            j += 3
                    while j < kw:
                        wv = w[c, i, j]
                        r = xr[j * dw:j * dw + sw * (Wo - 1) + 1:sw]
                        for q in range(Wo):
                            acc[q] += wv * r[q]
                        j += 1
                orow = oc[yo]
                for q in range(Wo):
                    v = np.rint(np.float32(acc[q]) * s) + zy
                    orow[q] = lo if v < lo else (hi if v > hi else np.int64(v))
    return out


def depthwise_requant_reference(x, zx, w, bias, scale, zy, lo, hi, sh, sw, dh, dw, pt, pl, out) -> np.ndarray:
    """NumPy twin of `depthwise_requant` (int64 sums, then the same float32 requantization)."""
    N, C, H, W = x.shape
    kh, kw = w.shape[1:]
    Ho, Wo = out.shape[2:]
    Hp = max(H + pt, (Ho - 1) * sh + (kh - 1) * dh + 1)
    Wp = max(W + pl, (Wo - 1) * sw + (kw - 1) * dw + 1)
    xp = np.zeros((N, C, Hp, Wp), np.int64)
    xp[:, :, pt:pt + H, pl:pl + W] = x.astype(np.int64) - zx
    acc = np.broadcast_to(bias.astype(np.int64)[None, :, None, None], (N, C, Ho, Wo)).copy()
    for i in range(kh):
        for j in range(kw):
            acc += xp[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw] \
                * w[None, :, i, j, None, None].astype(np.int64)
    y = np.rint(acc.astype(np.float32) * scale.astype(np.float32)[None, :, None, None]).astype(np.float64) + zy
    out[...] = np.clip(y, lo, hi).astype(np.int64)
    return out


@njit(cache=True, nogil=True)
def pointwise_requant(x, zx, wt, bias, scale, zy, lo, hi, out):
    """A 1×1 QLinearConv (stride 1, no padding, groups 1) in one pass:
    out[n, o, p] = clamp(rne(fl32(bias[o] + Σ_c wt[c, o] · (x[n, c, p] − zx)) · scale[o]) + zy, lo, hi).
    x (N, C, P) 8-bit codes, wt (C, O) int32 = (w − w_zp) transposed, bias (O,) int32, out (N, O, P). The
    caller has proven that no partial sum can leave int32 (then they are the emulated accumulator's
    values). Four input channels per pass over the sums of either all output channels of one pixel
    or all pixels of one output channel, whichever takes fewer 16-lane steps."""
    N, C, P = x.shape
    O = wt.shape[1]
    zx32 = np.int32(zx)
    C4 = C - C % 4
    xs = np.empty((C, P), np.int32)
    by_pixel = P * ((O + 15) // 16 + 2) <= O * ((P + 15) // 16 + 2)
    acc = np.empty(O if by_pixel else P, np.int32)
    for n in range(N):
        for c in range(C):
            xr = xs[c]
            xc = x[n, c]
            for p in range(P):
                xr[p] = np.int32(xc[p]) - zx32
        if by_pixel:
            for p in range(P):
                for o in range(O):
                    acc[o] = bias[o]
                for c in range(0, C4, 4):
                    x0, x1, x2, x3 = xs[c, p], xs[c + 1, p], xs[c + 2, p], xs[c + 3, p]
                    r0, r1, r2, r3 = wt[c], wt[c + 1], wt[c + 2], wt[c + 3]
                    for o in range(O):
                        acc[o] += r0[o] * x0 + r1[o] * x1 + r2[o] * x2 + r3[o] * x3
                for c in range(C4, C):
                    xv = xs[c, p]
                    r = wt[c]
                    for o in range(O):
                        acc[o] += r[o] * xv
                for o in range(O):
                    v = np.rint(np.float32(acc[o]) * scale[o]) + zy
                    out[n, o, p] = lo if v < lo else (hi if v > hi else np.int64(v))
            continue
        for o in range(O):
            b = bias[o]
            for p in range(P):
                acc[p] = b
            for c in range(0, C4, 4):
                w0, w1, w2, w3 = wt[c, o], wt[c + 1, o], wt[c + 2, o], wt[c + 3, o]
                r0, r1, r2, r3 = xs[c], xs[c + 1], xs[c + 2], xs[c + 3]
                for p in range(P):
                    acc[p] += w0 * r0[p] + w1 * r1[p] + w2 * r2[p] + w3 * r3[p]
            for c in range(C4, C):
                wv = wt[c, o]
                r = xs[c]
                for p in range(P):
                    acc[p] += wv * r[p]
            s = scale[o]
            orow = out[n, o]
            for p in range(P):
                v = np.rint(np.float32(acc[p]) * s) + zy
                orow[p] = lo if v < lo else (hi if v > hi else np.int64(v))
    return out


def pointwise_requant_reference(x, zx, wt, bias, scale, zy, lo, hi, out) -> np.ndarray:
    """NumPy twin of `pointwise_requant`."""
    acc = np.einsum("co,ncp->nop", wt.astype(np.int64), x.astype(np.int64) - zx) + bias.astype(np.int64)[None, :, None]
    y = np.rint(acc.astype(np.float32) * scale.astype(np.float32)[None, :, None]).astype(np.float64) + zy
    out[...] = np.clip(y, lo, hi).astype(np.int64)
    return out


@njit(cache=True, nogil=True)
def gemm_requant_rows(raw, colsum, rowsum, za, zb, K, bias, scale, zy, lo, hi, wo, wp, out):
    """The epilogue of a conv as a VNNI GEMM weight (rows o) × patches (columns p'): with raw[o, p'] =
    Σ_k a'[o, k]·b'[k, p'] (exact int32), rowsum[o] = Σ_k a'[o, k], colsum[p'] = Σ_k b'[k, p'],
    v = raw − za[o]·colsum[p'] − zb·rowsum[o] + K·za[o]·zb + bias[o] (int64: Σ (w − zw)(x − zx) + bias) and
    out[o, y·wo + q] = clamp(rne(fl32(v) · scale[o]) + zy, lo, hi) at p' = y·wp + q, q < wo (wp > wo: the
    patches were taken on the padded width, the columns past wo are dropped). raw may be larger (padded)."""
    O, P = out.shape
    ho = P // wo
    for o in range(O):
        zo = za[o]
        c0 = K * zo * zb + bias[o] - zb * np.int64(rowsum[o])
        s = scale[o]
        for y in range(ho):
            r = raw[o, y * wp:y * wp + wo]
            cs = colsum[y * wp:y * wp + wo]
            orow = out[o, y * wo:(y + 1) * wo]
            for q in range(wo):
                v = np.int64(r[q]) - zo * np.int64(cs[q]) + c0
                f = np.rint(np.float32(v) * s) + zy
                orow[q] = lo if f < lo else (hi if f > hi else np.int64(f))
    return out


def gemm_requant_rows_reference(raw, colsum, rowsum, za, zb, K, bias, scale, zy, lo, hi, wo, wp, out) -> np.ndarray:
    """NumPy twin of `gemm_requant_rows`."""
    O, P = out.shape
    cols = (np.arange(P) // wo) * wp + np.arange(P) % wo
    za = za.astype(np.int64)[:, None]
    v = (raw[:O, cols].astype(np.int64) - za * colsum[None, cols].astype(np.int64)
         - zb * rowsum[:O, None].astype(np.int64) + K * za * zb + bias.astype(np.int64)[:, None])
    y = np.rint(v.astype(np.float32) * scale.astype(np.float32)[:, None]).astype(np.float64) + zy
    out[...] = np.clip(y, lo, hi).astype(np.int64)
    return out


class ConvGemmRequant:
    """A constant-weight QLinearConv (groups 1) as one VNNI GEMM per image: the weight (O, C·kh·kw) is
    the left operand, packed once into 12-row (6-row on ymm) strips with its row sums; each call
    gathers the patches of x as the (C·kh·kw, Ho·Wo) right operand (for stride 1 on the padded width,
    each patch row one contiguous run of the padded image; the extra columns are dropped in the
    epilogue), packs them into panels with their column sums (`pack_weight`), multiplies
    (`gemm_vnni512` / `gemm_vnni256`: exact int32 sums of a'·b' for K ≤ K_MAX) and finishes with
    the zero points, bias and requantization straight into the NCHW output (`gemm_requant_rows`).
    Only for 8-bit operands on a VNNI host, K ≤ K_MAX, and when the caller has proven that no exact
    sum leaves its accumulator (then the result equals `conv2d_int` + requantize)."""

    def __init__(self, w, zw, bias, xdt, scale, zy: int, lo: int, hi: int):
        from qsim.kernels.vnni import FLIP, YMM_TILE, ZMM_TILE, pack_a, pad_bytes

        O = w.shape[0]
        K = int(np.prod(w.shape[1:]))
        if not VNNI_WIDTH or w.dtype.itemsize != 1 or np.dtype(xdt).itemsize != 1 or not 0 < K <= VNNI_K_MAX:
            raise ValueError("no VNNI GEMM for this conv")
        self.width = VNNI_WIDTH
        tile = ZMM_TILE if VNNI_WIDTH == 512 else YMM_TILE
        self.rows, self.nr = tile[0], tile[1] * tile[2]
        self.K, self.Kq, self.O = K, -(-K // 4), O
        ca = 128 if w.dtype == np.int8 else 0                     # a' = w + ca (unsigned bytes)
        self.cb = 128 if np.dtype(xdt) == np.uint8 else 0          # b' = x − cb (signed bytes)
        fa = FLIP if ca else np.uint32(0)
        self.fb = FLIP if self.cb else np.uint32(0)
        self.pad_byte = 0x80 if self.cb else 0
        au = pad_bytes(np.ascontiguousarray(w.reshape(O, K)).view(np.uint8), fa, O, 4 * self.Kq)
        S = -(-O // self.rows)
        self.ap = np.empty((S, self.Kq, self.rows), np.uint32)
        self.rowsum = np.zeros(S * self.rows, np.int32)
        pack_a(au.reshape(O, 4 * self.Kq, 1, 1), False, fa, np.ones(8, np.int64), self.ap, self.rowsum, True)
        self.za = np.broadcast_to(np.asarray(zw, np.int64), (O,)) + ca
        self.za = np.ascontiguousarray(self.za)
        self.bias = np.zeros(O, np.int64) if bias is None else np.asarray(bias, np.int64).copy()
        self.scale = np.ascontiguousarray(scale, np.float32)
        self.zy, self.lo, self.hi = int(zy), int(lo), int(hi)

    def __call__(self, x, zx: int, kernel, stride, dilation, pads, out):
        """out (O, Ho·Wo) ← the requantized conv of one image x (C, H, W) (padding holds zx)."""
        c, h, w = x.shape
        kh, kw = kernel
        (sh, sw), (dh, dw), (pt, pl, pb, pr) = stride, dilation, pads
        P = out.shape[1]
        ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
        wo = P // ho
        (conv_gemm512 if self.width == 512 else conv_gemm256)(
            x.view(np.uint8), zx & 0xFF, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, self.ap, self.rowsum,
            self.za, np.int64(zx - self.cb), np.int64(self.K), self.bias, self.scale, self.zy, self.lo, self.hi, self.fb,
            np.uint8(self.pad_byte), out)
        return out


@njit(cache=True, nogil=True)
def patches_u8(x, zx, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, buf):
    """The patch matrix of one image x (C, H, W) (bytes) into the top-left (C·kh·kw, Ho·Wo) block of buf:
    buf[(c·kh + i)·kw + j, y·Wo + q] = x[c, y·sh + i·dh − pt, q·sw + j·dw − pl], or zx where that is
    outside x (the padding holds the zero point). The rest of buf is left as it is."""
    C, H, W = x.shape
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = buf[(c * kh + i) * kw + j]
                for y in range(ho):
                    yy = y * sh + i * dh - pt
                    dst = row[y * wo:(y + 1) * wo]
                    if yy < 0 or yy >= H:
                        for q in range(wo):
                            dst[q] = zx
                    else:
                        xr = x[c, yy]
                        for q in range(wo):
                            xx = q * sw + j * dw - pl
                            dst[q] = xr[xx] if 0 <= xx < W else zx
    return buf


def patches_u8_reference(x, zx, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, buf) -> np.ndarray:
    """NumPy twin of `patches_u8`."""
    c, h, w = x.shape
    hp = max(h + pt, (ho - 1) * sh + (kh - 1) * dh + 1)
    wp = max(w + pl, (wo - 1) * sw + (kw - 1) * dw + 1)
    xp = np.full((c, hp, wp), zx, np.uint8)
    xp[:, pt:pt + h, pl:pl + w] = x
    for i in range(kh):
        for j in range(kw):
            v = xp[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            buf[np.arange(c) * kh * kw + i * kw + j, :ho * wo] = v.reshape(c, ho * wo)
    return buf



@njit(cache=True, nogil=True)
def _conv_gemm_body(x, zx, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, ap, K, fb, pad, nr):
    """Patches of x packed as GEMM panels: (panels, column sums Σ_k b', raw product array)."""
    C, H, W = x.shape
    Kq = ap.shape[1]
    # stride 1 with a kernel or padding: the patches on the padded width Wp (row k of the patch matrix
    # is one contiguous run of the padded image; the columns q ≥ Wo of each row are computed and dropped)
    wide = sh == 1 and sw == 1 and (kh > 1 or kw > 1 or pt > 0 or pl > 0 or ho > H or wo > W)
    if wide:
        Wp = max(W + pl, wo + (kw - 1) * dw)
        Hp = max(H + pt, ho + (kh - 1) * dh) + 1         # a spare row: the last runs overshoot by < Wp
        P = ho * Wp
    else:
        Wp = wo
        P = ho * wo
    Pn = (P + nr - 1) // nr
    buf = np.empty((4 * Kq, Pn * nr), np.uint8)
    if P != Pn * nr or K != 4 * Kq:
        bf = buf.reshape(buf.size)
        for t in range(bf.shape[0]):
            bf[t] = pad                                 # pad bytes pack to b' = 0
    if wide:
        xpf = np.empty(C * Hp * Wp, np.uint8)          # explicit loops: Numba's slice assignment is slower
        for t in range(xpf.shape[0]):
            xpf[t] = zx                                # the padding holds the zero point
        for c in range(C):
            for y in range(H):
                d = xpf[(c * Hp + pt + y) * Wp + pl:(c * Hp + pt + y) * Wp + pl + W]
                r = x[c, y]
                for q in range(W):
                    d[q] = r[q]
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    o = (c * Hp + i * dh) * Wp + j * dw
                    src = xpf[o:o + P]
                    dst = buf[(c * kh + i) * kw + j]
                    for q in range(P):
                        dst[q] = src[q]
    else:
        patches_u8(x, zx, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, buf)
    panels = np.empty((Pn, Kq, nr), np.uint32)
    colsum = np.empty(Pn * nr, np.int32)
    e32 = np.zeros(0, np.int32)
    e64 = np.zeros(0, np.int64)
    pack_weight(buf, np.int64(K), fb, panels, colsum, np.int64(0), e64, e64, e32, e32)
    return panels, colsum, np.empty((ap.shape[0] * ap.shape[2], Pn * nr), np.int32), e32, Wp


@njit(cache=True, nogil=True)
def conv_gemm512(x, zx, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, ap, rowsum, za, zb, K, bias, scale, zy, lo, hi, fb,
                 pad, out):
    """A whole `ConvGemmRequant` call in one Numba function (`gemm_vnni512`, 32-column panels):
    patches (`patches_u8`), their panels and column sums (`pack_weight`), the GEMM with the weight's
    strips ap, the epilogue (`gemm_requant_rows`) into out (O, Ho·Wo)."""
    panels, colsum, raw, e32, wp = _conv_gemm_body(x, zx, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, ap, K, fb, pad, 32)
    gemm_vnni512(ap, panels, raw, e32, e32, e32)
    gemm_requant_rows(raw, colsum, rowsum, za, zb, K, bias, scale, zy, lo, hi, wo, wp, out)
    return out


@njit(cache=True, nogil=True)
def conv_gemm256(x, zx, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, ap, rowsum, za, zb, K, bias, scale, zy, lo, hi, fb,
                 pad, out):
    """`conv_gemm512` with `gemm_vnni256` (16-column panels; AVX-VNNI)."""
    panels, colsum, raw, e32, wp = _conv_gemm_body(x, zx, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, ap, K, fb, pad, 16)
    gemm_vnni256(ap, panels, raw, e32, e32, e32)
    gemm_requant_rows(raw, colsum, rowsum, za, zb, K, bias, scale, zy, lo, hi, wo, wp, out)
    return out
