"""ONNX Runtime's `com.microsoft` contrib ops of the QOperator format, with ORT's CPU semantics.

Each op reproduces the arithmetic of ORT's x86-64 CPU kernels (learnt from their source,
re-implemented here in NumPy; REFERENCE.md B1 for the shared float32 requantization):

* QLinearSigmoid / QLinearLeakyRelu: a 256-entry table built in float32 —
  x = fl(x_scale · (code − x_zp)), y = f(x) (MLAS logistic / leaky relu), code = QuantizeLinear(y).
* QLinearConcat: inputs whose scale and zero point equal the output's are copied, the
  others go through a table built the same way with the identity.
* QLinearAdd (AVX2 kernel): r_a = fl(s_a/s_c), r_b = fl(s_b/s_c), fixed = fl(z_c − fma(r_a, z_a, fl(r_b·z_b)))
  (the fused form assumes GCC contracts that scalar expression; random tests do not separate it);
  y = rne(fma(a, r_a, fma(b, r_b, fixed))), or, where one side is one value per broadcast
  span, fixed' = fl(fixed + fl(v·r)) and y = rne(fma(x, r_x, fixed')); saturated via int16.
* QLinearMul: ratio = fl(fl(s_a·s_b)/s_c); y = rne(fl(fl(float((a−z_a)(b−z_b))·ratio) + z_c)), saturated.
* QLinearGlobalAveragePool: exact integer sum minus z_x·n, y = rne(clamp(fl(float(sum)·s)))+z_y
  with s = fl(s_x / fl(s_y·n)).
* QLinearAveragePool: dequantize to float32, window sums (valid taps, row-major) / count,
  y = rne(fl(fl(sum/s_y) + z_y)).
* QLinearSoftmax: ORT's exp table (double exp, stored as float32) shifted to the row max,
  float32 sum, y = rne(fl(fl(t·floor(1/s_y)) / sum)) + z_y.
* QGemm: int32 C + exact A·B, then y = rne(fl(float(acc)·s)) + z_y, s = fl(fl(fl(α·s_a)·s_b)/s_y)
  (float output without y_scale: fl(float(acc)·s)).
* DynamicQuantizeMatMul / DynamicQuantizeLSTM: A quantized per call as DynamicQuantizeLinear,
  exact integer products, float32 scaling (float outputs; see the tests for the tolerance).
"""

from __future__ import annotations

import numpy as np

from numba import njit

from qsim.onnxrun.f32gemm import _fma32
from qsim.onnxrun.ops import _codes, _i64, _kernels, _scalar, _scale, dynamic_quantize_linear, int_range, quantize_fp32

MS_DOMAIN = "com.microsoft"
F32 = np.float32


@njit(cache=True, nogil=True)
def _add_kernel(a, b, ra, rb, fixed, mode, lo, hi, out):
    """mode 0: both tensors; 1: a is one value per span (pre-added to fixed); 2: b is."""
    for i in range(out.size):
        if mode == 0:
            v = _fma32(a[i], ra, _fma32(b[i], rb, fixed))
        elif mode == 1:
            v = _fma32(b[i], rb, fixed + a[i] * ra)
        else:
            v = _fma32(a[i], ra, fixed + b[i] * rb)
        q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
        out[i] = min(max(np.int64(q), lo), hi)
    return out


@njit(cache=True, nogil=True)
def _mul_kernel(a, b, za, zb, ratio, zc, lo, hi, out):
    for i in range(out.size):
        p = (np.int64(a[i]) - za) * (np.int64(b[i]) - zb)
        v = np.float32(p) * ratio + zc
        q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
        out[i] = min(max(np.int64(q), lo), hi)
    return out


