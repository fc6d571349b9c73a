"""Numba kernels for the prepared TFLite runner: one call per CONV_2D / DEPTHWISE_CONV_2D computes the
exact integer accumulators and requantizes them with the LiteRT path's rule, writing the output codes.

The NumPy closures of `qsim.tflite.prepared` (im2col in float64 + `qsim.kernels` requantization) are the
reference these loops reproduce element by element (tests/test_tflite.py compares both, and the
straightforward runner, on every tensor of every invocation):

mode 0  gemmlowp (LiteRT reference): RDBPOT(SRDHM(wrap32(acc << left), M), right)
mode 1  tflite_optimized: (SRDHM(wrap32(acc << left), M) + half) >> right
mode 2  xnnpack: rne(fl32(fl32(acc) · scale[c]))
then + z_out, clamped to [lo, hi]. Only used when 0 <= left, right <= 31 (else the NumPy path, which raises).
"""

from __future__ import annotations

import numpy as np
from numba import njit

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


@njit(cache=True, inline="always")
def _requant(acc, ch, mode, mult, left, right, fscale, z_out, lo, hi):
    if mode == 2:
        v = np.float32(np.float32(acc) * fscale[ch])
        r = np.int64(np.rint(v))
    else:
        a = acc << left[ch]
        a = ((a + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        b = mult[ch]
        ab = a * b
        if ab >= 0:
            v = ab + (1 << 30)
        else:
            v = ab + (1 - (1 << 30))
        if v >= 0:
            q = v >> 31
        else:
            q = -((-v) >> 31)
        if a == INT32_MIN and b == INT32_MIN:
            q = INT32_MAX
        e = right[ch]
        if mode == 0:
            mask = (np.int64(1) << e) - 1
            rem = q & mask
            thr = (mask >> 1) + (1 if q < 0 else 0)
            r = (q >> e) + (1 if rem > thr else 0)
        else:
            rounder = (np.int64(1) << (e - 1)) if e > 0 else np.int64(0)
            r = (q + rounder) >> e
    r += z_out
    if r < lo:
        r = lo
    elif r > hi:
        r = hi
    return r


@njit(cache=True, nogil=True)
def conv_requant(x, z_in, w, bias, sh, sw, dh, dw, pt, pl, mode, mult, left, right, fscale, z_out, lo, hi, out):
    """x (N,H,W,C) codes, w (OC,KH,KW,C) int32, bias (OC,) int64 -> out (N,HO,WO,OC) codes."""
    n, h, wd, c = x.shape
    oc, kh, kw, _ = w.shape
    ho, wo = out.shape[1], out.shape[2]
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for o in range(oc):
                    acc = np.int64(bias[o])
                    for i in range(kh):
                        ih = oh * sh + i * dh - pt
                        if ih < 0 or ih >= h:
                            continue
                        for j in range(kw):
                            iw = ow * sw + j * dw - pl
                            if iw < 0 or iw >= wd:
                                continue
                            for ci in range(c):
                                acc += (np.int64(x[b, ih, iw, ci]) - z_in) * w[o, i, j, ci]
                    out[b, oh, ow, o] = _requant(acc, o, mode, mult, left, right, fscale, z_out, lo, hi)


@njit(cache=True, nogil=True)
def depthwise_requant(x, z_in, w, bias, sh, sw, dh, dw, pt, pl, mode, mult, left, right, fscale, z_out, lo, hi,
                      out):
    """x (N,H,W,C) codes, w (KH,KW,C) int32 (depth multiplier 1), bias (C,) int64 -> out (N,HO,WO,C)."""
    n, h, wd, c = x.shape
    kh, kw, _ = w.shape
    ho, wo = out.shape[1], out.shape[2]
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for ci in range(c):
                    acc = np.int64(bias[ci])
                    for i in range(kh):
                        ih = oh * sh + i * dh - pt
                        if ih < 0 or ih >= h:
                            continue
                        for j in range(kw):
                            iw = ow * sw + j * dw - pl
                            if iw < 0 or iw >= wd:
                                continue
                            acc += (np.int64(x[b, ih, iw, ci]) - z_in) * w[i, j, ci]
                    out[b, oh, ow, ci] = _requant(acc, ci, mode, mult, left, right, fscale, z_out, lo, hi)
