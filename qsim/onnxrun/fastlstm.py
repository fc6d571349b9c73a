"""The prepared float LSTM and DynamicQuantizeLSTM (constant weights; Sigmoid/Tanh/Tanh): each
direction in one Numba call.

`f32_ops.lstm` spends ~20 µs of Python per call on a one-step sequence (the silero VAD decoder:
weights transposed / looked up, the bias summed, constants rebuilt, two `sgemm` calls and the cell).
`lstm_dir` runs the same operations for a whole direction: X·Wᵀ as `sgemm(packed=True)` computes it
(`_sgemm` with K slice 256 from zero), per step H·Rᵀ added onto that step's rows as
`sgemm(packed=True, init=...)` does (`_sgemm` accumulating), then `f32_ops.lstm_cell`, so every
output equals the generic op's bit for bit (tests/test_run_onnx_plan.py).

`dyn_lstm_dir` does the same for `contrib.dynamic_quantize_lstm` (~70 µs a call there): X and each
step's H quantized as DynamicQuantizeLinear (`fastdynamic.dql_pass`), the integer products as exact
float32 sums (`exactconv.exact_dots`) where no sum can reach 2^24 or leave the accumulator, scaled
by fl(a_s · w_s), then the same cell (tests/test_run_onnx_fastdynamic.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.exactconv import exact_dots
from qsim.onnxrun.f32_ops import lstm_cell
from qsim.onnxrun.f32gemm import PACKED_STRIDE_K, _sgemm
from qsim.onnxrun.fastdynamic import dql_pass

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


def _directions(attrs) -> list | None:
    """[reverse?] per direction of an LSTM with the default activations; None for anything else."""
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}.get(direction)
    if dirs is None or any(a != n for a, n in zip(acts, ["Sigmoid", "Tanh", "Tanh"] * 2)) \
            or acts and len(acts) != 3 * len(dirs):
        return None
    return dirs


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
    dirs = _directions(attrs)
    if dirs is None:
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


# -- DynamicQuantizeLSTM -----------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _dyn_product(a, w_f, w_scale, q, cols, acc, out):
    """`contrib._dyn_matmul` of a (M, K) float32 with the prepared weight w_f (N, K) = (codes − zero
    point)ᵀ as float32: a quantized as DynamicQuantizeLinear (`fastdynamic.dql_pass`), the exact integer
    sums (`exactconv.exact_dots`; the caller has proven them below 2^24), then fl(acc · fl(a_s · w_s)).
    Returns False when a is not finite (or its scale underflows): the generic op then runs."""
    ok, s, z = dql_pass(a.reshape(-1), q.reshape(-1))
    if not ok:
        return False
    zf = np.float32(z)
    for m in range(a.shape[0]):
        for k in range(a.shape[1]):
            cols[m, k] = np.float32(q[m, k]) - zf
    exact_dots(w_f, cols, acc)
    one = w_scale.size == 1
    for m in range(a.shape[0]):
        for j in range(w_f.shape[0]):
            out[m, j] = acc[m, j] * (s * w_scale[0] if one else s * w_scale[j])
    return True


@njit(cache=True, nogil=True)
def dyn_lstm_dir(x2, w_f, w_scale, r_f, r_scale, b_sum, h0, c0, pi, po, pf, cl, cth, rev, ys, hn, cn):
    """One direction of `contrib.dynamic_quantize_lstm` (Sigmoid/Tanh/Tanh): X·W and per step H·R as
    `_dyn_product`, then `f32_ops.lstm_cell` on fl(xw + hr). False when a product's input is not finite."""
    t_, n_, hs = ys.shape
    g4 = 4 * hs
    xw = np.empty((t_ * n_, g4), np.float32)
    if not _dyn_product(x2, w_f, w_scale, np.empty(x2.shape, np.uint8), np.empty(x2.shape, np.float32),
                        np.empty((t_ * n_, g4), np.float32), xw):
        return False
    ht = h0.copy()
    ct = c0.copy()
    q = np.empty((n_, hs), np.uint8)
    cols = np.empty((n_, hs), np.float32)
    acc = np.empty((n_, g4), np.float32)
    hr = np.empty((n_, g4), np.float32)
    pre = np.empty((n_, g4), np.float32)
    h_new = np.empty((n_, hs), np.float32)
    c_new = np.empty((n_, hs), np.float32)
    for s in range(t_):
        step = t_ - 1 - s if rev else s
        if not _dyn_product(ht, r_f, r_scale, q, cols, acc, hr):
            return False
        for r in range(n_):
            for j in range(g4):
                pre[r, j] = xw[step * n_ + r, j] + hr[r, j]
        lstm_cell(pre, b_sum, ct, pi, po, pf, cl, cth, h_new, c_new)
        ht[:, :] = h_new
        ct[:, :] = c_new
        ys[step] = ht
    hn[:, :] = ht
    cn[:, :] = ct
    return True


