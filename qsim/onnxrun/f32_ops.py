"""Float ops of real models, computed in float32 the way ONNX Runtime's CPU provider does.

Conv / MatMul / Gemm use MLAS's summation order (`qsim.onnxrun.f32gemm`), so their
outputs equal ORT's bit for bit (depthwise convolutions included, through MLAS's M = 1
kernel order; a product with a single output column is within a few ulps).
Sigmoid uses MLAS's rational approximation with fused multiply-adds. Softmax, Tanh,
Erf, ReduceMean and LSTM use NumPy float32 and agree with ORT within a few ulps
(tolerances stated in tests/test_run_onnx_ops.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.f32gemm import _fma32, depthwise_m1, sgemm, sgemm_groups
from qsim.onnxrun.ops import matmul_operands, matmul_squeeze
from qsim.onnxrun.spatial import _pad, _patches, window

F32 = np.float32


def _float(ctx, x, what="input"):
    if x.dtype.kind != "f":
        raise ctx.error(f"{what} must be a float tensor, got {x.dtype}")
    return x


def _const(ctx, i: int) -> bool:
    return bool(ctx.constant and i < len(ctx.constant) and ctx.constant[i])


# -- Conv / ConvTranspose / Gemm / MatMul -------------------------------------------------------
@njit(cache=True, nogil=True)
def _fma_rows(cols, w, out):
    """out[o, p] = FMA chain over k of cols[k, p] * w[o, k] (depthwise: one row per channel)."""
    o_, k_ = w.shape
    p_ = cols.shape[1]
    for o in range(o_):
        for p in range(p_):
            acc = np.float32(0.0)
            for k in range(k_):
                acc = _fma32(cols[k, p], w[o, k], acc)
            out[o, p] = acc
    return out


@njit(cache=True, nogil=True)
def _im2col2d(x, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, out):
    """x (C, H, W) -> out (C·kh·kw, ho·wo), rows ordered (c, i, j) like MLAS; padding reads 0."""
    c_, h_, w_ = x.shape
    for c in range(c_):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                for oy in range(ho):
                    y = oy * sh + i * dh - pt
                    base = oy * wo
                    if y < 0 or y >= h_:
                        for ox in range(wo):
                            out[r, base + ox] = np.float32(0.0)
                        continue
                    for ox in range(wo):
                        xx = ox * sw + j * dw - pl
                        out[r, base + ox] = x[c, y, xx] if 0 <= xx < w_ else np.float32(0.0)
    return out


def conv(ctx, inputs, attrs):
    x, w, b = (inputs + [None] * 3)[:3]
    _float(ctx, x, "X")
    if x.dtype != F32:
        raise ctx.error(f"float Conv is implemented for float32, got {x.dtype}")
    kernel = w.shape[2:]
    if x.ndim < 3 or w.ndim != x.ndim:
        raise ctx.error(f"X {x.shape} and W {w.shape} must both be (N, C, *spatial) with the same rank")
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != tuple(kernel):
        raise ctx.error(f"kernel_shape {list(attrs['kernel_shape'])} does not match W {w.shape}")
    g = int(attrs.get("group", 1))
    c = x.shape[1]
    o = w.shape[0]
    if c % g or o % g or w.shape[1] != c // g:
        raise ctx.error(f"input channels {c}, weight {w.shape} and group={g} do not fit")
    wg = w.astype(F32).reshape(g, o // g, (c // g) * int(np.prod(kernel)))
    return conv_prepared(ctx, x, w, wg, None if b is None else b.astype(F32), attrs)


def conv_prepared(ctx, x, w, wg, bias, attrs, wg_t=None, win=None):
    """Conv of float32 x with the weight already grouped as wg (G, O/G, C/G·kh·kw) float32
    (the prepared plan builds wg, and its transpose wg_t (G, C/G·kh·kw, O/G), once per model);
    bias float32 (O,) or None."""
    g, og = wg.shape[:2]
    kernel = w.shape[2:]
    n, c = x.shape[:2]
    o = g * og
    if win is None:  # the prepared plan passes the window it computed once per input shape
        try:
            win = window(attrs, x.shape[2:], kernel)
        except ValueError as exc:
            raise ctx.error(str(exc)) from None
    kk = int(np.prod(kernel))
    npix = int(np.prod(win.out))
    y = np.empty((n, g, og, npix), F32)
    if len(kernel) in (1, 2):
        # 1-D is 2-D with height 1: the same (c, j) K order as the 1-D patches
        k2 = kernel if len(kernel) == 2 else (1, kernel[0])
        st = win.strides if len(kernel) == 2 else (1, win.strides[0])
        dl = win.dilations if len(kernel) == 2 else (1, win.dilations[0])
        bg = win.begin if len(kernel) == 2 else (0, win.begin[0])
        out = win.out if len(kernel) == 2 else (1, win.out[0])
        x32 = np.ascontiguousarray(x, F32)
        if len(kernel) == 1:
            x32 = x32.reshape(n, c, 1, x.shape[2])
        pointwise = kk == 1 and all(s == 1 for s in win.strides) and not any(win.begin) and not any(win.end)
        if og == 1 and c == g and npix > 1 and not pointwise:
            # depthwise: MLAS's M = 1 order read straight from the padded input (no im2col); strided
            # ones compute the stride-1 outputs and keep every stride-th (each output is the same sum)
            pb, pe = (win.begin, win.end) if len(kernel) == 2 else ((0, win.begin[0]), (0, win.end[0]))
            h_, w_ = x32.shape[2:]
            hp, wp = h_ + pb[0] + pe[0], w_ + pb[1] + pe[1]
            hf, wf = hp - (k2[0] - 1) * dl[0], wp - (k2[1] - 1) * dl[1]
            xp = np.zeros((c, hp + 1, wp), F32)  # one spare zero row: the discarded columns read past the end
            wd = np.ascontiguousarray(wg.reshape(c, k2[0], k2[1]))
            full = np.empty((c, hf * wf), F32) if st != (1, 1) else None
            for i in range(n):
                xp[:, pb[0]:pb[0] + h_, pb[1]:pb[1] + w_] = x32[i]
                if full is None:
                    depthwise_m1(xp.reshape(c, -1), wd, wp, dl[0], dl[1], hf, wf, y[i].reshape(g, npix))
                else:
                    depthwise_m1(xp.reshape(c, -1), wd, wp, dl[0], dl[1], hf, wf, full)
                    y[i].reshape(g, out[0], out[1])[:] = full.reshape(c, hf, wf)[:, ::st[0], ::st[1]]
            pointwise = None
        for i in range(n if pointwise is not None else 0):
            if pointwise:  # MLAS multiplies the input directly (same K order)
                cols = x32[i].reshape(g, c // g, npix)
            else:
                cols = _im2col2d(x32[i], k2[0], k2[1], st[0], st[1], dl[0], dl[1], bg[0], bg[1], out[0], out[1],
                                 np.empty((c * kk, npix), F32)).reshape(g, (c // g) * kk, npix)
            sgemm_groups(wg, cols, y[i], wg_t)
    else:
        xp = _pad(x, win, kernel, F32(0))
        cols = np.stack([p for _, p in _patches(xp, kernel, win)], axis=2)  # (N, C, KK, *out)
        cols = cols.reshape(n, g, (c // g) * kk, -1)
        for i in range(n):
            for gi in range(g):
                y[i, gi] = sgemm(wg[gi], cols[i, gi], packed=False)
    y = y.reshape((n, o) + win.out)
    if bias is not None:
        y = y + bias.reshape((1, o) + (1,) * len(kernel))
    return [y.astype(F32)]


def conv_transpose(ctx, inputs, attrs):
    """ORT: per group col = W^T x (MLAS, A transposed); col2im adds the taps in kernel order; then bias."""
    import itertools

    x, w, b = (inputs + [None] * 3)[:3]
    _float(ctx, x, "X")
    nd = x.ndim - 2
    g = int(attrs.get("group", 1))
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    og = w.shape[1]
    kernel = w.shape[2:]

    def ints(key, default):
        v = list(attrs.get(key, [])) or [default] * nd
        return [int(i) for i in v]

    st, dil, opad = ints("strides", 1), ints("dilations", 1), ints("output_padding", 0)
    pads = list(attrs.get("pads", [])) or [0] * (2 * nd)
    if _s(attrs, "auto_pad", "NOTSET") == "VALID":
        pads = [0] * (2 * nd)
    out = [st[i] * (spatial[i] - 1) + opad[i] + (kernel[i] - 1) * dil[i] + 1 - pads[i] - pads[i + nd]
           for i in range(nd)]
    full_shape = [out[i] + pads[i] + pads[i + nd] + st[i] for i in range(nd)]
    full = np.zeros((n, g * og, *full_shape), F32)
    kk = int(np.prod(kernel))
    wt = w.astype(F32).reshape(g, c // g, og * kk)
    npix = int(np.prod(spatial))
    for i in range(n):
        for gi in range(g):
            xi = x[i, gi * (c // g):(gi + 1) * (c // g)].reshape(c // g, npix)
            col = sgemm(np.ascontiguousarray(wt[gi].T), xi, packed=False, trans_a=True).reshape(og, kk, *spatial)
            for t, pos in enumerate(itertools.product(*[range(k) for k in kernel])):
                sl = tuple(slice(p * d, p * d + s * (m - 1) + 1, s) for p, d, s, m in zip(pos, dil, st, spatial))
                full[(i, slice(gi * og, (gi + 1) * og)) + sl] += col[:, t]
    y = full[(slice(None), slice(None)) + tuple(slice(pads[i], pads[i] + out[i]) for i in range(nd))]
    if b is not None:
        y = y + b.astype(F32).reshape((1, -1) + (1,) * nd)
    return [np.ascontiguousarray(y, F32)]


def gemm(ctx, inputs, attrs):
    a, b, c = (inputs + [None] * 3)[:3]
    ta, tb = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
    a2 = a.T if ta else a
    b2 = b.T if tb else b
    if a2.ndim != 2 or b2.ndim != 2 or a2.shape[1] != b2.shape[0]:
        raise ctx.error(f"A {a.shape} and B {b.shape} (after transA/transB) are not (M, K) and (K, N)")
    if a.dtype != F32:
        raise ctx.error(f"float Gemm is implemented for float32, got {a.dtype}")
    alpha, beta = F32(attrs.get("alpha", 1.0)), F32(attrs.get("beta", 1.0))
    init = None
    if c is not None and beta != 0:
        init = np.broadcast_to(c.astype(F32), (a2.shape[0], b2.shape[1])) * beta
    y = sgemm(a2, b2, packed=_const(ctx, 1), init=None if alpha != 1 else init, trans_a=ta)
    if alpha != 1:
        y = y * alpha
        if init is not None:
            y = y + init
    return [y.astype(F32)]


def matmul(ctx, inputs, attrs):
    a, b = inputs[:2]
    if a.dtype != F32 or b.dtype != F32:
        wide = np.float64 if a.dtype.kind == "f" else np.int64
        try:
            return [np.matmul(a.astype(wide), b.astype(wide)).astype(a.dtype)]
        except ValueError as exc:
            raise ctx.error(f"A {a.shape} and B {b.shape}: {exc}") from None
    a2, b2, batch = matmul_operands(ctx, a, b)
    packed = _const(ctx, 1) and b2.ndim == 2
    if packed or b2.ndim == 2:
        # ORT folds A's batch dimensions into M when B is a single matrix
        m2 = np.broadcast_to(a2, batch + a2.shape[-2:]).reshape(-1, a2.shape[-1])
        y = sgemm(m2, b2, packed=packed).reshape(batch + (a2.shape[-2], b2.shape[-1]))
    else:
        a3 = np.broadcast_to(a2, batch + a2.shape[-2:]).reshape((-1,) + a2.shape[-2:])
        b3 = np.broadcast_to(b2, batch + b2.shape[-2:]).reshape((-1,) + b2.shape[-2:])
        y = sgemm_groups(a3, b3, np.empty((a3.shape[0], a3.shape[1], b3.shape[2]), F32))  # = sgemm per matrix
        y = y.reshape(batch + (a2.shape[-2], b2.shape[-1]))
    return [matmul_squeeze(y, a, b)]


# -- pools ------------------------------------------------------------------------------------
def global_average_pool(ctx, inputs, attrs):
    """float32 sum over each channel's elements (4-lane order of ORT, `_row_sums`), then / count."""
    x = _float(ctx, inputs[0], "X")
    lead = x.shape[:2]
    flat = np.ascontiguousarray(x.astype(F32).reshape(int(np.prod(lead)), -1))
    s = np.empty(flat.shape[0], F32)
    _row_sums(flat, s)
    y = s / F32(flat.shape[1])
    return [y.reshape(lead + (1,) * (x.ndim - 2)).astype(x.dtype)]