@njit(cache=True, nogil=True)
def _softmax_rows(rows, table, y_scale, zy, signed, out):
    d = rows.shape[1]
    t = np.empty(d, np.float32)
    for r in range(rows.shape[0]):
        mx = rows[r, 0]
        for j in range(d):
            mx = max(mx, rows[r, j])
        s = np.float32(0.0)
        for j in range(d):
            if signed:
                t[j] = table[(127 - mx + rows[r, j]) & 255]
            else:
                t[j] = table[255 - mx + rows[r, j]]
            s = s + t[j]
        for j in range(d):
            q = np.int64(np.rint((t[j] * y_scale) / s)) + zy
            if signed:
                v = 255 if q > 255 else q
                out[r, j] = ((v + 128) & 255) - 128
            else:
                out[r, j] = 255 if q > 255 else q
    return out


def _fma(a, b, c):
    """float32 fused multiply-add, exact product in float64 then one rounding (float32 inputs)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(F32)


def _zp(ctx, z, like, what):
    if z is None:
        return 0
    if z.dtype != like.dtype:
        raise ctx.error(f"{what} has element type {z.dtype.name} but its tensor has {like.dtype.name}")
    return int(_scalar(ctx, _i64(z), what))


def _s(ctx, s, what) -> F32:
    return F32(_scalar(ctx, _scale(ctx, s, what), what))


def _sat(ctx, v: np.ndarray, dtype) -> np.ndarray:
    lo, hi = int_range(dtype)
    return np.clip(v, lo, hi).astype(dtype)


# -- lookup tables -----------------------------------------------------------------------------
def _table(x_s, x_z, y_s, y_z, dtype, fn) -> np.ndarray:
    """ORT's 256-entry table, indexed by the code's byte (int8 codes by their two's complement)."""
    lo, hi = int_range(dtype)
    codes = np.arange(256, dtype=np.int64)
    values = codes.astype(np.uint8).view(dtype).astype(np.int64) if dtype == np.int8 else codes
    x = (F32(x_s) * (values - x_z).astype(F32)).astype(F32)
    y = fn(x).astype(F32)
    return quantize_fp32(y, F32(y_s), np.asarray(y_z, np.int64), lo, hi).astype(dtype)


def _lookup(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[x.view(np.uint8).astype(np.intp)]


def _unary_table(fn_of_attrs):
    def op(ctx, inputs, attrs):
        x, x_s, x_z, y_s, y_z = (inputs + [None] * 5)[:5]
        _codes(ctx, x, "X")
        zx, zy = _zp(ctx, x_z, x, "X_zero_point"), _zp(ctx, y_z, x, "Y_zero_point")
        table = _table(_s(ctx, x_s, "X_scale"), zx, _s(ctx, y_s, "Y_scale"), zy, x.dtype, fn_of_attrs(attrs))
        ctx.integer_node = True
        return [_lookup(x, table)]

    return op


def _sigmoid_fn(attrs):
    from qsim.onnxrun.f32_ops import logistic

    return logistic


def _leaky_fn(attrs):
    alpha = F32(attrs.get("alpha", 0.01))
    return lambda x: np.where(x >= 0, x, (x * alpha).astype(F32))


def qlinear_concat(ctx, inputs, attrs):
    y_s, y_z = inputs[0], inputs[1]
    rest = inputs[2:]
    if len(rest) % 3 or not rest:
        raise ctx.error("inputs after Y_scale, Y_zero_point must be (tensor, scale, zero point) triples")
    ys = _s(ctx, y_s, "Y_scale")
    dtype = y_z.dtype
    zy = int(_scalar(ctx, _i64(y_z), "Y_zero_point"))
    parts = []
    for i in range(0, len(rest), 3):
        x, xs, xz = rest[i:i + 3]
        if x.dtype != dtype:
            raise ctx.error(f"input {i // 3} has element type {x.dtype.name}, output {dtype.name}")
        sx, zx = _s(ctx, xs, "scale"), int(_scalar(ctx, _i64(xz), "zero point"))
        if sx == ys and zx == zy:
            parts.append(x)
        else:
            parts.append(_lookup(x, _table(sx, zx, ys, zy, dtype, lambda v: v)))
    ctx.integer_node = True
    try:
        return [np.concatenate(parts, axis=int(attrs["axis"]))]
    except ValueError as exc:
        raise ctx.error(f"cannot concatenate shapes {[p.shape for p in parts]}: {exc}") from None


# -- binary ops ------------------------------------------------------------------------------
def _binary_inputs(ctx, inputs):
    a, a_s, a_z, b, b_s, b_z, c_s, c_z = (inputs + [None] * 8)[:8]
    _codes(ctx, a, "A")
    if b.dtype != a.dtype:
        raise ctx.error(f"A and B have different element types {a.dtype.name} and {b.dtype.name}")
    za, zb = _zp(ctx, a_z, a, "A_zero_point"), _zp(ctx, b_z, b, "B_zero_point")
    zc = _zp(ctx, c_z, a, "C_zero_point")
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ctx.error(f"shapes {a.shape} and {b.shape} do not broadcast") from None
    ctx.integer_node = True
    return a, _s(ctx, a_s, "A_scale"), za, b, _s(ctx, b_s, "B_scale"), zb, _s(ctx, c_s, "C_scale"), zc, shape


def _scalar_side(x: np.ndarray, shape) -> bool:
    """Is x one value per innermost broadcast span (ORT's broadcaster hands the kernel a scalar)?"""
    if x.size == 1:
        return True
    full = (1,) * (len(shape) - x.ndim) + x.shape
    return full[-1] == 1 and shape[-1] != 1


def qlinear_add(ctx, inputs, attrs):
    a, sa, za, b, sb, zb, sc, zc, shape = _binary_inputs(ctx, inputs)
    r_a, r_b = F32(sa / sc), F32(sb / sc)
    fixed = F32(F32(zc) - _fma(r_a, F32(za), F32(r_b * F32(zb))))
    total = int(np.prod(shape))
    if a.size == 1 or (_scalar_side(a, shape) and a.size != total):
        mode = 1
    elif b.size == 1 or (_scalar_side(b, shape) and b.size != total):
        mode = 2
    else:
        mode = 0
    af = np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1).astype(F32)
    bf = np.ascontiguousarray(np.broadcast_to(b, shape)).reshape(-1).astype(F32)
    lo, hi = int_range(a.dtype)
    out = np.empty(shape, a.dtype)
    _add_kernel(af, bf, r_a, r_b, fixed, mode, lo, hi, out.reshape(-1))
    return [out]


def qlinear_mul(ctx, inputs, attrs):
    a, sa, za, b, sb, zb, sc, zc, shape = _binary_inputs(ctx, inputs)
    ratio = F32(F32(sa * sb) / sc)
    lo, hi = int_range(a.dtype)
    out = np.empty(shape, a.dtype)
    _mul_kernel(np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1),
                np.ascontiguousarray(np.broadcast_to(b, shape)).reshape(-1), za, zb, ratio, F32(zc), lo, hi,
                out.reshape(-1))
    return [out]