def _per_dir(v, d: int, nd: int):
    """`contrib.dynamic_quantize_lstm`'s per-direction scale / zero point."""
    if v is None:
        return None
    v = np.asarray(v)
    return v[d] if v.ndim >= 1 and v.shape[0] == nd and v.size > 1 or v.ndim == 2 else v.reshape(-1)[0]


def _dyn_weight(codes, scale, zp, ex):
    """(w_f (N, K) float32 = (codes − zp)ᵀ, scale (1 or N,) float32) when every exact sum of this
    K×N weight stays below 2^24 and within the accumulator for any uint8 input, else None."""
    k, n = codes.shape
    zb = np.zeros((), np.int64) if zp is None else np.asarray(zp).astype(np.int64).reshape(-1)
    sc = np.asarray(scale, F32).reshape(-1)
    if zb.size not in (1, n) or sc.size not in (1, n) or codes.dtype.name not in ("int8", "uint8") \
            or (ex.options["pair_saturate16"] and codes.dtype == np.int8):
        return None
    wsh = codes.astype(np.int64) - np.broadcast_to(zb, (n,))[None, :]
    bound = k * 255 * int(np.abs(wsh).max(initial=0))
    if bound >= 1 << 24 or bound > (1 << (ex.options["acc_bits"] - 1)) - 1:
        return None
    return np.ascontiguousarray(wsh.T.astype(F32)), np.ascontiguousarray(sc)


def spec_dynamic_quantize_lstm(generic, node, attrs, consts, ex):
    """DynamicQuantizeLSTM with constant weights, scales, zero points, B and P, no sequence_lens, the
    default activations: per direction `dyn_lstm_dir`; anything else the generic op."""
    from qsim.onnxrun.f32_ops import lstm_cell_consts

    consts = consts + [None] * (12 - len(consts))
    names = list(node.input) + [""] * (12 - len(node.input))
    w, r, b, p, w_s, w_z, r_s, r_z = (consts[i] for i in (1, 2, 3, 7, 8, 9, 10, 11))
    if w is None or r is None or names[4] or any(names[i] and consts[i] is None for i in (3, 7, 8, 9, 10, 11)):
        return None
    if attrs.get("clip") is not None or int(attrs.get("input_forget", 0)) or w_s is None or r_s is None:
        return None
    dirs = _directions(attrs)
    if dirs is None:
        return None
    if w.ndim != 3 or r.ndim != 3 or w.shape[0] != len(dirs) or r.shape[0] != len(dirs):
        return None
    nd, hs = w.shape[0], r.shape[1]
    if w.shape[2] != 4 * hs or r.shape[2] != 4 * hs or w.shape[1] == 0 or hs == 0:
        return None
    prepared = []
    for d in range(nd):
        wd = _dyn_weight(w[d], _per_dir(w_s, d, nd), _per_dir(w_z, d, nd), ex)
        rd = _dyn_weight(r[d], _per_dir(r_s, d, nd), _per_dir(r_z, d, nd), ex)
        if wd is None or rd is None:
            return None
        bias = np.zeros(8 * hs, F32) if b is None else b[d].astype(F32)
        pvec = [np.zeros(hs, F32)] * 3 if p is None else np.split(p[d].astype(F32), 3)
        prepared.append((*wd, *rd, (bias[:4 * hs] + bias[4 * hs:]).astype(F32),
                         *(np.ascontiguousarray(v, F32) for v in pvec)))
    cl, cth = lstm_cell_consts()
    fixed = [(i, consts[i]) for i in (1, 2, 3, 7, 8, 9, 10, 11) if names[i]]

    def fast(ctx, args, attrs_):
        args = args + [None] * (12 - len(args))
        x, h0, c0 = args[0], args[5], args[6]
        if type(x) is not np.ndarray or x.ndim != 3 or x.shape[2] != w.shape[1] or x.dtype != F32 \
                or any(args[i] is not c for i, c in fixed) or args[4] is not None:
            return generic(ctx, args, attrs_)
        t, n, _ = x.shape
        for s in (h0, c0):
            if s is not None and (type(s) is not np.ndarray or s.shape != (nd, n, hs)):
                return generic(ctx, args, attrs_)
        x2 = np.ascontiguousarray(x.reshape(t * n, -1))
        ys = np.zeros((t, nd, n, hs), F32)
        hn = np.zeros((nd, n, hs), F32)
        cn = np.zeros((nd, n, hs), F32)
        for d, rev in enumerate(dirs):
            w_f, w_sc, r_f, r_sc, b_sum, pi, po, pf = prepared[d]
            ht = np.zeros((n, hs), F32) if h0 is None else np.ascontiguousarray(h0[d], F32)
            ct = np.zeros((n, hs), F32) if c0 is None else np.ascontiguousarray(c0[d], F32)
            if not dyn_lstm_dir(x2, w_f, w_sc, r_f, r_sc, b_sum, ht, ct, pi, po, pf, cl, cth, rev, ys[:, d], hn[d],
                                cn[d]):
                return generic(ctx, args, attrs_)  # a non-finite input: the generic op reports it
        ctx.integer_node = True
        return [ys, hn, cn]

    return fast