@njit(cache=True, nogil=True)
def _row_sums(flat, out):
    """ORT's order (measured): 4 float32 lanes over full groups of 4, lanes reduced as
    (l0 + l2) + (l1 + l3), then the tail added one by one."""
    n = flat.shape[1]
    full = n - n % 4
    for r in range(flat.shape[0]):
        l0 = np.float32(0.0)
        l1 = np.float32(0.0)
        l2 = np.float32(0.0)
        l3 = np.float32(0.0)
        for i in range(0, full, 4):
            l0 = l0 + flat[r, i]
            l1 = l1 + flat[r, i + 1]
            l2 = l2 + flat[r, i + 2]
            l3 = l3 + flat[r, i + 3]
        acc = (l0 + l2) + (l1 + l3)
        for i in range(full, n):
            acc = acc + flat[r, i]
        out[r] = acc
    return out


def average_pool(ctx, inputs, attrs):
    """Window sums in float32 in MLAS's order (2-D: column sums, then across), then / count."""
    x = _float(ctx, inputs[0], "X")
    kernel = tuple(int(k) for k in attrs.get("kernel_shape", ()))
    if not kernel or x.ndim != len(kernel) + 2:
        raise ctx.error(f"kernel_shape {list(kernel)} must name one size per spatial axis of X {x.shape}")
    try:
        win = window(attrs, x.shape[2:], kernel, ceil_mode=bool(attrs.get("ceil_mode", 0)))
    except ValueError as exc:
        raise ctx.error(str(exc)) from None
    n = len(kernel)
    spatial = x.shape[-n:]
    xp = _pad(x.astype(F32), win, kernel, F32(0))
    valid = _pad(np.ones(spatial, F32), win, kernel, F32(0))
    declared = np.zeros(valid.shape, F32)
    declared[tuple(slice(0, s + b + e) for s, b, e in zip(spatial, win.begin, win.end))] = 1
    mask = declared if attrs.get("count_include_pad", 0) else valid
    taps = {off: p for off, p in _patches(xp, kernel, win)}
    count = np.zeros(win.out, F32)
    for _, m in _patches(mask, kernel, win):
        count = count + m
    if n == 2:  # MLAS: each window column summed down the kernel rows, then the columns left to right
        total = None
        for j in range(kernel[1]):
            col = taps[(0, j)]
            for i in range(1, kernel[0]):
                col = (col + taps[(i, j)]).astype(F32)
            total = col if total is None else (total + col).astype(F32)
    else:
        total = np.zeros(x.shape[:-n] + win.out, F32)
        for p in taps.values():
            total = (total + p).astype(F32)
    return [(total / count).astype(x.dtype)]