# -- pools -------------------------------------------------------------------------------------
def qlinear_global_average_pool(ctx, inputs, attrs):
    x, x_s, x_z, y_s, y_z = (inputs + [None] * 5)[:5]
    _codes(ctx, x, "X")
    if int(attrs.get("channels_last", 0)):
        raise ctx.error("channels_last=1 is not supported")
    if x.ndim < 3:
        raise ctx.error(f"X must have rank >= 3, got {x.shape}")
    zx, zy = _zp(ctx, x_z, x, "x_zero_point"), _zp(ctx, y_z, x, "y_zero_point")
    n = int(np.prod(x.shape[2:]))
    scale = F32(_s(ctx, x_s, "x_scale") / F32(_s(ctx, y_s, "y_scale") * F32(n)))
    acc = x.reshape(x.shape[0], x.shape[1], -1).astype(np.int64).sum(axis=2) - zx * n
    lo, hi = int_range(x.dtype)
    v = np.clip((acc.astype(F32) * scale).astype(F32), F32(lo - zy), F32(hi - zy))
    y = np.rint(v).astype(np.int64) + zy
    ctx.integer_node = True
    return [_sat(ctx, y, x.dtype).reshape(x.shape[:2] + (1,) * (x.ndim - 2))]


def qlinear_average_pool(ctx, inputs, attrs):
    from qsim.onnxrun.spatial import _patches, window

    x, x_s, x_z, y_s, y_z = (inputs + [None] * 5)[:5]
    _codes(ctx, x, "X")
    if int(attrs.get("channels_last", 0)):
        raise ctx.error("channels_last=1 is not supported")
    zx, zy = _zp(ctx, x_z, x, "x_zero_point"), _zp(ctx, y_z, x, "y_zero_point")
    kernel = tuple(int(k) for k in attrs.get("kernel_shape", ()))
    if not kernel or x.ndim != len(kernel) + 2:
        raise ctx.error(f"kernel_shape {list(kernel)} must name one size per spatial axis of X {x.shape}")
    try:
        win = window(attrs, x.shape[2:], kernel, ceil_mode=bool(attrs.get("ceil_mode", 0)))
    except ValueError as exc:
        raise ctx.error(str(exc)) from None
    xf = (_s(ctx, x_s, "x_scale") * (x.astype(np.int64) - zx).astype(F32)).astype(F32)
    nd = len(kernel)
    spatial = x.shape[2:]
    # Valid taps only (ORT clips each window to the input); taps outside add nothing
    widths = [(0, 0), (0, 0)]
    for i, k in enumerate(kernel):
        need = (win.out[i] - 1) * win.strides[i] + (k - 1) * win.dilations[i] + 1
        widths.append((win.begin[i], max(need - (spatial[i] + win.begin[i]), 0)))
    xp = np.pad(xf, widths)
    valid = np.pad(np.ones(spatial, F32), widths[2:])
    total = np.zeros(x.shape[:2] + win.out, F32)
    count = np.zeros(win.out, F32)
    for (_, p), (_, m) in zip(_patches(xp, kernel, win), _patches(valid, kernel, win)):
        total = (total + p).astype(F32)
        count = count + m
    if attrs.get("count_include_pad", 0):
        count = np.full(win.out, F32(np.prod(kernel)))
    avg = (total / count).astype(F32)
    lo, hi = int_range(x.dtype)
    v = ((avg / _s(ctx, y_s, "y_scale")).astype(F32) + F32(zy)).astype(F32)
    ctx.integer_node = True
    return [_sat(ctx, np.rint(v), x.dtype)]


