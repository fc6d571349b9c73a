"""Float (fp32 NumPy) executor of a sequential architecture: the reference the
quantized executor is measured against, and the forward pass of training.

Convolutions use im2col + one BLAS GEMM per conv group; pin BLAS to one thread
(OPENBLAS_NUM_THREADS=1) — on a busy small machine threaded BLAS is far slower.
"""

from __future__ import annotations

import numpy as np

from qsim.nets.models import Architecture, Conv, Flatten, Linear, MaxPool


def im2col(x: np.ndarray, kernel, stride, padding, pad_value=0) -> np.ndarray:
    """(N, C, H, W) → (N·Ho·Wo, C·kh·kw), columns ordered (c, i, j) like OIHW weights.

    Padding holds `pad_value` (the zero point for integer codes, so it stands for 0).
    One strided view, one copy."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ph or pw:
        xp = np.full((n, c, h + 2 * ph, w + 2 * pw), pad_value, dtype=x.dtype)
        xp[:, :, ph:ph + h, pw:pw + w] = x
    else:
        xp = np.ascontiguousarray(x)
    s_n, s_c, s_h, s_w = xp.strides
    view = np.lib.stride_tricks.as_strided(xp, shape=(n, ho, wo, c, kh, kw),
                                           strides=(s_n, s_h * sh, s_w * sw, s_c, s_h, s_w), writeable=False)
    return view.reshape(n * ho * wo, c * kh * kw)


def col2im(cols: np.ndarray, x_shape, kernel, stride, padding) -> np.ndarray:
    """Adjoint of `im2col` (sums overlapping patches): the input gradient of a conv."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cols = cols.reshape(n, ho, wo, c, kh, kw)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
            xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += patch
    return xp[:, :, ph:ph + h, pw:pw + w]


def grouped_cols(cols: np.ndarray, groups: int) -> np.ndarray:
    """(M, C·kh·kw) → (G, M, C/G·kh·kw): the im2col columns of each conv group."""
    m, k = cols.shape
    return cols.reshape(m, groups, k // groups).transpose(1, 0, 2)


def conv_forward(op: Conv, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conv output (N, O, Ho, Wo) before ReLU, and its im2col columns (kept for backward)."""
    n = x.shape[0]
    _, ho, wo = op.out_shape(x.shape[1:])
    cols = im2col(x, op.kernel, op.stride, op.padding)
    w2 = w.reshape(op.out_ch, -1)
    if op.groups == 1:
        y = cols @ w2.T
    else:
        g = op.groups
        wg = w2.reshape(g, op.out_ch // g, -1)
        y = np.matmul(grouped_cols(cols, g), wg.transpose(0, 2, 1))  # (G, M, O/G)
        y = y.transpose(1, 0, 2).reshape(-1, op.out_ch)
    y = y + b
    return y.reshape(n, ho, wo, op.out_ch).transpose(0, 3, 1, 2), cols


def maxpool(x: np.ndarray, size: int) -> np.ndarray:
    n, c, h, w = x.shape
    ho, wo = h // size, w // size
    v = x[:, :, : ho * size, : wo * size].reshape(n, c, ho, size, wo, size)
    return v.max(axis=(3, 5))


def forward(arch: Architecture, params: dict, x: np.ndarray, *, record: bool = False, batch_size: int | None = None):
    """Logits of `x` (N, C, H, W) float32. With `record`, also a trace
    {op name: (input, output)} of every MAC op, output taken after its fused ReLU.
    `batch_size` runs the samples in chunks (cache-friendly; same result)."""
    if batch_size is not None and len(x) > batch_size:
        chunks = [forward(arch, params, x[i:i + batch_size], record=record) for i in range(0, len(x), batch_size)]
        if not record:
            return np.concatenate(chunks)
        trace = {k: tuple(np.concatenate([c[1][k][j] for c in chunks]) for j in (0, 1)) for k in chunks[0][1]}
        return np.concatenate([c[0] for c in chunks]), trace
    h = np.asarray(x, dtype=np.float32)
    trace = {}
    for op in arch.ops:
        inp = h
        if isinstance(op, Conv):
            h, _ = conv_forward(op, h, params[f"{op.name}.w"], params[f"{op.name}.b"])
        elif isinstance(op, Linear):
            h = h @ params[f"{op.name}.w"].T + params[f"{op.name}.b"]
        elif isinstance(op, MaxPool):
            h = maxpool(h, op.size)
        elif isinstance(op, Flatten):
            h = h.reshape(h.shape[0], -1)
        else:  # pragma: no cover - Architecture only holds the ops above
            raise TypeError(f"unknown op {op!r}")
        if isinstance(op, (Conv, Linear)):
            if op.relu:
                h = np.maximum(h, 0)
            if record:
                trace[op.name] = (inp, h)
    return (h, trace) if record else h