# -- elementwise --------------------------------------------------------------------------------
_LOGISTIC = dict(a9=4.37031012579801e-11, a7=1.15627324459942e-07, a5=6.08574864600143e-05,
                 a3=8.51377133304701e-03, a1=2.48287947061529e-01, b10=6.10247389755681e-13,
                 b8=5.76102136993427e-09, b6=6.29106785017040e-06, b4=1.70198817374094e-03,
                 b2=1.16817656904453e-01, b0=9.93151921023180e-01)


@njit(cache=True, nogil=True)
def _logistic(x, out, c):
    a9, a7, a5, a3, a1, b10, b8, b6, b4, b2, b0 = c
    for i in range(x.size):
        v = x[i]
        if v != v:
            out[i] = v
            continue
        v = min(max(v, np.float32(-18.0)), np.float32(18.0))
        v2 = v * v
        p = _fma32(v2, a9, a7)
        p = _fma32(p, v2, a5)
        p = _fma32(p, v2, a3)
        p = _fma32(p, v2, a1)
        p = p * v
        q = _fma32(v2, b10, b8)
        q = _fma32(q, v2, b6)
        q = _fma32(q, v2, b4)
        q = _fma32(q, v2, b2)
        q = _fma32(q, v2, b0)
        r = p / q + np.float32(0.5)
        out[i] = min(max(r, np.float32(0.0)), np.float32(1.0))
    return out