# -- softmax -----------------------------------------------------------------------------------
def qlinear_softmax(ctx, inputs, attrs):
    x, x_s, x_z, y_s, y_z = (inputs + [None] * 5)[:5]
    _codes(ctx, x, "X")
    opset = int(attrs.get("opset", 13))
    axis = int(attrs.get("axis", 1 if opset < 13 else -1)) % x.ndim
    signed = x.dtype == np.int8
    if opset < 13:
        rows = x.reshape(int(np.prod(x.shape[:axis])), -1)
        perm = None
    else:
        perm = list(range(x.ndim))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        xt = np.transpose(x, perm)
        rows = xt.reshape(-1, x.shape[axis])
    d = rows.shape[1]
    sx = float(_s(ctx, x_s, "x_scale"))
    shift = np.log(np.finfo(np.float32).max / d)
    shift = max(0.0, shift - 5) / sx
    i = np.arange(256, dtype=np.float64)
    table = np.empty(256, F32)
    idx = ((i.astype(np.int64) - 128) & 255) if signed else i.astype(np.int64)
    table[idx] = np.exp((i - 255 + shift) * sx).astype(F32)
    y_scale = F32(np.floor(F32(1.0) / _s(ctx, y_s, "y_scale")))
    zy = _zp(ctx, y_z, x, "y_zero_point") if y_z is not None else 0
    out = np.empty(rows.shape, x.dtype)
    _softmax_rows(np.ascontiguousarray(rows).astype(np.int64), table, y_scale, zy, signed, out)
    ctx.integer_node = True
    if perm is None:
        return [out.reshape(x.shape)]
    return [np.ascontiguousarray(np.transpose(out.reshape(xt.shape), perm))]


