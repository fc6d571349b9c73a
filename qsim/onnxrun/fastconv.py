"""The prepared float Conv (1-D / 2-D, not depthwise) in one Numba call.

`f32_ops.conv_prepared` does im2col, the grouped MLAS-order product and the bias add as
separate NumPy / Numba calls; on the silero VAD's few-pixel convolutions its Python costs
more than the arithmetic (encoder.0: ~9 µs of 20). `conv_once` runs the same three stages
in one compiled call — the same `_im2col2d` rows, the same `_sgemm_groups` /
`_sgemm_groups_t` products with the same K slice, then y + bias in float32 — so its result
equals `conv_prepared`'s bit for bit (tests/test_run_onnx_plan.py compares them).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.f32_ops import _im2col2d
from qsim.onnxrun.f32gemm import _sgemm_groups, _sgemm_groups_t, stride_k

F32 = np.float32


@njit(cache=True, nogil=True)
def conv_once(x, wg, wg_t, bias, p, y):
    """y (N, G, O/G, ho·wo) = Conv of x (N, C, H, W) float32 with wg (G, O/G, C/G·kh·kw) (wg_t its
    transpose), then + bias[o] where p[12] (bias (O,) float32). p = kh, kw, sh, sw, dh, dw, pad top,
    pad left, ho, wo, K slice, product kind (0 plain, 1 transposed), has bias, pointwise (no im2col)."""
    kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, sk, kind, has_bias, pointwise = (
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13])
    n_, c_ = x.shape[0], x.shape[1]
    g_, og, k_ = wg.shape
    npix = ho * wo
    cols = np.empty((c_ * kh * kw, npix), np.float32)
    for i in range(n_):
        if pointwise:
            src = x[i].reshape(g_, k_, npix)
        else:
            _im2col2d(x[i], kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, cols)
            src = cols.reshape(g_, k_, npix)
        if kind == 1:
            _sgemm_groups_t(wg_t, src, sk, y[i])
        else:
            _sgemm_groups(wg, src, sk, y[i])
        if has_bias:
            yi = y[i]
            for g in range(g_):
                for o in range(og):
                    b = bias[g * og + o]
                    for q in range(npix):
                        yi[g, o, q] = yi[g, o, q] + b
    return y


def conv_params(win, kernel, c: int, g: int, og: int, has_bias: bool) -> np.ndarray | None:
    """`conv_once`'s parameter vector for one input shape's window, or None where it does not
    apply (3-D and higher kernels, depthwise convolutions: `conv_prepared` runs them)."""
    if len(kernel) not in (1, 2):
        return None
    k2 = tuple(kernel) if len(kernel) == 2 else (1, kernel[0])
    one = len(kernel) == 1
    st = (1, win.strides[0]) if one else tuple(win.strides)
    dl = (1, win.dilations[0]) if one else tuple(win.dilations)
    bg = (0, win.begin[0]) if one else tuple(win.begin)
    out = (1, win.out[0]) if one else tuple(win.out)
    kk = k2[0] * k2[1]
    npix = out[0] * out[1]
    pointwise = kk == 1 and all(s == 1 for s in win.strides) and not any(win.begin) and not any(win.end)
    if og == 1 and c == g and npix > 1 and not pointwise:
        return None  # depthwise: conv_prepared's M = 1 path without im2col
    k_ = (c // g) * kk
    sk = stride_k(npix, k_, False) if k_ else 1
    kind = 1 if (k_ and og > npix > 1) else 0
    return np.array([k2[0], k2[1], st[0], st[1], dl[0], dl[1], bg[0], bg[1], out[0], out[1], sk, kind,
                     int(has_bias), int(pointwise)], np.int64)