def logistic(x: np.ndarray) -> np.ndarray:
    """MLAS's logistic: Eigen's rational approximation on [-18, 18], FMA Horner steps, clamped to [0, 1]."""
    flat = np.ascontiguousarray(x, F32).ravel()
    consts = tuple(F32(_LOGISTIC[k]) for k in ("a9", "a7", "a5", "a3", "a1", "b10", "b8", "b6", "b4", "b2", "b0"))
    return _logistic(flat, np.empty_like(flat), consts).reshape(np.shape(x))


_TANH = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
         1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,
         1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


@njit(cache=True, nogil=True)
def _tanh(x, out, c):
    a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0 = c
    for i in range(x.size):
        v = x[i]
        if v != v:
            out[i] = v
            continue
        v = min(max(v, np.float32(-9.0)), np.float32(9.0))
        v2 = v * v
        p = _fma32(v2, a13, a11)
        p = _fma32(p, v2, a9)
        p = _fma32(p, v2, a7)
        p = _fma32(p, v2, a5)
        p = _fma32(p, v2, a3)
        p = _fma32(p, v2, a1)
        p = p * v
        q = _fma32(v2, b6, b4)
        q = _fma32(q, v2, b2)
        q = _fma32(q, v2, b0)
        out[i] = p / q
    return out


def tanh32(x: np.ndarray) -> np.ndarray:
    """MLAS's tanh: Eigen's rational approximation on [-9, 9] with FMA Horner steps."""
    flat = np.ascontiguousarray(x, F32).ravel()
    return _tanh(flat, np.empty_like(flat), tuple(F32(v) for v in _TANH)).reshape(np.shape(x))


def tanh(ctx, inputs, attrs):
    x = _float(ctx, inputs[0])
    return [tanh32(x) if x.dtype == F32 else np.tanh(x)]


def sigmoid(ctx, inputs, attrs):
    x = _float(ctx, inputs[0])
    if x.dtype != F32:
        return [(1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype)]
    return [logistic(x)]


def _unary(fn):
    def op(ctx, inputs, attrs):
        x = _float(ctx, inputs[0])
        return [np.asarray(fn(x, attrs)).astype(x.dtype)]

    return op


def _erf(x):
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x.astype(np.float64))


def hard_sigmoid(x, attrs):
    alpha, beta = F32(attrs.get("alpha", 0.2)), F32(attrs.get("beta", 0.5))
    return np.clip(x * alpha + beta, F32(0), F32(1))


def hard_swish(x, attrs):
    return x * np.clip(x * F32(1 / 6) + F32(0.5), F32(0), F32(1))


def leaky_relu(x, attrs):
    alpha = x.dtype.type(attrs.get("alpha", 0.01))
    return np.where(x >= 0, x, x * alpha)


def prelu(ctx, inputs, attrs):
    x, slope = inputs[:2]
    return [np.where(x >= 0, x, x * slope).astype(x.dtype)]


def softmax(ctx, inputs, attrs):
    x = _float(ctx, inputs[0])
    axis = int(attrs.get("axis", -1 if ctx.opset >= 13 else 1))
    if not -x.ndim <= axis < x.ndim:
        raise ctx.error(f"axis {axis} out of range for rank {x.ndim}")
    axis %= x.ndim
    if ctx.opset < 13:  # coerced to 2-D at axis
        shp = x.shape
        x2 = x.reshape(int(np.prod(shp[:axis])), -1)
        e = np.exp(x2 - x2.max(axis=1, keepdims=True))
        return [(e / e.sum(axis=1, keepdims=True, dtype=x.dtype)).reshape(shp).astype(x.dtype)]
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [(e / e.sum(axis=axis, keepdims=True, dtype=x.dtype)).astype(x.dtype)]


def pow_(ctx, inputs, attrs):
    x, y = inputs[:2]
    if y.size == 1 and float(y.ravel()[0]) == 2.0:
        return [(x * x).astype(x.dtype)]
    if y.size == 1 and float(y.ravel()[0]) == 3.0:
        return [(x * x * x).astype(x.dtype)]
    return [np.power(x, y.astype(x.dtype) if x.dtype.kind == "f" else y).astype(x.dtype)]