# -- GEMMs -------------------------------------------------------------------------------------
def qgemm(ctx, inputs, attrs):
    a, a_s, a_z, b, b_s, b_z, c, y_s, y_z = (inputs + [None] * 9)[:9]
    _codes(ctx, a, "A")
    _codes(ctx, b, "B")
    a2 = a.T if attrs.get("transA", 0) else a
    b2 = b.T if attrs.get("transB", 0) else b
    if a2.ndim != 2 or b2.ndim != 2 or a2.shape[1] != b2.shape[0]:
        raise ctx.error(f"A {a.shape} and B {b.shape} (after transA/transB) are not (M, K) and (K, N)")
    n = b2.shape[1]
    za = _zp(ctx, a_z, a, "a_zero_point")
    zb = np.zeros((), np.int64) if b_z is None else _i64(b_z).reshape(-1)
    if zb.size == 1:
        zb = zb.reshape(())
    ctx.integer_node = True
    k = _kernels()
    acc, ovf = k.matmul_int(np.ascontiguousarray(a2), np.ascontiguousarray(b2), za, zb if zb.ndim else int(zb),
                            acc_bits=ctx.acc_bits, overflow=ctx.overflow,
                            pair_saturate16=bool(ctx.pair_saturate16 and a.dtype == np.uint8 and b.dtype == np.int8))
    ctx.overflows += int(ovf)
    acc = np.asarray(acc, np.int64)
    if c is not None:
        if c.dtype != np.int32:
            raise ctx.error(f"C must be int32, got {c.dtype}")
        acc = acc + np.broadcast_to(c.astype(np.int64), acc.shape)
    alpha = F32(attrs.get("alpha", 1.0))
    bs = _scale(ctx, b_s, "b_scale").reshape(-1)
    scale = ((alpha * _s(ctx, a_s, "a_scale")).astype(F32) * bs).astype(F32)
    if y_s is not None:
        scale = (scale / _s(ctx, y_s, "y_scale")).astype(F32)
    v = (acc.astype(F32) * (scale if scale.size == n else scale.reshape(()))).astype(F32)
    if y_z is None:
        return [v]
    lo, hi = int_range(y_z.dtype)
    zy = int(_scalar(ctx, _i64(y_z), "y_zero_point"))
    return [np.clip(np.rint(v).astype(np.int64) + zy, lo, hi).astype(y_z.dtype)]


def _dyn_matmul(ctx, x2: np.ndarray, w_codes: np.ndarray, w_scale, w_zp) -> np.ndarray:
    """float32 (M, K) x int8/uint8 (K, N): x quantized as DynamicQuantizeLinear, exact integer
    product, then fl(float(acc) · fl(a_s · w_s))."""
    q, a_s, a_z = dynamic_quantize_linear(ctx, [np.ascontiguousarray(x2, F32)], {})
    zb = np.zeros((), np.int64) if w_zp is None else _i64(w_zp).reshape(-1)
    k = _kernels()
    acc, ovf = k.matmul_int(q, np.ascontiguousarray(w_codes), int(a_z), zb.reshape(()) if zb.size == 1 else zb,
                            acc_bits=ctx.acc_bits, overflow=ctx.overflow,
                            pair_saturate16=bool(ctx.pair_saturate16 and w_codes.dtype == np.int8))
    ctx.overflows += int(ovf)
    ctx.integer_node = True
    scale = (F32(a_s) * np.asarray(w_scale, F32).reshape(-1)).astype(F32)
    return (np.asarray(acc).astype(F32) * (scale if scale.size > 1 else scale.reshape(()))).astype(F32)


def dynamic_quantize_matmul(ctx, inputs, attrs):
    a, b, b_s, b_z, bias = (inputs + [None] * 5)[:5]
    if b.ndim != 2:
        raise ctx.error(f"B must be 2-D, got {b.shape}")
    y = _dyn_matmul(ctx, a.reshape(-1, a.shape[-1]), b, b_s, b_z).reshape(a.shape[:-1] + (b.shape[1],))
    if bias is not None:
        y = (y + bias.astype(F32)).astype(F32)
    return [y]


