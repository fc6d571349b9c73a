"""float32 matrix products in ONNX Runtime's (MLAS) order, so float Conv / MatMul / Gemm
outputs equal ORT's bit for bit and downstream QuantizeLinear codes do not flip.

MLAS's SGEMM kernels (x86-64, one thread) compute every output as a sequence of fused
multiply-adds over k in increasing order, restarting from zero at each K slice of the
packed B panel and adding the slice's sum to C (`C = C + slice`). The slice length
depends on the call: 256 for a prepacked constant B (MatMul/Gemm with an initializer
B), and for an unpacked B (Conv's im2col product, MatMul of two activations) 128,
doubled while the N panel (128 wide) can be halved and still cover N. This was
measured against onnxruntime (exact on every tested shape); it is a model of MLAS, so
on other ORT builds (ARM, other MLAS versions) the float results may differ in the
last bits. M = 1 with an unpacked B (depthwise convolutions: one output channel per
group) uses MLAS's M1 kernel order instead (`_sgemm_m1`), and N = 1 (a convolution with
one output pixel) its transposed M1 kernel (`_sgemm_n1`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

PACKED_STRIDE_K = 256
STRIDE_N, STRIDE_K = 128, 128


@intrinsic
def _fma32(typingctx, a, b, c):
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.FloatType(), [ir.FloatType()] * 3)
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f32")
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True, nogil=True)
def _sgemm(a, b, stride_k, c, accumulate):
    """c (M, N) [+]= a (M, K) @ b (K, N): per K slice a sequential FMA chain from 0, slices added in order
    (with `accumulate`, the first slice is added to c's initial value as well). Rows in blocks of
    4 share each loaded b value (same per-element order as `_sgemm_1row`, ~1.4x faster)."""
    m_, k_ = a.shape
    n_ = b.shape[1]
    acc = np.empty((4, n_), np.float32)
    m = 0
    while m < m_:
        r = min(4, m_ - m)
        k0 = 0
        while k0 < k_:
            k1 = min(k_, k0 + stride_k)
            acc[:, :] = np.float32(0.0)
            if r == 4:
                for k in range(k0, k1):
                    a0 = a[m, k]
                    a1 = a[m + 1, k]
                    a2 = a[m + 2, k]
                    a3 = a[m + 3, k]
                    for n in range(n_):
                        bv = b[k, n]
                        acc[0, n] = _fma32(a0, bv, acc[0, n])
                        acc[1, n] = _fma32(a1, bv, acc[1, n])
                        acc[2, n] = _fma32(a2, bv, acc[2, n])
                        acc[3, n] = _fma32(a3, bv, acc[3, n])
            else:
                for i in range(r):
                    for k in range(k0, k1):
                        av = a[m + i, k]
                        for n in range(n_):
                            acc[i, n] = _fma32(av, b[k, n], acc[i, n])
            for i in range(r):
                if k0 == 0 and not accumulate:
                    for n in range(n_):
                        c[m + i, n] = acc[i, n]
                else:
                    for n in range(n_):
                        c[m + i, n] = c[m + i, n] + acc[i, n]
            k0 = k1
        m += 4
    return c


@njit(cache=True, nogil=True)
def _sgemm_1row(a, b, stride_k, c, accumulate):
    """One row at a time (the reference for `_sgemm`'s 4-row blocks): c (M, N) [+]= a (M, K) @ b (K, N):
    per K slice a sequential FMA chain from 0, slices added in order
    (with `accumulate`, the first slice is added to c's initial value as well)."""
    m_, k_ = a.shape
    n_ = b.shape[1]
    acc = np.empty(n_, np.float32)
    for m in range(m_):
        k0 = 0
        while k0 < k_:
            k1 = min(k_, k0 + stride_k)
            for n in range(n_):
                acc[n] = np.float32(0.0)
            for k in range(k0, k1):
                av = a[m, k]
                for n in range(n_):
                    acc[n] = _fma32(av, b[k, n], acc[n])
            if k0 == 0 and not accumulate:
                for n in range(n_):
                    c[m, n] = acc[n]
            else:
                for n in range(n_):
                    c[m, n] = c[m, n] + acc[n]
            k0 = k1
    return c


@njit(cache=True, nogil=True)
def _sgemm_m1(a, b, c):
    """MLAS's M = 1 kernel (no FMA): products of 4 consecutive k summed left to right, each
    group added to C; then a group of 2 and a single k for the remainder."""
    k_ = a.shape[0]
    n_ = b.shape[1]
    for n in range(n_):
        c[n] = np.float32(0.0)
    k = 0
    while k + 4 <= k_:
        for n in range(n_):
            g = a[k] * b[k, n] + a[k + 1] * b[k + 1, n]
            g = g + a[k + 2] * b[k + 2, n]
            g = g + a[k + 3] * b[k + 3, n]
            c[n] = g + c[n]
        k += 4
    if k_ - k >= 2:
        for n in range(n_):
            c[n] = (a[k] * b[k, n] + a[k + 1] * b[k + 1, n]) + c[n]
        k += 2
    if k_ - k == 1:
        for n in range(n_):
            c[n] = a[k] * b[k, n] + c[n]
    return c


@njit(cache=True, nogil=True)
def _lanes8(row, v):
    """8 float32 lanes: lane j sums row[k]·v[k] (rounded products) over k ≡ j (mod 8), in k order
    (scalar lanes, no allocation; `_lanes8_reference` is the one-index-at-a-time form)."""
    z = np.float32(0.0)
    l0, l1, l2, l3, l4, l5, l6, l7 = z, z, z, z, z, z, z, z
    k_ = row.shape[0]
    full = k_ - k_ % 8
    for k in range(0, full, 8):
        l0 = l0 + row[k] * v[k]
        l1 = l1 + row[k + 1] * v[k + 1]
        l2 = l2 + row[k + 2] * v[k + 2]
        l3 = l3 + row[k + 3] * v[k + 3]
        l4 = l4 + row[k + 4] * v[k + 4]
        l5 = l5 + row[k + 5] * v[k + 5]
        l6 = l6 + row[k + 6] * v[k + 6]
        l7 = l7 + row[k + 7] * v[k + 7]
    t = k_ - full
    if t > 0:
        l0 = l0 + row[full] * v[full]
    if t > 1:
        l1 = l1 + row[full + 1] * v[full + 1]
    if t > 2:
        l2 = l2 + row[full + 2] * v[full + 2]
    if t > 3:
        l3 = l3 + row[full + 3] * v[full + 3]
    if t > 4:
        l4 = l4 + row[full + 4] * v[full + 4]
    if t > 5:
        l5 = l5 + row[full + 5] * v[full + 5]
    if t > 6:
        l6 = l6 + row[full + 6] * v[full + 6]
    return (l0, l1, l2, l3, l4, l5, l6, l7)


def _lanes8_reference(row, v) -> np.ndarray:
    acc = np.zeros(8, np.float32)
    for k in range(row.shape[0]):
        acc[k % 8] = acc[k % 8] + np.float32(row[k]) * np.float32(v[k])
    return acc


@njit(cache=True, nogil=True)
def depthwise_m1(xpf, w, wp, dh, dw, ho, wo, out):
    """A stride-1 depthwise convolution (one input channel per group) without im2col, each output
    in the order of `_sgemm_m1` over its taps k = (i, j): products of 4 consecutive taps summed
    left to right, each group added to the running sum, then a group of 2 and a single tap.

    xpf (C, L): each channel's zero-padded input (width wp) flattened, with at least one extra
    zero row; w (C, kh, kw); out (C, ho·wo). Outputs are computed on the padded width (position
    p = oy·wp + ox reads p + i·dh·wp + j·dw: one contiguous loop), columns ox ≥ wo discarded."""
    c_, kh, kw = w.shape
    kk = kh * kw
    n = ho * wp
    acc = np.empty(n, np.float32)
    for c in range(c_):
        for p in range(n):
            acc[p] = np.float32(0.0)
        k = 0
        while k + 4 <= kk:
            o0 = (k // kw) * dh * wp + (k % kw) * dw
            o1 = ((k + 1) // kw) * dh * wp + ((k + 1) % kw) * dw
            o2 = ((k + 2) // kw) * dh * wp + ((k + 2) % kw) * dw
            o3 = ((k + 3) // kw) * dh * wp + ((k + 3) % kw) * dw
            w0 = w[c, k // kw, k % kw]
            w1 = w[c, (k + 1) // kw, (k + 1) % kw]
            w2 = w[c, (k + 2) // kw, (k + 2) % kw]
            w3 = w[c, (k + 3) // kw, (k + 3) % kw]
            r0, r1, r2, r3 = xpf[c, o0:o0 + n], xpf[c, o1:o1 + n], xpf[c, o2:o2 + n], xpf[c, o3:o3 + n]
            for p in range(n):  # views indexed from 0: no negative-index wrap, the loop vectorises
                g = w0 * r0[p] + w1 * r1[p]
                g = g + w2 * r2[p]
                g = g + w3 * r3[p]
                acc[p] = g + acc[p]
            k += 4
        if kk - k >= 2:
            o0 = (k // kw) * dh * wp + (k % kw) * dw
            o1 = ((k + 1) // kw) * dh * wp + ((k + 1) % kw) * dw
            w0 = w[c, k // kw, k % kw]
            w1 = w[c, (k + 1) // kw, (k + 1) % kw]
            r0, r1 = xpf[c, o0:o0 + n], xpf[c, o1:o1 + n]
            for p in range(n):
                acc[p] = (w0 * r0[p] + w1 * r1[p]) + acc[p]
            k += 2
        if kk - k == 1:
            o0 = (k // kw) * dh * wp + (k % kw) * dw
            w0 = w[c, k // kw, k % kw]
            r0 = xpf[c, o0:o0 + n]
            for p in range(n):
                acc[p] = w0 * r0[p] + acc[p]
        for oy in range(ho):
            for ox in range(wo):
                out[c, oy * wo + ox] = acc[oy * wp + ox]
    return out


@njit(cache=True, nogil=True)
def _sgemm_n1(a, v, c):
    """MLAS's transposed M1 kernel for an (M, K) x (K, 1) product: per row 8 lanes, reduced
    differently for rows in blocks of 4, then a block of 2, then a single row."""
    m_ = a.shape[0]
    m = 0
    while m + 4 <= m_:
        for r in range(m, m + 4):
            l = _lanes8(a[r], v)
            c[r] = (((l[0] + l[1]) + l[2]) + l[3]) + (((l[4] + l[5]) + l[6]) + l[7])
        m += 4
    if m_ - m >= 2:
        for r in range(m, m + 2):
            l = _lanes8(a[r], v)
            c[r] = ((l[2] + l[0]) + (l[6] + l[4])) + ((l[3] + l[1]) + (l[7] + l[5]))
        m += 2
    if m_ - m == 1:
        l = _lanes8(a[m], v)
        c[m] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
    return c


def stride_k(n: int, k: int, packed: bool) -> int:
    """The K slice MLAS uses for an (M, K) x (K, N) product."""
    if packed:
        return PACKED_STRIDE_K
    sn, sk = STRIDE_N, STRIDE_K
    if n >= k:
        while sk // 2 >= k:
            sn, sk = sn * 2, sk // 2
    else:
        while sn > 16 and sn // 2 >= n:
            sk, sn = sk * 2, sn // 2
    return sk


def sgemm(a: np.ndarray, b: np.ndarray, *, packed: bool, init: np.ndarray | None = None,
          trans_a: bool = False) -> np.ndarray:
    """(M, K) x (K, N) float32 product in MLAS order (see the module docstring); `init` (M, N) is
    the C that the slices are added to (ORT's Gemm with a bias C); `trans_a`: A was given
    transposed (MLAS then keeps the default K slice)."""
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    if init is None:
        c = np.empty((a.shape[0], b.shape[1]), np.float32)
    else:
        c = np.array(np.broadcast_to(init, (a.shape[0], b.shape[1])), np.float32)
    if a.shape[1] == 0:
        if init is None:
            c[:] = 0
        return c
    if a.shape[0] == 1 and not packed and not trans_a and init is None:
        _sgemm_m1(a[0], b, c[0])
        return c
    if b.shape[1] == 1 and not packed and not trans_a and init is None:
        _sgemm_n1(a, np.ascontiguousarray(b[:, 0]), c[:, 0])
        return c
    sk = STRIDE_K if (trans_a and not packed and b.shape[1] < a.shape[1]) else stride_k(b.shape[1], a.shape[1], packed)
    return _sgemm(a, b, sk, c, init is not None)


@njit(cache=True, nogil=True)
def _sgemm_groups(wg, cols, sk, y):
    """y[g] = wg[g] @ cols[g] for every group, each product as `sgemm(packed=False)` computes it."""
    g_, m_, k_ = wg.shape
    n_ = cols.shape[2]
    for g in range(g_):
        if k_ == 0:
            y[g, :, :] = np.float32(0.0)
        elif m_ == 1:
            _sgemm_m1(wg[g, 0], cols[g], y[g, 0])
        elif n_ == 1:
            _sgemm_n1(wg[g], cols[g, :, 0].copy(), y[g, :, 0])
        else:
            _sgemm(wg[g], cols[g], sk, y[g], False)
    return y


@njit(cache=True, nogil=True)
def _sgemm_groups_t(wg_t, cols, sk, y):
    """`_sgemm_groups` for M > N > 1 through the transposed product: y[g]ᵀ = cols[g]ᵀ @ wg[g]ᵀ with
    `_sgemm` — every output is the same FMA chain over the same k slices (fma(a, b, c) = fma(b, a, c)),
    but the vectorised loop runs over the long M side. wg_t (G, K, M) is the prepared transpose."""
    g_, k_, m_ = wg_t.shape
    n_ = cols.shape[2]
    bt = np.empty((n_, k_), np.float32)
    ct = np.empty((n_, m_), np.float32)
    for g in range(g_):
        for k in range(k_):
            for n in range(n_):
                bt[n, k] = cols[g, k, n]
        _sgemm(bt, wg_t[g], sk, ct, False)
        for m in range(m_):
            for n in range(n_):
                y[g, m, n] = ct[n, m]
    return y


def sgemm_groups(wg: np.ndarray, cols: np.ndarray, y: np.ndarray, wg_t: np.ndarray | None = None) -> np.ndarray:
    """Grouped product in one call: wg (G, M, K), cols (G, K, N) float32 → y (G, M, N), each group
    exactly `sgemm(wg[g], cols[g], packed=False)` (a convolution's groups; depthwise: M = 1).
    With wg_t = wg transposed to (G, K, M) (prepared once per model), M > N > 1 products run
    transposed (`_sgemm_groups_t`, same results, faster for few output pixels)."""
    wg = np.ascontiguousarray(wg, np.float32)
    cols = np.ascontiguousarray(cols, np.float32)
    m_, k_, n_ = wg.shape[1], wg.shape[2], cols.shape[2]
    sk = stride_k(n_, k_, False) if k_ else 1  # K = 0: nothing to slice
    if wg_t is not None and k_ and m_ > n_ > 1:
        return _sgemm_groups_t(wg_t, cols, sk, y)
    return _sgemm_groups(wg, cols, sk, y)