def batch_norm(ctx, inputs, attrs):
    """Inference form, as ORT: s = scale / sqrt(var + eps), y = x·s + (B − mean·s)."""
    x, scale, bias, mean, var = inputs[:5]
    if int(attrs.get("training_mode", 0)):
        raise ctx.error("training_mode=1 is not supported")
    eps = x.dtype.type(attrs.get("epsilon", 1e-5))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv_std = x.dtype.type(1) / np.sqrt(var.astype(x.dtype) + eps)
    s = (inv_std * scale).astype(x.dtype)
    b = (bias - mean * s).astype(x.dtype)
    return [(x * s.reshape(shape) + b.reshape(shape)).astype(x.dtype)]


def reduce_mean(ctx, inputs, attrs):
    x = _float(ctx, inputs[0])
    axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")
    keep = bool(attrs.get("keepdims", 1))
    if axes is None or len(np.asarray(axes).ravel()) == 0:
        if attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = tuple(range(x.ndim))
    axes = tuple(int(a) % x.ndim for a in np.asarray(axes).ravel())
    s = x.sum(axis=axes, keepdims=keep, dtype=x.dtype)
    count = int(np.prod([x.shape[a] for a in axes]))
    return [(s / x.dtype.type(count)).astype(x.dtype)]


# -- LSTM ----------------------------------------------------------------------------------------
def _act(name: str, x):
    name = name.decode() if isinstance(name, bytes) else name
    if name == "Sigmoid":
        return logistic(x)
    if name == "Tanh":
        return tanh32(x)
    if name == "Relu":
        return np.maximum(x, 0)
    raise ValueError(name)


@njit(cache=True, nogil=True)
def _logistic1(v, c):
    """One value of `_logistic` (same operations)."""
    a9, a7, a5, a3, a1, b10, b8, b6, b4, b2, b0 = c
    if v != v:
        return v
    v = min(max(v, np.float32(-18.0)), np.float32(18.0))
    v2 = v * v
    p = _fma32(v2, a9, a7)
    p = _fma32(p, v2, a5)
    p = _fma32(p, v2, a3)
    p = _fma32(p, v2, a1)
    p = p * v
    q = _fma32(v2, b10, b8)
    q = _fma32(q, v2, b6)
    q = _fma32(q, v2, b4)
    q = _fma32(q, v2, b2)
    q = _fma32(q, v2, b0)
    r = p / q + np.float32(0.5)
    return min(max(r, np.float32(0.0)), np.float32(1.0))


@njit(cache=True, nogil=True)
def _tanh1(v, c):
    """One value of `_tanh` (same operations)."""
    a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0 = c
    if v != v:
        return v
    v = min(max(v, np.float32(-9.0)), np.float32(9.0))
    v2 = v * v
    p = _fma32(v2, a13, a11)
    p = _fma32(p, v2, a9)
    p = _fma32(p, v2, a7)
    p = _fma32(p, v2, a5)
    p = _fma32(p, v2, a3)
    p = _fma32(p, v2, a1)
    p = p * v
    q = _fma32(v2, b6, b4)
    q = _fma32(q, v2, b2)
    q = _fma32(q, v2, b0)
    return p / q


@njit(cache=True, nogil=True)
def lstm_cell(gates, bias, ct, pi, po, pf, cl, cth, h_out, c_out):
    """One LSTM step with Sigmoid/Tanh/Tanh, as `lstm`'s NumPy lines compute it: gates (n, 4·hs) =
    R·h + W·x (already summed), + bias (4·hs) = Wb + Rb; i, o, f, c̃ blocks; every operation
    rounded to float32 on its own (no contraction), activations as `_logistic` / `_tanh`."""
    n_, g4 = gates.shape
    hs = g4 // 4
    for r in range(n_):
        for j in range(hs):
            gi = gates[r, j] + bias[j]
            go = gates[r, hs + j] + bias[hs + j]
            gf = gates[r, 2 * hs + j] + bias[2 * hs + j]
            gc = gates[r, 3 * hs + j] + bias[3 * hs + j]
            c0 = ct[r, j]
            it = _logistic1(gi + pi[j] * c0, cl)
            ft = _logistic1(gf + pf[j] * c0, cl)
            ctil = _tanh1(gc, cth)
            c1 = ft * c0 + it * ctil
            ot = _logistic1(go + po[j] * c1, cl)
            c_out[r, j] = c1
            h_out[r, j] = ot * _tanh1(c1, cth)
    return h_out


def lstm_cell_consts() -> tuple:
    """(logistic constants, tanh constants) as `lstm_cell` takes them."""
    return (tuple(F32(_LOGISTIC[k]) for k in ("a9", "a7", "a5", "a3", "a1", "b10", "b8", "b6", "b4", "b2", "b0")),
            tuple(F32(v) for v in _TANH))


_TRANSPOSED: dict = {}


def _transposed(a: np.ndarray, d: int) -> np.ndarray:
    """a[d].T as a contiguous array; memoised for the executor's constant arrays (LSTM weights)."""
    from qsim.onnxrun.ops import CONSTANTS

    key = (id(a), d)
    hit = _TRANSPOSED.get(key)
    if hit is not None and hit[0] is a:
        return hit[1]
    t = np.ascontiguousarray(a[d].T)
    if CONSTANTS.get(id(a)) is a:
        if len(_TRANSPOSED) > 4096:
            _TRANSPOSED.clear()
        t.flags.writeable = False
        _TRANSPOSED[key] = (a, t)
    return t