def dynamic_quantize_lstm(ctx, inputs, attrs):
    """LSTM whose W (nd, I, 4H) and R (nd, H, 4H) are int8 codes; X·W and H·R are dynamic-quantized GEMMs."""
    from qsim.onnxrun.f32_ops import _act

    x, w, r, b, seq_lens, h0, c0, p, w_s, w_z, r_s, r_z = (inputs + [None] * 12)[:12]
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if seq_lens is not None and not np.all(seq_lens == x.shape[0]):
        raise ctx.error("sequence_lens shorter than the sequence are not supported")
    if attrs.get("clip") is not None or int(attrs.get("input_forget", 0)):
        raise ctx.error("clip and input_forget are not supported")
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    t, n, _ = x.shape
    nd, hs = w.shape[0], r.shape[1]
    dirs = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    ys = np.zeros((t, nd, n, hs), F32)
    hn = np.zeros((nd, n, hs), F32)
    cn = np.zeros((nd, n, hs), F32)

    def per_dir(v, d):
        if v is None:
            return None
        v = np.asarray(v)
        return v[d] if v.ndim >= 1 and v.shape[0] == nd and v.size > 1 or v.ndim == 2 else v.reshape(-1)[0]

    for d, rev in enumerate(dirs):
        f, g, h = (acts[3 * d:3 * d + 3] if acts else ["Sigmoid", "Tanh", "Tanh"])
        bias = np.zeros(8 * hs, F32) if b is None else b[d].astype(F32)
        ht = np.zeros((n, hs), F32) if h0 is None else h0[d].astype(F32)
        ct = np.zeros((n, hs), F32) if c0 is None else c0[d].astype(F32)
        pi, po, pf = (np.zeros(hs, F32),) * 3 if p is None else np.split(p[d].astype(F32), 3)
        xw = _dyn_matmul(ctx, x.reshape(t * n, -1), w[d], per_dir(w_s, d), per_dir(w_z, d)).reshape(t, n, -1)
        fused = [a.decode() if isinstance(a, bytes) else a for a in (f, g, h)] == ["Sigmoid", "Tanh", "Tanh"]
        for step in (range(t - 1, -1, -1) if rev else range(t)):
            hr = _dyn_matmul(ctx, ht, r[d], per_dir(r_s, d), per_dir(r_z, d))
            if fused:  # f32_ops.lstm_cell: the float32 operations of the lines below in one Numba pass
                from qsim.onnxrun.f32_ops import lstm_cell, lstm_cell_consts

                h_new, c_new = np.empty((n, hs), F32), np.empty((n, hs), F32)
                pre = np.ascontiguousarray((xw[step] + hr).astype(F32))
                lstm_cell(pre, (bias[:4 * hs] + bias[4 * hs:]).astype(F32), np.ascontiguousarray(ct, F32),
                          *(np.ascontiguousarray(v, F32) for v in (pi, po, pf)), *lstm_cell_consts(), h_new, c_new)
                ht, ct = h_new, c_new
                ys[step, d] = ht
                continue
            gates = (xw[step] + hr).astype(F32) + (bias[:4 * hs] + bias[4 * hs:])
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


MS_OPS = {
    "QLinearSigmoid": _unary_table(_sigmoid_fn),
    "QLinearLeakyRelu": _unary_table(_leaky_fn),
    "QLinearConcat": qlinear_concat,
    "QLinearAdd": qlinear_add,
    "QLinearMul": qlinear_mul,
    "QLinearGlobalAveragePool": qlinear_global_average_pool,
    "QLinearAveragePool": qlinear_average_pool,
    "QLinearSoftmax": qlinear_softmax,
    "QGemm": qgemm,
    "DynamicQuantizeMatMul": dynamic_quantize_matmul,
    "DynamicQuantizeLSTM": dynamic_quantize_lstm,
}
