"""Prepared execution of a TFLite subgraph: everything that depends only on constant tensors and
static shapes is computed once per model and LiteRT path, an invocation is a tight loop over closures
reading and writing tensor slots (a list indexed by tensor number).

The arithmetic is the same as `qsim.tflite.ops` (the reference the test compares against on every
tensor of every invocation): integer accumulation is exact (int8 products summed in float64 BLAS,
far below 2**53, so the order of summation cannot matter), requantization calls the same
`qsim.kernels` functions / NumPy expressions on the same multipliers, shifts and float32 scales,
precomputed here instead of per call. Anything not specialised (or a case the reference op rejects)
falls back to the reference op function, so errors stay the same.
"""

from __future__ import annotations

import numpy as np

from qsim.tflite.ops import F32, OPS, OpContext, _act_range, _logistic_table, _pads, slice_index


USE_NUMBA = True  # CONV_2D / DEPTHWISE_CONV_2D as one Numba call (qsim.tflite.nbkernels); False: the NumPy closures


class _Fallback(Exception):
    pass


def _numba_requant_params(path: str, s_in: float, s_w, out, oc: int):
    """(mode, mult, left, right, fscale) per output channel for `nbkernels`, the constants `_requantizer`
    uses; None where the kernels do not apply (shifts outside 0..31: the NumPy path raises or handles it)."""
    import qsim.kernels as k

    s_out = float(out.scale[0])
    s_w = np.asarray(s_w, np.float32)
    zeros = np.zeros(oc, np.int64)
    if path == "xnnpack":
        scale = ((np.float32(s_in) * s_w).astype(F32) / np.float32(s_out)).astype(F32)
        return 2, zeros, zeros, zeros, np.ascontiguousarray(np.broadcast_to(scale.reshape(-1), (oc,)), F32)
    m = np.float64(s_in) * s_w.astype(np.float64) / np.float64(s_out)
    mult, shift = k.quantize_multiplier(m)
    mult = np.ascontiguousarray(np.broadcast_to(mult.reshape(-1), (oc,)), np.int64)
    shift = np.broadcast_to(shift.reshape(-1), (oc,)).astype(np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    if left.max() > 31 or right.max() > 31:
        return None
    return 0 if path == "reference" else 1, mult, left, right, np.zeros(oc, F32)


def _const(g, i):
    return None if i < 0 else g.tensors[i].data


def _requantizer(path: str, s_in: float, s_w, out, lo: int, hi: int, fc_per_channel: bool = False):
    """`rq(acc)` for int64 accumulators with the channel axis last; the constants of `ops._requant`."""
    import qsim.kernels as k

    s_out, z_out = float(out.scale[0]), int(out.zero_point[0])
    s_w = np.asarray(s_w, np.float32)
    if path == "xnnpack":
        scale = (np.float32(s_in) * s_w).astype(F32) / np.float32(s_out)
        scale = scale.astype(F32).reshape(-1) if scale.size > 1 else scale.astype(F32).reshape(())

        def rq(acc):
            v = (acc.astype(F32) * scale).astype(F32)
            return np.clip(np.rint(v).astype(np.int64) + z_out, lo, hi)
        return rq
    m = np.float64(s_in) * s_w.astype(np.float64) / np.float64(s_out)
    if fc_per_channel and path == "reference":
        mm = m.reshape(-1) if m.size > 1 else m.reshape(())

        def rq(acc):
            v = acc.astype(np.float64) * mm
            r = np.trunc(v) + np.sign(v) * (np.abs(v - np.trunc(v)) >= 0.5)
            return np.clip(r.astype(np.int64) + z_out, lo, hi)
        return rq
    mult, shift = k.quantize_multiplier(m)
    mult = mult.reshape(-1) if mult.size > 1 else mult.reshape(())
    shift = shift.reshape(-1) if shift.size > 1 else shift.reshape(())
    fn = k.multiply_by_quantized_multiplier if path == "reference" else k.multiply_by_quantized_multiplier_halfup

    def rq(acc):
        return np.clip(fn(acc, mult, shift).astype(np.int64) + z_out, lo, hi)
    return rq


def _weights_q(ctx, wt):
    if wt.data is None or wt.scale is None or wt.zero_point is None or np.any(wt.zero_point != 0):
        raise _Fallback
    return wt.scale


def _prep_conv(ctx, g, op, path, depthwise: bool):
    xt, wt = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
    bi = op.inputs[2] if len(op.inputs) > 2 else -1
    if bi >= 0 and g.tensors[bi].data is None:
        raise _Fallback
    out = g.tensors[op.outputs[0]]
    opts = op.options
    if len(xt.shape) != 4 or xt.scale is None or xt.zero_point is None:
        raise _Fallback
    s_w = _weights_q(ctx, wt)
    w = wt.data
    n, h, wd, c = xt.shape
    if depthwise:
        _, kh, kw, oc = w.shape
        if oc != c:
            raise _Fallback
    else:
        oc, kh, kw, ic = w.shape
        if ic != c:
            raise _Fallback
    sh, sw = opts.StrideH(), opts.StrideW()
    dh, dw = opts.DilationHFactor(), opts.DilationWFactor()
    ho, pt, pb = _pads(h, kh, sh, dh, opts.Padding())
    wo, pl, pr = _pads(wd, kw, sw, dw, opts.Padding())
    z_in = float(int(xt.zero_point[0]))
    lo, hi = _act_range(ctx, opts.FusedActivationFunction(), out)
    rq = _requantizer(path, float(xt.scale[0]), s_w if s_w.size > 1 else s_w[0], out, lo, hi)
    bias = None if bi < 0 else np.asarray(g.tensors[bi].data, np.int32).astype(np.float64)
    rows = (np.arange(ho) * sh)[:, None] + (np.arange(kh) * dh)[None, :]  # (ho, kh) in padded coordinates
    cols = (np.arange(wo) * sw)[:, None] + (np.arange(kw) * dw)[None, :]  # (wo, kw)
    ridx, cidx = rows[:, None, :, None], cols[None, :, None, :]  # -> (ho, wo, kh, kw)
    pad = np.zeros((n, h + pt + pb, wd + pl + pr, c), np.float64)  # border stays 0 (= x - z_in of padding)
    inner = (slice(None), slice(pt, pt + h), slice(pl, pl + wd), slice(None))
    odt, oshape = out.dtype, (n, ho, wo, oc)
    xi, oi = op.inputs[0], op.outputs[0]
    nb = _numba_requant_params(path, float(xt.scale[0]), s_w if s_w.size > 1 else s_w[0], out, oc) \
        if USE_NUMBA and np.dtype(odt) in (np.dtype(np.int8), np.dtype(np.uint8)) else None
    if nb is not None:
        from qsim.tflite import nbkernels

        mode, mult, left, right, fscale = nb
        kern = nbkernels.depthwise_requant if depthwise else nbkernels.conv_requant
        wi = np.ascontiguousarray((w[0] if depthwise else w).astype(np.int64))
        bi64 = np.zeros(oc, np.int64) if bias is None else np.asarray(g.tensors[bi].data, np.int32).astype(np.int64)
        zi, zo = int(z_in), int(out.zero_point[0])

        def run(slots):
            y = np.empty(oshape, odt)
            kern(slots[xi], zi, wi, bi64, sh, sw, dh, dw, pt, pl, mode, mult, left, right, fscale, zo, lo, hi, y)
            slots[oi] = y
        return run
    if depthwise:
        wk = w[0].astype(np.float64)  # (kh, kw, C)

        def run(slots):
            np.subtract(slots[xi], z_in, out=pad[inner])
            acc = (pad[:, ridx, cidx, :] * wk).sum(axis=(3, 4))  # (n, ho, wo, C)
            if bias is not None:
                acc += bias
            slots[oi] = rq(acc.astype(np.int64)).astype(odt)
        return run
    wm = np.ascontiguousarray(w.reshape(oc, kh * kw * c).T.astype(np.float64))  # (kh·kw·C, OC)
    kk = kh * kw * c

    def run(slots):
        np.subtract(slots[xi], z_in, out=pad[inner])
        acc = pad[:, ridx, cidx, :].reshape(-1, kk) @ wm
        if bias is not None:
            acc += bias
        slots[oi] = rq(acc.astype(np.int64)).reshape(oshape).astype(odt)
    return run


def _prep_fc(ctx, g, op, path):
    xt, wt = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
    bi = op.inputs[2] if len(op.inputs) > 2 else -1
    if bi >= 0 and g.tensors[bi].data is None:
        raise _Fallback
    out = g.tensors[op.outputs[0]]
    if xt.scale is None or xt.zero_point is None or out.scale is None:
        raise _Fallback
    s_w = _weights_q(ctx, wt)
    w = wt.data
    n_out, depth = w.shape
    z_in = float(int(xt.zero_point[0]))
    lo, hi = _act_range(ctx, op.options.FusedActivationFunction() if op.options is not None else 0, out)
    rq = _requantizer(path, float(xt.scale[0]), s_w if s_w.size > 1 else s_w[0], out, lo, hi,
                      fc_per_channel=s_w.size > 1)
    wm = np.ascontiguousarray(w.T.astype(np.float64))
    bias = None if bi < 0 else np.asarray(g.tensors[bi].data, np.int32).astype(np.float64)
    odt, shape = out.dtype, (out.shape or None)
    xi, oi = op.inputs[0], op.outputs[0]
    nb = None
    if USE_NUMBA and not (s_w.size > 1 and path == "reference") and np.dtype(odt) in (np.dtype(np.int8),
                                                                                      np.dtype(np.uint8)):
        nb = _numba_requant_params(path, float(xt.scale[0]), s_w if s_w.size > 1 else s_w[0], out, n_out)
    if nb is not None:  # a 1x1 convolution over the rows
        from qsim.tflite import nbkernels

        mode, mult, left, right, fscale = nb
        wi = np.ascontiguousarray(w.astype(np.int64).reshape(n_out, 1, 1, depth))
        bi64 = np.zeros(n_out, np.int64) if bi < 0 else np.asarray(g.tensors[bi].data, np.int32).astype(np.int64)
        zi, zo, kern = int(z_in), int(out.zero_point[0]), nbkernels.conv_requant

        def run(slots):
            x4 = slots[xi].reshape(-1, 1, 1, depth)
            y = np.empty((x4.shape[0], 1, 1, n_out), odt)
            kern(x4, zi, wi, bi64, 1, 1, 1, 1, 0, 0, mode, mult, left, right, fscale, zo, lo, hi, y)
            y = y.reshape(-1, n_out)
            slots[oi] = y.reshape(shape) if shape is not None else y
        return run

    def run(slots):
        acc = (slots[xi].reshape(-1, depth) - z_in) @ wm
        if bias is not None:
            acc += bias
        y = rq(acc.astype(np.int64)).astype(odt)
        slots[oi] = y.reshape(shape) if shape is not None else y
    return run


def _prep_logistic(ctx, g, op, path):
    xt, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    if xt.scale is None or out.scale is None or xt.dtype not in (np.int8, np.uint8):
        raise _Fallback
    table = _logistic_table(float(xt.scale[0]), int(xt.zero_point[0]), float(out.scale[0]),
                            int(out.zero_point[0]), xt.dtype)
    off = int(np.iinfo(xt.dtype).min)
    xi, oi = op.inputs[0], op.outputs[0]

    def run(slots):
        slots[oi] = table[slots[xi].astype(np.int64) - off]
    return run


def _prep_quantize(ctx, g, op, path):
    import qsim.kernels as k

    xt, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    if xt.dtype is None or np.dtype(xt.dtype).kind == "f" or xt.scale is None or out.scale is None:
        raise _Fallback
    info = np.iinfo(out.dtype)
    m = np.float64(xt.scale[0]) / np.float64(out.scale[0])
    mult, shift = k.quantize_multiplier(np.array(m))
    mult, shift = mult.reshape(()), shift.reshape(())
    z_in, z_out, lo, hi, odt = int(xt.zero_point[0]), int(out.zero_point[0]), info.min, info.max, out.dtype
    fn = k.multiply_by_quantized_multiplier
    xi, oi = op.inputs[0], op.outputs[0]
    if np.dtype(xt.dtype) in (np.dtype(np.int8), np.dtype(np.uint8)):
        # an elementwise function of one 8-bit code: its 256 values, computed by the same expression
        codes = np.arange(np.iinfo(xt.dtype).min, np.iinfo(xt.dtype).max + 1)
        v = fn(codes.astype(np.int64) - z_in, mult, shift)
        table = np.clip(np.asarray(v, np.int64) + z_out, lo, hi).astype(odt)
        off = int(codes[0])

        def run(slots):
            slots[oi] = table[slots[xi].astype(np.intp) - off]
        return run

    def run(slots):
        v = fn(slots[xi].astype(np.int64) - z_in, mult, shift)
        slots[oi] = np.clip(np.asarray(v, np.int64) + z_out, lo, hi).astype(odt)
    return run


def _prep_concat(ctx, g, op, path):
    o = g.tensors[op.outputs[0]]
    if op.options.FusedActivationFunction():
        raise _Fallback
    for i in op.inputs:
        t = g.tensors[i]
        if o.scale is not None and t.scale is not None and (t.scale[0] != o.scale[0]
                                                              or t.zero_point[0] != o.zero_point[0]):
            raise _Fallback  # requantizing concatenation: the reference op
    ins, axis, oi = tuple(op.inputs), op.options.Axis(), op.outputs[0]
    for i in ins:
        if g.tensors[i].data is not None:
            raise _Fallback

    def run(slots):
        slots[oi] = np.concatenate([slots[i] for i in ins], axis=axis)
    return run


def _prep_reshape(ctx, g, op, path):
    shape = g.tensors[op.outputs[0]].shape
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        c = g.tensors[op.inputs[1]].data
        if c is None:
            raise _Fallback
        shape = tuple(int(v) for v in np.asarray(c).ravel())
    xi, oi = op.inputs[0], op.outputs[0]
    if g.tensors[xi].data is not None:
        raise _Fallback

    def run(slots):
        slots[oi] = slots[xi].reshape(shape)
    return run


def _prep_strided_slice(ctx, g, op, path):
    opts = op.options
    xt = g.tensors[op.inputs[0]]
    consts = [_const(g, i) for i in op.inputs[1:4]]
    if (any(c is None for c in consts) or opts.EllipsisMask() or opts.NewAxisMask() or xt.data is not None
            or len(op.inputs) < 4):
        raise _Fallback
    sl = slice_index(*consts, opts, len(xt.shape))
    xi, oi = op.inputs[0], op.outputs[0]

    def run(slots):
        slots[oi] = np.ascontiguousarray(slots[xi][sl])
    return run


def _prep_split_v(ctx, g, op, path):
    xt = g.tensors[op.inputs[0]]
    sizes_c, axis_c = _const(g, op.inputs[1]), _const(g, op.inputs[2])
    if sizes_c is None or axis_c is None or xt.data is not None or not xt.shape:
        raise _Fallback
    sizes = [int(v) for v in np.asarray(sizes_c).ravel()]
    axis = int(np.asarray(axis_c).ravel()[0]) % len(xt.shape)
    if -1 in sizes:
        sizes[sizes.index(-1)] = xt.shape[axis] - (sum(sizes) + 1)
    cuts = np.cumsum(sizes)[:-1]
    xi, outs = op.inputs[0], tuple(op.outputs)

    def run(slots):
        for i, v in zip(outs, np.split(slots[xi], cuts, axis=axis)):
            slots[i] = v
    return run


PREPARERS = {
    "CONV_2D": lambda c, g, o, p: _prep_conv(c, g, o, p, False),
    "DEPTHWISE_CONV_2D": lambda c, g, o, p: _prep_conv(c, g, o, p, True),
    "FULLY_CONNECTED": _prep_fc, "LOGISTIC": _prep_logistic, "QUANTIZE": _prep_quantize,
    "CONCATENATION": _prep_concat, "RESHAPE": _prep_reshape, "STRIDED_SLICE": _prep_strided_slice,
    "SPLIT_V": _prep_split_v,
}


def _fallback(ctx, g, op):
    """The reference op function with its tensors and options bound once."""
    fn = OPS[op.op]
    ins = tuple(op.inputs)
    tensors = [None if i < 0 else g.tensors[i] for i in ins]
    consts = [None if i < 0 else g.tensors[i].data for i in ins]
    outs_t = [g.tensors[i] for i in op.outputs]
    outs, opts = tuple(op.outputs), op.options

    def run(slots):
        args = []
        for i, c, t in zip(ins, consts, tensors):
            if i < 0:
                args.append(None)
                continue
            v = slots[i]
            if v is None:
                v = c
            if v is None:
                raise ctx.error(f"input tensor {t.name!r} has no value")
            args.append(v)
        try:
            values = fn(ctx, args, tensors, outs_t, opts)
        except ValueError as exc:
            if str(exc).startswith("operator "):
                raise
            raise ctx.error(str(exc)) from None
        for i, v in zip(outs, values):
            slots[i] = v
    return run


class PreparedGraph:
    """Subgraph 0 of `runner` as a list of closures over tensor slots; state lives in `runner.variables`."""

    def __init__(self, runner):
        g = runner.main
        self.runner = runner
        self.base = [None] * len(g.tensors)  # constants pre-filled (read-only: the ops never write in place)
        for t in g.tensors:
            if t.data is not None:
                self.base[t.index] = t.data
        self.steps = []
        self.traced = []  # tensor indices the reference records with keep_all, in its order
        handles: dict = {}
        for op in g.ops:
            ctx = OpContext(op.index, op.op, runner.path)
            if op.op == "VAR_HANDLE":
                handles[op.outputs[0]] = (op.options.Container() or b"", op.options.SharedName() or b"")
                continue
            if op.op == "CALL_ONCE":
                self.steps.append(self._call_once(op.options.InitSubgraphIndex()))
                continue
            if op.op == "READ_VARIABLE":
                self.steps.append(self._read(ctx, handles[op.inputs[0]], op.outputs[0]))
                continue
            if op.op == "ASSIGN_VARIABLE":
                self.steps.append(self._assign(handles[op.inputs[0]], op.inputs[1]))
                continue
            try:
                step = PREPARERS[op.op](ctx, g, op, runner.path) if op.op in PREPARERS else _fallback(ctx, g, op)
            except _Fallback:
                step = _fallback(ctx, g, op)
            self.steps.append(step)
            self.traced.extend((g.tensors[i].name, i) for i in op.outputs)

    def _call_once(self, sub):
        r = self.runner

        def run(slots):
            if sub not in r._initialised:
                r._initialised.add(sub)
                r._run(sub, {}, None)
        return run

    def _read(self, ctx, key, oi):
        r = self.runner

        def run(slots):
            try:
                slots[oi] = r.variables[key].copy()
            except KeyError:
                raise ctx.error(f"variable {key[1].decode()!r} is read before it is assigned") from None
        return run

    def _assign(self, key, vi):
        r = self.runner

        def run(slots):
            r.variables[key] = np.array(slots[vi], copy=True)
        return run

    def run(self, feeds: dict) -> list:
        slots = self.base.copy()
        for i, a in feeds.items():
            slots[i] = a
        for step in self.steps:
            step(slots)
        return slots