def lstm(ctx, inputs, attrs):
    x, w, r, b, seq_lens, h0, c0, p = (inputs + [None] * 8)[:8]
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if int(attrs.get("layout", 0)):
        raise ctx.error("layout=1 is not supported")
    if seq_lens is not None and not np.all(seq_lens == x.shape[0]):
        raise ctx.error("sequence_lens shorter than the sequence are not supported")
    if attrs.get("clip") is not None or int(attrs.get("input_forget", 0)):
        raise ctx.error("clip and input_forget are not supported")
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    t, n, _ = x.shape
    nd, hs = w.shape[0], r.shape[-1]
    dirs = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    ys = np.zeros((t, nd, n, hs), F32)
    hn = np.zeros((nd, n, hs), F32)
    cn = np.zeros((nd, n, hs), F32)
    for d, rev in enumerate(dirs):
        f, g, h = (acts[3 * d:3 * d + 3] if acts else ["Sigmoid", "Tanh", "Tanh"])
        bias = np.zeros(8 * hs, F32) if b is None else b[d].astype(F32)
        ht = np.zeros((n, hs), F32) if h0 is None else h0[d].astype(F32)
        ct = np.zeros((n, hs), F32) if c0 is None else c0[d].astype(F32)
        pi, po, pf = (np.zeros(hs, F32),) * 3 if p is None else np.split(p[d].astype(F32), 3)
        xw = sgemm(x.reshape(t * n, -1).astype(F32), _transposed(w, d), packed=True).reshape(t, n, -1)
        r_t = _transposed(r, d)
        order = range(t - 1, -1, -1) if rev else range(t)
        fused = [a.decode() if isinstance(a, bytes) else a for a in (f, g, h)] == ["Sigmoid", "Tanh", "Tanh"]
        if fused:  # one Numba pass per step, the same float32 operations as the NumPy lines below
            b_sum = (bias[:4 * hs] + bias[4 * hs:]).astype(F32)
            cl = tuple(F32(_LOGISTIC[k]) for k in ("a9", "a7", "a5", "a3", "a1", "b10", "b8", "b6", "b4", "b2", "b0"))
            cth = tuple(F32(v) for v in _TANH)
            pi_, po_, pf_ = (np.ascontiguousarray(v, F32) for v in (pi, po, pf))
            for step in order:
                gates = sgemm(ht, r_t, packed=True, init=xw[step])
                h_new, c_new = np.empty((n, hs), F32), np.empty((n, hs), F32)
                lstm_cell(gates, b_sum, np.ascontiguousarray(ct, F32), pi_, po_, pf_, cl, cth, h_new, c_new)
                ht, ct = h_new, c_new
                ys[step, d] = ht
            hn[d], cn[d] = ht, ct
            continue
        for step in order:
            gates = sgemm(ht, r_t, packed=True, init=xw[step]) + (bias[:4 * hs] + bias[4 * hs:])
            i_, o_, f_, c_ = np.split(gates.astype(F32), 4, axis=1)
            it = _act(f, i_ + pi * ct)
            ft = _act(f, f_ + pf * ct)
            ctil = _act(g, c_)
            ct = (ft * ct + it * ctil).astype(F32)
            ot = _act(f, o_ + po * ct)
            ht = (ot * _act(h, ct)).astype(F32)
            ys[step, d] = ht
        hn[d], cn[d] = ht, ct
    return [ys, hn, cn]


# -- data movement ----------------------------------------------------------------------------------
def slice_(ctx, inputs, attrs):
    x = inputs[0]
    if ctx.opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = inputs[1], inputs[2]
        axes = inputs[3] if len(inputs) > 3 else None
        steps = inputs[4] if len(inputs) > 4 else None
    starts = [int(v) for v in np.asarray(starts).ravel()]
    ends = [int(v) for v in np.asarray(ends).ravel()]
    axes = list(range(len(starts))) if axes is None else [int(a) % x.ndim for a in np.asarray(axes).ravel()]
    steps = [1] * len(starts) if steps is None else [int(v) for v in np.asarray(steps).ravel()]
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ctx.error("slice step must not be 0")
        dim = x.shape[a]
        s = min(max(s + dim if s < 0 else s, 0 if st > 0 else -1), dim if st > 0 else dim - 1)
        e = min(max(e + dim if e < 0 else e, 0 if st > 0 else -1), dim if st > 0 else dim - 1)
        sl[a] = slice(s, e if e >= 0 else None, st)
    return [np.ascontiguousarray(x[tuple(sl)])]


def pad(ctx, inputs, attrs):
    x = inputs[0]
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if ctx.opset < 11:
        pads, value, axes = list(attrs["pads"]), attrs.get("value", 0.0), None
    else:
        pads = [int(v) for v in np.asarray(inputs[1]).ravel()]
        value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else 0
        axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else None
    axes = list(range(x.ndim)) if axes is None else [int(a) % x.ndim for a in np.asarray(axes).ravel()]
    k = len(axes)
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        width[a] = (int(pads[i]), int(pads[i + k]))
    if any(b < 0 or e < 0 for b, e in width):  # negative pads crop
        sl = tuple(slice(-b if b < 0 else 0, (x.shape[i] + e) if e < 0 else None) for i, (b, e) in enumerate(width))
        x = x[sl]
        width = [(max(b, 0), max(e, 0)) for b, e in width]
    if mode == "constant":
        return [np.pad(x, width, constant_values=np.asarray(value).astype(x.dtype).ravel()[0]
                       if np.asarray(value).size else 0)]
    if mode in ("reflect", "edge", "wrap"):
        return [np.pad(x, width, mode=mode)]
    raise ctx.error(f"pad mode {mode!r} is not supported")


