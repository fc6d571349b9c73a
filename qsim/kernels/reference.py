"""Plain int64 NumPy references of every integer kernel: slow, obvious, the test oracle.

Each follows the accumulation order documented in `qsim.kernels.accumulate` (bias first,
then k ascending; conv k = (input channel, kernel row, kernel column) lexicographic).
They assume validated inputs and share no code with the fast kernels.
"""

from __future__ import annotations

import numpy as np


def _add(acc, term, bits, saturate):
    """One emulated addition on whole arrays: (new acc, number of overflow events)."""
    s = acc + term
    if bits == 64:
        return s, 0
    half = 1 << (bits - 1)
    over = (s < -half) | (s > half - 1)
    if saturate:
        s = np.clip(s, -half, half - 1)
    else:
        s = ((s + half) & ((1 << bits) - 1)) - half
    return s, int(over.sum())


def ref_matmul(a, b, a_zero_point=0, b_zero_point=0, bias=None, acc_bits=32, overflow="wrap"):
    a = np.asarray(a, np.int64) - np.int64(a_zero_point)
    b = np.asarray(b, np.int64) - np.asarray(b_zero_point, np.int64)
    acc = np.zeros((a.shape[0], b.shape[1]), np.int64)
    count = 0
    if bias is not None:
        acc, c = _add(acc, np.asarray(bias, np.int64)[None, :], acc_bits, overflow == "saturate")
        count += c
    for k in range(a.shape[1]):
        acc, c = _add(acc, a[:, k, None] * b[None, k, :], acc_bits, overflow == "saturate")
        count += c
    return acc, count


def ref_matmul_grouped(a, b, group_size, a_zero_point=0, b_zero_point=0, acc_bits=32, overflow="wrap"):
    a = np.asarray(a, np.int64) - np.int64(a_zero_point)
    b = np.asarray(b, np.int64)
    K = a.shape[1]
    G = -(-K // group_size)
    zb = np.asarray(b_zero_point, np.int64)
    zb = np.broadcast_to(zb if zb.ndim == 2 else zb.reshape((1,) + zb.shape), (G, b.shape[1]))
    parts = np.zeros((a.shape[0], b.shape[1], G), np.int64)
    count = 0
    for g in range(G):
        acc = np.zeros((a.shape[0], b.shape[1]), np.int64)
        for k in range(g * group_size, min(K, (g + 1) * group_size)):
            acc, c = _add(acc, a[:, k, None] * (b[k] - zb[g])[None, :], acc_bits, overflow == "saturate")
            count += c
        parts[:, :, g] = acc
    return parts, count


def ref_matmul_pairsat16(a, b, a_zero_point=0, b_zero_point=0, bias=None, acc_bits=32, overflow="wrap"):
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    M, K = a.shape
    za = np.int64(a_zero_point)
    zb = np.broadcast_to(np.asarray(b_zero_point, np.int64), (b.shape[1],))
    sat = overflow == "saturate"
    acc = np.zeros((M, b.shape[1]), np.int64)
    count = 0
    if bias is not None:
        acc, c = _add(acc, np.asarray(bias, np.int64)[None, :], acc_bits, sat)
        count += c
    for k in range(0, K, 2):
        p = a[:, k, None] * b[None, k, :]
        if k + 1 < K:
            p = p + a[:, k + 1, None] * b[None, k + 1, :]
        count += int(((p > 32767) | (p < -32768)).sum())
        acc, c = _add(acc, np.clip(p, -32768, 32767), acc_bits, sat)
        count += c
    corr = -za * b.sum(0)[None, :] - zb[None, :] * a.sum(1)[:, None] + K * za * zb[None, :]
    acc, c = _add(acc, corr, acc_bits, sat)
    return acc, count + c


def ref_conv2d(x, w, x_zero_point=0, w_zero_point=0, bias=None, stride=(1, 1), padding=(0, 0, 0, 0),
               dilation=(1, 1), groups=1, acc_bits=32, overflow="wrap"):
    x = np.asarray(x, np.int64) - np.int64(x_zero_point)
    w = np.asarray(w, np.int64)
    O, Cg, kh, kw = w.shape
    w = w - np.broadcast_to(np.asarray(w_zero_point, np.int64), (O,))[:, None, None, None]
    N, C, H, W = x.shape
    top, left, bottom, right = padding
    xp = np.zeros((N, C, H + top + bottom, W + left + right), np.int64)   # padding holds the zero point
    xp[:, :, top:top + H, left:left + W] = x
    Ho = (H + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    Og = O // groups
    sat = overflow == "saturate"
    out = np.zeros((N, O, Ho, Wo), np.int64)
    count = 0
    for o in range(O):
        g = o // Og
        acc = np.zeros((N, Ho, Wo), np.int64)
        if bias is not None:
            acc, c = _add(acc, np.int64(bias[o]), acc_bits, sat)
            count += c
        for ci in range(Cg):
            for i in range(kh):
                for j in range(kw):
                    r0, c0 = i * dilation[0], j * dilation[1]
                    patch = xp[:, g * Cg + ci, r0:r0 + stride[0] * (Ho - 1) + 1:stride[0],
                               c0:c0 + stride[1] * (Wo - 1) + 1:stride[1]]
                    acc, c = _add(acc, patch * w[o, ci, i, j], acc_bits, sat)
                    count += c
        out[:, o] = acc
    return out, count
