"""The prepared float LSTM (constant W, R, B, P; Sigmoid/Tanh/Tanh): each direction in one Numba call.

`f32_ops.lstm` spends ~20 µs of Python per call on a one-step sequence (the silero VAD decoder:
weights transposed / looked up, the bias summed, constants rebuilt, two `sgemm` calls and the cell).
`lstm_dir` runs the same operations for a whole direction: X·Wᵀ as `sgemm(packed=True)` computes it
(`_sgemm` with K slice 256 from zero), per step H·Rᵀ added onto that step's rows as
`sgemm(packed=True, init=...)` does (`_sgemm` accumulating), then `f32_ops.lstm_cell`, so every
output equals the generic op's bit for bit (tests/test_run_onnx_plan.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.f32_ops import lstm_cell
from qsim.onnxrun.f32gemm import PACKED_STRIDE_K, _sgemm

F32 = np.float32


@njit(cache=True, nogil=True)
def lstm_dir(x2, w_t, r_t, b_sum, h0, c0, pi, po, pf, cl, cth, rev, ys, hn, cn):
    """One direction: x2 (T·N, I), w_t (I, 4H), r_t (H, 4H), h0 / c0 (N, H); ys (T, N, H), hn / cn (N, H)."""
    t_, n_, hs = ys.shape
    xw = np.empty((t_ * n_, 4 * hs), np.float32)
    _sgemm(x2, w_t, PACKED_STRIDE_K, xw, False)
    ht = h0.copy()
    ct = c0.copy()
    gates = np.empty((n_, 4 * hs), np.float32)
    h_new = np.empty((n_, hs), np.float32)
    c_new = np.empty((n_, hs), np.float32)
    for s in range(t_):
        step = t_ - 1 - s if rev else s
        gates[:, :] = xw[step * n_:(step + 1) * n_]
        _sgemm(ht, r_t, PACKED_STRIDE_K, gates, True)
        lstm_cell(gates, b_sum, ct, pi, po, pf, cl, cth, h_new, c_new)
        ht[:, :] = h_new
        ct[:, :] = c_new
        ys[step] = ht
    hn[:, :] = ht
    cn[:, :] = ct


def spec_lstm(generic, node, attrs, consts, ex):
    """LSTM with constant W, R, B, P, no sequence_lens, layout 0, no clip / input_forget and the
    default activations: per direction `lstm_dir`; anything else the generic op."""
    from qsim.onnxrun.f32_ops import lstm_cell_consts

    consts = consts + [None] * (8 - len(consts))
    names = list(node.input) + [""] * (8 - len(node.input))
    w, r, b, p = consts[1], consts[2], consts[3], consts[7]
    if w is None or r is None or names[4] or any(names[i] and consts[i] is None for i in (3, 7)):
        return None
    if int(attrs.get("layout", 0)) or attrs.get("clip") is not None or int(attrs.get("input_forget", 0)):
        return None
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}.get(direction)
    if dirs is None or any(a != n for a, n in zip(acts, ["Sigmoid", "Tanh", "Tanh"] * 2)) \
            or acts and len(acts) != 3 * len(dirs):
        return None
    if w.dtype != F32 or r.dtype != F32 or w.ndim != 3 or r.ndim != 3 or w.shape[0] != len(dirs) \
            or r.shape[0] != len(dirs) or w.shape[2] == 0:
        return None
    nd, hs = w.shape[0], r.shape[-1]
    if w.shape[1] != 4 * hs or r.shape[1] != 4 * hs:
        return None
    prepared = []
    for d in range(nd):
        bias = np.zeros(8 * hs, F32) if b is None else b[d].astype(F32)
        pvec = [np.zeros(hs, F32)] * 3 if p is None else np.split(p[d].astype(F32), 3)
        prepared.append((np.ascontiguousarray(w[d].T), np.ascontiguousarray(r[d].T),
                         (bias[:4 * hs] + bias[4 * hs:]).astype(F32),
                         *(np.ascontiguousarray(v, F32) for v in pvec)))
    cl, cth = lstm_cell_consts()
    fixed = [(i, consts[i]) for i in (1, 2, 3, 7) if names[i]]

    def fast(ctx, args, attrs_):
        args = args + [None] * (8 - len(args))
        x, h0, c0 = args[0], args[5], args[6]
        if type(x) is not np.ndarray or x.ndim != 3 or x.shape[2] != w.shape[2] or x.dtype.kind != "f" \
                or any(args[i] is not c for i, c in fixed) or args[4] is not None:
            return generic(ctx, args, attrs_)
        t, n, _ = x.shape
        for s in (h0, c0):
            if s is not None and (type(s) is not np.ndarray or s.shape != (nd, n, hs)):
                return generic(ctx, args, attrs_)
        x2 = np.ascontiguousarray(x.reshape(t * n, -1), F32)
        ys = np.zeros((t, nd, n, hs), F32)
        hn = np.zeros((nd, n, hs), F32)
        cn = np.zeros((nd, n, hs), F32)
        for d, rev in enumerate(dirs):
            w_t, r_t, b_sum, pi, po, pf = prepared[d]
            ht = np.zeros((n, hs), F32) if h0 is None else np.ascontiguousarray(h0[d], F32)
            ct = np.zeros((n, hs), F32) if c0 is None else np.ascontiguousarray(c0[d], F32)
            lstm_dir(x2, w_t, r_t, b_sum, ht, ct, pi, po, pf, cl, cth, rev, ys[:, d], hn[d], cn[d])
        return [ys, hn, cn]

    return fast