def space_to_depth(ctx, inputs, attrs):
    x = inputs[0]
    bs = int(attrs["blocksize"])
    n, c, h, w = x.shape
    if h % bs or w % bs:
        raise ctx.error(f"H {h} and W {w} must be multiples of blocksize {bs}")
    mode = attrs.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    y = x.reshape(n, c, h // bs, bs, w // bs, bs)
    y = y.transpose(0, 1, 3, 5, 2, 4) if mode == "CRD" else y.transpose(0, 3, 5, 1, 2, 4)
    return [np.ascontiguousarray(y.reshape(n, c * bs * bs, h // bs, w // bs))]


def depth_to_space(ctx, inputs, attrs):
    x = inputs[0]
    bs = int(attrs["blocksize"])
    mode = attrs.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    n, c, h, w = x.shape
    if mode == "DCR":
        y = x.reshape(n, bs, bs, c // bs ** 2, h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // bs ** 2, bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3)
    return [np.ascontiguousarray(y.reshape(n, c // bs ** 2, h * bs, w * bs))]


def constant_of_shape(ctx, inputs, attrs):
    from onnx import numpy_helper

    shape = [int(v) for v in np.asarray(inputs[0]).ravel()]
    value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, F32)
    return [np.full(shape, value.ravel()[0], value.dtype)]


def _coords(mode: str, out_len: int, in_len: int, scale: float, from_scales: bool):
    o = np.arange(out_len, dtype=np.float32)
    scale = np.float32(scale)
    if mode == "align_corners" and from_scales:  # ONNX: the unrounded output length in_len·scale
        den = F32(in_len) * scale - F32(1)
        return o * F32(in_len - 1) / den if den != 0 else np.zeros(out_len, F32)
    if mode == "half_pixel":
        return (o + F32(0.5)) / scale - F32(0.5)
    if mode == "pytorch_half_pixel":
        return (o + F32(0.5)) / scale - F32(0.5) if out_len > 1 else np.zeros(out_len, F32)
    if mode == "align_corners":
        return o * F32(in_len - 1) / F32(out_len - 1) if out_len > 1 else np.zeros(out_len, F32)
    if mode == "asymmetric":
        return o / scale
    raise ValueError(f"coordinate_transformation_mode {mode!r} is not supported")


def resize(ctx, inputs, attrs):
    """Nearest and (bi)linear Resize over the trailing axes (what detection heads use)."""
    x = inputs[0]
    scales = inputs[2] if len(inputs) > 2 and inputs[2] is not None and inputs[2].size else None
    sizes = inputs[3] if len(inputs) > 3 and inputs[3] is not None and inputs[3].size else None
    if ctx.opset < 11:
        scales = inputs[1]
    mode = attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    ctm = attrs.get("coordinate_transformation_mode", b"half_pixel" if ctx.opset >= 11 else b"asymmetric")
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    nm = attrs.get("nearest_mode", b"round_prefer_floor")
    nm = nm.decode() if isinstance(nm, bytes) else nm
    if ctx.opset < 11:
        ctm = "asymmetric"
    if sizes is not None:
        out = [int(v) for v in sizes]
        sc = [o / i for o, i in zip(out, x.shape)]
    else:
        sc = [float(v) for v in np.asarray(scales).ravel()]
        out = [int(np.floor(i * s)) for i, s in zip(x.shape, sc)]
    y = x
    for ax in range(x.ndim):
        if out[ax] == x.shape[ax] and sc[ax] == 1.0:
            continue
        try:
            c = _coords(ctm, out[ax], x.shape[ax], sc[ax], sizes is None)
        except ValueError as exc:
            raise ctx.error(str(exc)) from None
        n_in = x.shape[ax]
        if mode == "nearest":
            if nm == "round_prefer_floor":
                idx = np.where(c - np.floor(c) == F32(0.5), np.floor(c), np.round(c))
            elif nm == "round_prefer_ceil":
                idx = np.where(c - np.floor(c) == F32(0.5), np.ceil(c), np.round(c))
            elif nm == "floor":
                idx = np.floor(c)
            elif nm == "ceil":
                idx = np.ceil(c)
            else:
                raise ctx.error(f"nearest_mode {nm!r} is not supported")
            y = np.take(y, np.clip(idx.astype(np.int64), 0, n_in - 1), axis=ax)
        elif mode == "linear":
            c = np.clip(c, F32(0), F32(n_in - 1))
            lo = np.floor(c).astype(np.int64)
            hi = np.minimum(lo + 1, n_in - 1)
            frac = (c - lo).astype(F32)
            shp = [1] * x.ndim
            shp[ax] = -1
            frac = frac.reshape(shp)
            y = (np.take(y, lo, axis=ax) * (F32(1) - frac) + np.take(y, hi, axis=ax) * frac).astype(x.dtype)
        else:
            raise ctx.error(f"Resize mode {mode!r} is not supported")
    return [np.ascontiguousarray(y)]


def _cmp(fn):
    def op(ctx, inputs, attrs):
        return [fn(inputs[0], inputs[1])]

    return op


def where(ctx, inputs, attrs):
    return [np.where(inputs[0], inputs[1], inputs[2])]


def expand(ctx, inputs, attrs):
    x, shape = inputs[:2]
    shape = [int(v) for v in np.asarray(shape).ravel()]
    out = np.broadcast_shapes(x.shape, tuple(shape))
    return [np.broadcast_to(x, out).copy()]


def tile(ctx, inputs, attrs):
    return [np.tile(inputs[0], [int(v) for v in np.asarray(inputs[1]).ravel()])]


def split(ctx, inputs, attrs):
    x = inputs[0]
    axis = int(attrs.get("axis", 0)) % x.ndim
    sizes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("split")
    if sizes is None:
        k = ctx.n_outputs
        if "num_outputs" in attrs:
            k = int(attrs["num_outputs"])
        step = -(-x.shape[axis] // k)
        sizes = [min(step, x.shape[axis] - i * step) for i in range(k)]
    cuts = np.cumsum([int(v) for v in np.asarray(sizes).ravel()])[:-1]
    return list(np.split(x, cuts, axis=axis))


def _reduce(fn):
    def op(ctx, inputs, attrs):
        x = inputs[0]
        axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")
        keep = bool(attrs.get("keepdims", 1))
        if axes is None or len(np.asarray(axes).ravel()) == 0:
            if attrs.get("noop_with_empty_axes", 0):
                return [x]
            axes = tuple(range(x.ndim))
        axes = tuple(int(a) % x.ndim for a in np.asarray(axes).ravel())
        extra = {}
        if fn in (np.max, np.min) and x.size == 0:  # empty reduction: the identity (-inf / +inf)
            if x.dtype == np.bool_:
                extra["initial"] = fn is np.min
            elif x.dtype.kind == "f":
                extra["initial"] = -np.inf if fn is np.max else np.inf
            else:
                info = np.iinfo(x.dtype)
                extra["initial"] = info.min if fn is np.max else info.max
        return [np.asarray(fn(x, axis=axes, keepdims=keep, **extra)).astype(x.dtype)]

    return op


def _s(attrs, key, default):
    v = attrs.get(key, default)
    return v.decode() if isinstance(v, bytes) else v


def unsupported_reason(node, attrs: dict) -> str | None:
    """Attribute combinations qsim does not implement (checked before anything runs)."""
    op = node.op_type
    if op == "BatchNormalization" and int(attrs.get("training_mode", 0)):
        return "training_mode=1"
    if op == "ConvTranspose" and ("output_shape" in attrs or _s(attrs, "auto_pad", "NOTSET") not in ("NOTSET", "VALID")):
        return "output_shape or SAME auto_pad"
    if op == "LSTM" and (int(attrs.get("layout", 0)) or attrs.get("clip") is not None
                         or int(attrs.get("input_forget", 0))):
        return "layout=1, clip or input_forget"
    if op == "Resize":
        if _s(attrs, "mode", "nearest") not in ("nearest", "linear"):
            return f"mode {_s(attrs, 'mode', 'nearest')!r}"
        if int(attrs.get("antialias", 0)) or "axes" in attrs:
            return "antialias or axes"
        if _s(attrs, "keep_aspect_ratio_policy", "stretch") != "stretch":
            return "keep_aspect_ratio_policy"
        if _s(attrs, "coordinate_transformation_mode", "half_pixel") not in (
                "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"):
            return f"coordinate_transformation_mode {_s(attrs, 'coordinate_transformation_mode', '')!r}"
    return None


F32_OPS = {
    "Conv": conv, "ConvTranspose": conv_transpose, "Gemm": gemm, "MatMul": matmul,
    "GlobalAveragePool": global_average_pool, "AveragePool": average_pool,
    "Sigmoid": sigmoid,
    "Tanh": tanh,
    "Erf": _unary(lambda x, a: _erf(x)),
    "Sqrt": _unary(lambda x, a: np.sqrt(x)),
    "Exp": _unary(lambda x, a: np.exp(x)),
    "Log": _unary(lambda x, a: np.log(x)),
    "Floor": _unary(lambda x, a: np.floor(x)),
    "Ceil": _unary(lambda x, a: np.ceil(x)),
    "Neg": lambda ctx, i, a: [np.negative(i[0])],
    "Abs": lambda ctx, i, a: [np.abs(i[0])],
    "Reciprocal": _unary(lambda x, a: x.dtype.type(1) / x),
    "HardSigmoid": _unary(hard_sigmoid), "HardSwish": _unary(hard_swish), "LeakyRelu": _unary(leaky_relu),
    "PRelu": prelu, "Softmax": softmax, "Pow": pow_, "BatchNormalization": batch_norm,
    "ReduceMean": reduce_mean, "ReduceSum": _reduce(np.sum), "ReduceMax": _reduce(np.max),
    "ReduceMin": _reduce(np.min),
    "LSTM": lstm, "Slice": slice_, "Pad": pad, "SpaceToDepth": space_to_depth, "DepthToSpace": depth_to_space,
    "ConstantOfShape": constant_of_shape, "Resize": resize,
    "Equal": _cmp(np.equal), "Less": _cmp(np.less), "Greater": _cmp(np.greater), "Where": where,
    "Not": lambda ctx, i, a: [np.logical_not(i[0])],
    "Expand": expand, "Tile": tile, "Split": split,
    "Max": lambda ctx, i, a: [np.maximum.reduce([v for v in i if v is not None])],
    "Min": lambda ctx, i, a: [np.minimum.reduce([v for v in i if v is not None])],
}
