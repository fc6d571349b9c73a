"""A prepared execution plan per model: what `OnnxExecutor.run` executes by default.

Built once when the executor loads a model (like an ORT `InferenceSession`):

* tensors live in a list indexed by slot numbers fixed at load (no name lookups per call),
  initializers and constant-folded values are placed in the template once;
* every node keeps one `NodeContext` and its resolved attributes; a node whose inputs
  cannot all exist is found at load and reported when the run reaches it;
* the hot ops get a *specialised* function (`SPECIALIZERS`) built from their constant
  inputs: scales, zero points and requantization multipliers checked and converted once,
  float weights reshaped per group once, and the integer work fused into one Numba pass
  (e.g. QLinearConv's requantization). A specialised function checks the few facts it
  relies on (dtype, contiguity, shape) on each call and otherwise hands the node to the
  generic op, so error messages and unusual inputs behave exactly as before.
* the steps run as one generated Python function (`qsim.onnxrun.codegen`; `run_steps`
  interprets the same steps one by one).

Every specialised function computes what the generic op computes, bit for bit; the tests
run each model both ways (`OnnxExecutor.run(..., prepared=False)` is the reference
interpreter) and compare every tensor.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun import codegen
from qsim.onnxrun.f32gemm import _fma32

F32 = np.float32
_F32 = np.dtype(np.float32)


class PreparedPlan:
    """Slots, the constant template and the per-node steps of one executor's model."""

    def __init__(self, ex):
        from qsim.onnxrun.ops import NodeContext

        slots: dict = {"": 0, None: 1}  # 0: an absent optional input (None); 1: an unnamed output, dropped

        def slot(name: str) -> int:
            if name not in slots:
                slots[name] = len(slots)
            return slots[name]

        consts = {**ex.initializers, **ex.folded_values}
        for name in consts:
            slot(name)
        for name in ex.input_names:
            slot(name)
        available = set(consts) | set(ex.input_names) | {""}
        steps = []
        for idx, (name, node, fn, attrs, ins, outs, n_out) in enumerate(ex.steps):
            if idx in ex._folded:
                continue
            missing = next((t for t in ins if t not in available), None)
            ctx = NodeContext(name, node.op_type, ex.opset, n_outputs=n_out,
                              constant=tuple(t in consts for t in ins), **ex.options)
            fast = None
            if missing is None:
                fast = specialize(fn, node, attrs, [consts.get(t) if t else None for t in ins], ex)
            steps.append((fast or fn, ctx, attrs, [slot(t) for t in ins], [slot(t or None) for t in outs], missing))
            available.update(t for t in outs if t)
        steps = _fuse_quantize_dequantize(steps, {slots[n]: v for n, v in consts.items()})
        self.template = [None] * len(slots)
        for name, value in consts.items():
            self.template[slots[name]] = value
        self.slots = slots
        self.steps = steps
        self.input_slots = [(n, slots[n]) for n in ex.input_names]
        self.output_slots = [(n, slots[n]) for n in ex.output_names]
        self.all_slots = [(t, slots[t]) for n in ex.model.graph.node for t in n.output if t]
        self.specialised = [s[1].name for s in steps if getattr(s[0], "specialised", False)]
        self.compiled = None
        if codegen.enabled():
            self.compiled = codegen.compile_plan(self)

    def run(self, ex, feeds: dict, keep_all: bool) -> dict[str, np.ndarray]:
        """The plan's generated function (`qsim.onnxrun.codegen`), else `run_steps`."""
        if self.compiled is not None:
            return self.compiled(ex, feeds, keep_all)
        return self.run_steps(ex, feeds, keep_all)

    def run_steps(self, ex, feeds: dict, keep_all: bool) -> dict[str, np.ndarray]:
        """The steps interpreted one by one (what the generated function does, as a loop)."""
        from qsim.onnxrun.executor import OP_ERRORS, node_error

        env = self.template.copy()
        for name, i in self.input_slots:
            env[i] = feeds[name]
        overflows = dict(ex._fold_overflows)
        for fn, ctx, attrs, ins, outs, missing in self.steps:
            if missing is not None:
                raise ctx.error(f"input tensor {missing!r} is not produced by any earlier node")
            ctx.overflows = 0
            ctx.integer_node = False
            args = [env[i] for i in ins]
            try:  # executor._call inlined: the same errors, one Python call less per node
                values = fn(ctx, args, attrs)
            except OP_ERRORS as exc:
                raise node_error(exc, ctx, args) from None
            for i, v in zip(outs, values):
                env[i] = v
            if ctx.integer_node:
                overflows[ctx.name] = (ctx.op_type, ctx.overflows)
        ex.overflows = overflows
        if keep_all:
            return {t: env[i] for t, i in self.all_slots} | {n: env[i] for n, i in self.output_slots}
        return {n: env[i] for n, i in self.output_slots}


@njit(cache=True, nogil=True)
def quantize_dequantize(x, s, z, qmin, qmax, s2, z2, code, out):
    """QuantizeLinear (`ops._quantize_tensor`) and the DequantizeLinear of its codes
    (`ops._dequantize_tensor`) in one pass: code[i] and out[i] = fl32(code[i] − z2)·s2.
    Returns True when x holds a NaN (the caller raises)."""
    lo = np.float32(qmin - z)
    hi = np.float32(qmax - z)
    nan = False
    for i in range(x.size):
        v = x[i] / s
        nan |= v != v
        v = min(max(v, lo), hi)
        q = np.int64(np.rint(v)) + z
        code[i] = q
        out[i] = np.float32(q - z2) * s2
    return nan


def _fuse_quantize_dequantize(steps: list, const_slots: dict) -> list:
    """A prepared QuantizeLinear whose codes feed a prepared DequantizeLinear (the Q → DQ pair of
    every activation in QDQ models) becomes one step writing both tensors; the DQ step goes."""
    producer = {}
    for i, (fn, ctx, attrs, ins, outs, missing) in enumerate(steps):
        if hasattr(fn, "q_params") and outs and outs[0] > 1:
            producer[outs[0]] = i
    fused: dict[int, tuple] = {}
    dropped = set()
    for j, (fn, ctx, attrs, ins, outs, missing) in enumerate(steps):
        if not hasattr(fn, "dq_params") or not ins or ins[0] not in producer or not outs or outs[0] <= 1:
            continue
        i = producer[ins[0]]
        if i in fused or i >= j:
            continue
        s, z, qmin, qmax, zdt, q_generic = steps[i][0].q_params
        s2, z2, ok = fn.dq_params
        if zdt not in ok:
            continue
        dq_consts = [const_slots.get(k) for k in ins[1:]]
        fused[i] = (j, _fused_qdq(steps[i][0], fn, ctx, dq_consts, attrs, s, z, qmin, qmax, zdt, s2, z2))
        dropped.add(j)
    out = []
    for i, step in enumerate(steps):
        if i in dropped:
            continue
        if i in fused:
            j, fn = fused[i]
            fn.specialised = True
            step = (fn, step[1], step[2], step[3], [step[4][0], steps[j][4][0]], step[5])
        out.append(step)
    return out


def _fused_qdq(q_fn, dq_fn, dq_ctx, dq_consts, dq_attrs, s, z, qmin, qmax, zdt, s2, z2):
    from qsim.onnxrun.executor import OP_ERRORS, node_error

    def fused(ctx, args, attrs_):
        x = args[0]
        if x.dtype != _F32 or not x.flags.c_contiguous:  # each node by itself, errors named as before
            code = q_fn(ctx, args, attrs_)[0]
            dq_args = [code] + dq_consts
            try:
                return [code, dq_fn(dq_ctx, dq_args, dq_attrs)[0]]
            except OP_ERRORS as exc:
                raise node_error(exc, dq_ctx, dq_args) from None
        code = np.empty(x.shape, zdt)
        out = np.empty(x.shape, F32)
        if quantize_dequantize(x.reshape(-1), s, z, qmin, qmax, s2, z2, code.reshape(-1), out.reshape(-1)):
            raise ctx.error("input x contains NaN; its quantized code is implementation-defined")
        return [code, out]

    return fused


_MALLOC_TUNED = False
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc <malloc.h>


def tune_malloc() -> bool:
    """Keep freed tensor memory in the process (glibc only; like ORT's arena allocator): every run
    allocates and frees the same tens of MB of tensors, and glibc's default trimming can hand them
    back to the OS after each run, so that each run page-faults them in again (measured: the PP-OCRv4
    rec model 17 → 35 ms depending on the heap's history). Sets the mmap threshold to glibc's
    dynamic maximum (32 MiB) and the trim threshold to 1 GiB, once per process; QSIM_ONNX_MALLOPT=0
    leaves malloc alone. Returns whether it was applied."""
    global _MALLOC_TUNED
    import os
    import sys

    if _MALLOC_TUNED or os.environ.get("QSIM_ONNX_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return _MALLOC_TUNED
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError):
        ok = False
    _MALLOC_TUNED = ok
    return ok


def prepare(ex) -> PreparedPlan:
    tune_malloc()
    return PreparedPlan(ex)


def specialize(generic, node, attrs: dict, consts: list, ex):
    """A specialised op function for this node, or None (the generic op runs)."""
    from qsim.onnxrun.executor import DEFAULT_DOMAINS

    domain = "" if node.domain in DEFAULT_DOMAINS else node.domain
    maker = SPECIALIZERS.get((domain, node.op_type))
    if maker is None:
        return None
    try:
        fast = maker(generic, node, attrs, consts, ex)
    except (ValueError, TypeError, KeyError, IndexError):  # the generic op reports what is wrong
        return None
    if fast is not None:
        fast.specialised = True
    return fast


def _scalar_scale(s) -> F32 | None:
    """A constant per-tensor float32 scale, finite and > 0, else None."""
    if s is None or not isinstance(s, np.ndarray) or s.dtype != _F32 or s.size != 1 or s.ndim > 1:
        return None
    v = F32(s.reshape(()))
    return v if np.isfinite(v) and v > 0 else None


def _scalar_zp(z):
    """(int value, dtype) of a constant scalar zero point; (0, None) when absent; None if not usable."""
    if z is None:
        return 0, None
    if not isinstance(z, np.ndarray) or z.size != 1 or z.ndim > 1 or z.dtype.kind not in "iu":
        return None
    return int(z.reshape(())), z.dtype


# -- QuantizeLinear / DequantizeLinear -----------------------------------------------------------------
_QDTYPES = tuple(np.dtype(t) for t in ("uint8", "int8", "uint16", "int16"))


def _spec_dequantize(generic, node, attrs, consts, ex):
    from qsim.onnxrun.ops import _dequantize_tensor

    if len(consts) < 2 or int(attrs.get("block_size", 0)):
        return None
    s = _scalar_scale(consts[1])
    zp = _scalar_zp(consts[2] if len(consts) > 2 else None)
    if s is None or zp is None:
        return None
    z, zdt = zp
    ok = _QDTYPES + (np.dtype(np.int32),) if zdt is None else (zdt,)
    if zdt is not None and zdt.name not in ("uint8", "int8", "uint16", "int16"):
        return None

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype not in ok or not x.flags.c_contiguous:
            return generic(ctx, args, attrs_)
        out = np.empty(x.shape, F32)
        _dequantize_tensor(x.reshape(-1), s, z, out.reshape(-1))
        return [out]

    fast.dq_params = (s, z, ok)
    return fast


def _spec_quantize(generic, node, attrs, consts, ex):
    from qsim.onnxrun.ops import _quantize_tensor, int_range

    if len(consts) < 3 or consts[2] is None or int(attrs.get("block_size", 0)):
        return None
    s = _scalar_scale(consts[1])
    zp = _scalar_zp(consts[2])
    if s is None or zp is None or zp[1] not in _QDTYPES:
        return None
    z, zdt = zp
    qmin, qmax = int_range(zdt)

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype != _F32 or not x.flags.c_contiguous:
            return generic(ctx, args, attrs_)
        out = np.empty(x.shape, zdt)
        if _quantize_tensor(x.reshape(-1), s, z, qmin, qmax, out.reshape(-1)):
            raise ctx.error("input x contains NaN; its quantized code is implementation-defined")
        return [out]

    fast.q_params = (s, z, qmin, qmax, zdt, generic)
    return fast


# -- float elementwise -----------------------------------------------------------------------------------
def _spec_binary(ufunc):
    def maker(generic, node, attrs, consts, ex):
        def fast(ctx, args, attrs_):
            a, b = args[0], args[1]
            if a.dtype != _F32 or b.dtype != _F32:
                return generic(ctx, args, attrs_)
            try:
                y = ufunc(a, b)
            except ValueError:
                return generic(ctx, args, attrs_)
            return [y if type(y) is np.ndarray else np.asarray(y)]

        return fast

    return maker


def _spec_clip(generic, node, attrs, consts, ex):
    if ex.opset < 11:
        return None
    lo = consts[1] if len(consts) > 1 else None
    hi = consts[2] if len(consts) > 2 else None
    if any(len(node.input) > i and node.input[i] and c is None for i, c in ((1, lo), (2, hi))):
        return None  # a bound computed at run time
    lo32 = None if lo is None else np.asarray(lo).astype(F32)
    hi32 = None if hi is None else np.asarray(hi).astype(F32)
    hi_in_place = hi32 is not None and hi32.size == 1

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype != _F32:
            return generic(ctx, args, attrs_)
        y = x if lo32 is None else np.maximum(x, lo32)
        if hi32 is not None:  # in place into maximum's fresh result where the shapes allow (one array less)
            y = np.minimum(y, hi32, out=y) if type(y) is np.ndarray and y is not x and hi_in_place \
                and y.ndim >= hi32.ndim else np.minimum(y, hi32)
        return [np.array(y, F32) if y is x or type(y) is not np.ndarray else y]

    return fast


# -- QLinearConv ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def requant_nchw(acc, scale, zp, lo, hi, out):
    """out[n, c, p] = clamp(rne(fl32(acc[n, c, p]) · scale[c]) + zp, lo, hi): the fp32_rne
    requantization of `qsim.kernels.requantize` (channel axis 1) in one pass."""
    n_, c_, p_ = acc.shape
    for n in range(n_):
        for c in range(c_):
            s = scale[c]
            for p in range(p_):
                v = np.rint(np.float32(acc[n, c, p]) * s) + zp
                out[n, c, p] = lo if v < lo else (hi if v > hi else np.int64(v))
    return out


def requant_nchw_reference(acc, scale, zp, lo, hi) -> np.ndarray:
    """NumPy twin of `requant_nchw` (int64 result)."""
    y = np.rint(acc.astype(F32) * scale.astype(F32)[None, :, None]).astype(np.float64) + zp
    return np.clip(y, lo, hi).astype(np.int64)


@njit(cache=True, nogil=True)
def qdepthwise_wide(xpf, w, bias, wp, dh, dw, n_rows, out):
    """Exact integer depthwise sums on the padded width: out[c, p] = bias[c] + Σ_{i,j} w[c, i, j] ·
    xpf[c, p + i·dh·wp + j·dw] for p < n_rows·wp (stride 1; the caller keeps the valid columns and
    every stride-th row/column). xpf (C, L) holds x − x_zp, zero-padded, with one spare zero row;
    w (C, kh, kw) holds w − w_zp. The caller has proven that no sum can leave int32."""
    c_, kh, kw = w.shape
    n = n_rows * wp
    for c in range(c_):
        acc = out[c]
        b = bias[c]
        for p in range(n):
            acc[p] = b
        for i in range(kh):
            for j in range(kw):
                o = i * dh * wp + j * dw
                r = xpf[c, o:o + n]
                wv = w[c, i, j]
                for p in range(n):
                    acc[p] += wv * r[p]
    return out


def qdepthwise_reference(x, w, zx, zw, bias, stride, pads, dil) -> np.ndarray:
    """NumPy twin of the prepared depthwise path: (N, C, H, W) codes → int64 sums (N, C, Ho, Wo)."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    xs = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ws = w[:, 0].astype(np.int64) - np.broadcast_to(np.asarray(zw, np.int64), (c,))[:, None, None]
    ho = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.broadcast_to((np.zeros(c, np.int64) if bias is None else bias.astype(np.int64))[None, :, None, None],
                          (n, c, ho, wo)).copy()
    for i in range(kh):
        for j in range(kw):
            out += xs[:, :, i * dil[0]:i * dil[0] + stride[0] * (ho - 1) + 1:stride[0],
                      j * dil[1]:j * dil[1] + stride[1] * (wo - 1) + 1:stride[1]] * ws[None, :, i, j, None, None]
    return out


def _int_conv_operands_ok(w, wz, bias, attrs) -> bool:
    """Whether a constant integer conv weight (1-D/2-D, 8-bit), its zero point (scalar or per output
    channel, same dtype), int32 bias (O,) and kernel_shape attribute fit the prepared integer convs."""
    if w is None or w.ndim not in (3, 4) or w.dtype.name not in ("uint8", "int8"):
        return False
    o = w.shape[0]
    if wz is not None and (not isinstance(wz, np.ndarray) or wz.dtype != w.dtype
                           or not (wz.size == 1 or wz.shape[-1] == wz.size == o)):
        return False
    if bias is not None and (bias.dtype != np.int32 or bias.shape != (o,)):
        return False
    return "kernel_shape" not in attrs or tuple(attrs["kernel_shape"]) == tuple(w.shape[2:])


def _int_conv(w, wz, bias, attrs, ex):
    """acc(x, attrs) -> int accumulators (N, O, *spatial) of an integer 1-D/2-D conv with the constant
    weight w, or None when x does not fit (the generic op then runs). Depthwise convolutions whose
    sums provably fit int32 and the accumulator use `qdepthwise_wide`; the rest `conv2d_int`."""
    from qsim.onnxrun.ops import _kernels, int_range
    from qsim.onnxrun.spatial import window

    if not _int_conv_operands_ok(w, wz, bias, attrs):
        return None
    o = w.shape[0]
    groups = int(attrs.get("group", 1))
    kernel = w.shape[2:]
    nd = w.ndim - 2
    w4 = np.ascontiguousarray(w if nd == 2 else w[:, :, None, :])
    zw = 0 if wz is None else (int(wz.reshape(-1)[0]) if wz.size == 1 else wz.reshape(-1).astype(np.int64))
    acc_bits, overflow = ex.options["acc_bits"], ex.options["overflow"]
    hi_acc = (1 << (acc_bits - 1)) - 1
    depthwise = w.shape[1] == 1 and groups == o and o > 1
    if depthwise:
        wsh = w4[:, 0].astype(np.int64) - np.broadcast_to(np.asarray(zw, np.int64), (o,))[:, None, None]
        max_w = int(np.abs(wsh).max(initial=0))
        bias_max = 0 if bias is None else int(np.abs(bias.astype(np.int64)).max(initial=0))
        w_dw = wsh.astype(np.int32)
        b_dw = np.zeros(o, np.int32) if bias is None else bias.astype(np.int32)
    if groups == 1:  # exact float32 products when every partial sum provably stays below 2^24
        wsh1 = w4.reshape(o, -1).astype(np.int64) - np.broadcast_to(np.asarray(zw, np.int64), (o,))[:, None]
        max_w1 = int(np.abs(wsh1).max(initial=0))
        bias_max1 = 0 if bias is None else int(np.abs(bias.astype(np.int64)).max(initial=0))
        w_f32 = wsh1.astype(np.float32)
        b_f32 = None if bias is None else bias.astype(np.float32)[:, None]
    k = _kernels()
    wk = w4
    if groups == 1 and hasattr(k, "pack_weights"):  # packed once, like ORT's prepacked initializers
        try:
            wk = k.pack_weights(w4)
        except (ValueError, TypeError):
            wk = w4
    geo_cache: dict = {}

    def acc(x, attrs_, ctx, zxv):
        if x.ndim != nd + 2 or x.shape[1] != w.shape[1] * groups:
            return None
        x4 = x if nd == 2 else x[:, :, None, :]
        geo = geo_cache.get(x.shape[2:])
        if geo is None:
            try:
                win = window(attrs_, x.shape[2:], kernel)
            except ValueError:
                return None
            if nd == 1:
                geo = dict(stride=(1, win.strides[0]), padding=(0, win.begin[0], 0, win.end[0]),
                           dilation=(1, win.dilations[0]), groups=groups)
            else:
                geo = dict(stride=win.strides, padding=(win.begin[0], win.begin[1], win.end[0], win.end[1]),
                           dilation=win.dilations, groups=groups)
            geo_cache[x.shape[2:]] = geo
        if depthwise:
            lo_x, hi_x = int_range(x.dtype)
            max_x = max(abs(lo_x - zxv), abs(hi_x - zxv))
            bound = bias_max + w4.shape[2] * w4.shape[3] * max_x * max_w
            if bound <= hi_acc and bound < 1 << 31:
                out = _depthwise_int(x4, zxv, w_dw, b_dw, geo)
                return out if nd == 2 else out[:, :, 0, :]
        if groups == 1:
            lo_x, hi_x = int_range(x.dtype)
            bound = bias_max1 + w_f32.shape[1] * max(abs(lo_x - zxv), abs(hi_x - zxv)) * max_w1
            macs = w_f32.size * (x4.shape[0] * x4.shape[2] * x4.shape[3]) // (geo["stride"][0] * geo["stride"][1])
            # small products: BLAS float32 beats the integer kernel's per-call work (measured; larger: VNNI)
            if bound < F32_EXACT and bound <= hi_acc and macs <= FLOAT_PATH_MACS:
                out = _conv_int_f32(x4, zxv, w_f32, b_f32, w4.shape[2:], geo)
                return out if nd == 2 else out[:, :, 0, :]
        a, ovf = k.conv2d_int(np.ascontiguousarray(x4), wk, zxv, zw, bias, acc_bits=acc_bits, overflow=overflow,
                              **geo)
        ctx.overflows += int(ovf)
        a = np.asarray(a)
        return a if nd == 2 else a[:, :, 0, :]

    return acc


F32_EXACT = 1 << 24
FLOAT_PATH_MACS = 5_000_000


def _conv_int_f32(x4, zx, w_f32, b_f32, kernel, geo) -> np.ndarray:
    """Exact integer conv (groups = 1) as a float32 product: x − zx and w − zw are small integers
    and the caller has proven every partial sum below 2^24, so any summation order (BLAS) gives
    the exact integers; returns them as float32 (N, O, Ho, Wo), bias included."""
    from qsim.onnxrun.f32_ops import _im2col2d

    n, c, h, wd = x4.shape
    kh, kw = kernel
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = geo["stride"], geo["dilation"], geo["padding"]
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((n, w_f32.shape[0], ho * wo), np.float32)
    pointwise = kh == kw == 1 and sh == sw == 1 and not any((pt, pl, pb, pr))
    for i in range(n):
        xf = np.subtract(x4[i], np.float32(zx), dtype=np.float32)
        cols = xf.reshape(c, h * wd) if pointwise else _im2col2d(
            xf, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, np.empty((c * kh * kw, ho * wo), np.float32))
        np.matmul(w_f32, cols, out=out[i])
        if b_f32 is not None:
            out[i] += b_f32
    return out.reshape(n, w_f32.shape[0], ho, wo)


def _depthwise_int(x4, zx, w_dw, b_dw, geo) -> np.ndarray:
    n, c, h, wd = x4.shape
    kh, kw = w_dw.shape[1:]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = geo["stride"], geo["dilation"], geo["padding"]
    hp, wp = h + pt + pb, wd + pl + pr
    hf, wf = hp - (kh - 1) * dh, wp - (kw - 1) * dw
    ho, wo = (hf - 1) // sh + 1, (wf - 1) // sw + 1
    xp = np.zeros((c, hp + 1, wp), np.int32)
    full = np.empty((c, hf * wp), np.int32)
    out = np.empty((n, c, ho, wo), np.int32)
    for i in range(n):
        np.subtract(x4[i], np.int32(zx), out=xp[:, pt:pt + h, pl:pl + wd], dtype=np.int32)
        qdepthwise_wide(xp.reshape(c, -1), w_dw, b_dw, wp, dh, dw, hf, full)
        out[i] = full.reshape(c, hf, wp)[:, ::sh, :wf:sw]
    return out


POINTWISE_DIRECT_PIXELS = 16   # 1×1 convs on at most this many pixels (SE blocks): `pointwise_requant`,
POINTWISE_DIRECT_MACS = 800_000   # or with at most this many products (measured: faster than the float32
                                  # BLAS path below, slower above)
POINTWISE_GEMM_MACS = 100_000     # where the VNNI GEMM (`ConvGemmRequant`) runs, only this (measured: the GEMM
                                  # is faster above, whatever the pixel count)


def _fused_qconv(w, wz, bias, attrs, ex, xdt, zx, scale, zy, lo, hi, ydt):
    """run(x, attrs) -> the QLinearConv output codes in one Numba call (a few per image for the GEMM),
    or None when this x is not one of its cases (the caller then runs the general path): depthwise
    convolutions (`qsim.kernels.conv.depthwise_requant`), small 1×1 convolutions
    (`pointwise_requant`) and, on VNNI hosts, every other groups-1 convolution as one VNNI GEMM
    with the requantization in its epilogue (`ConvGemmRequant`), whenever no sum can leave the
    emulated accumulator nor int32 (their lanes), from x's dtype alone. Weight − zero point, int32 bias and the geometry per
    input shape are prepared once. None when no case can apply to this node."""
    from qsim.kernels.conv import ConvGemmRequant, depthwise_requant, pointwise_requant
    from qsim.onnxrun.ops import int_range
    from qsim.onnxrun.spatial import window

    if not _int_conv_operands_ok(w, wz, bias, attrs):
        return None
    o = w.shape[0]
    groups = int(attrs.get("group", 1))
    kernel = tuple(w.shape[2:])
    nd = w.ndim - 2
    kk = int(np.prod(kernel))
    depthwise = w.shape[1] == 1 and groups == o and o > 1
    if not (depthwise or groups == 1):
        return None
    zw = np.broadcast_to(np.asarray(0 if wz is None else wz.reshape(-1), np.int64), (o,))
    wsh = w.reshape(o, -1).astype(np.int64) - zw[:, None]
    b64 = np.zeros(o, np.int64) if bias is None else bias.astype(np.int64)
    lo_x, hi_x = int_range(xdt)
    max_x = max(abs(lo_x - zx), abs(hi_x - zx))
    bound = int(np.abs(b64).max(initial=0)) + wsh.shape[1] * max_x * int(np.abs(wsh).max(initial=0))
    hi_acc = (1 << (ex.options["acc_bits"] - 1)) - 1
    if bound > hi_acc or bound >= 1 << 31:
        return None                     # an overflow is possible: the emulating path counts it
    if depthwise:
        w32 = np.ascontiguousarray(wsh.astype(np.int32).reshape((o, 1) + kernel if nd == 1 else (o,) + kernel))
    else:
        w32 = np.ascontiguousarray(wsh.astype(np.int32).T)     # (C, O)
    b32 = b64.astype(np.int32)
    gemm = None
    if not depthwise:
        try:
            gemm = ConvGemmRequant(w if nd == 2 else w[:, :, None, :], zw, b64, xdt, scale, zy, lo, hi)
        except ValueError:              # no VNNI here, or K > K_MAX
            if kk != 1:
                return None
    pw_macs = POINTWISE_DIRECT_MACS if gemm is None else POINTWISE_GEMM_MACS
    geo_cache: dict = {}

    def run(x, attrs_):
        if x.ndim != nd + 2 or x.shape[1] != w.shape[1] * groups:
            return None
        geo = geo_cache.get(x.shape)
        if geo is None:
            try:
                win = window(attrs_, x.shape[2:], kernel)
            except ValueError:
                return None
            st, dl, bg, en, osz = (tuple(win.strides), tuple(win.dilations), tuple(win.begin), tuple(win.end),
                                   tuple(win.out))
            if nd == 1:
                st, dl, bg, en, osz = (1,) + st, (1,) + dl, (0,) + bg, (0,) + en, (1,) + osz
            n_pix = x.shape[0] * int(np.prod(x.shape[2:]))
            if depthwise:
                geo = ("dw", (x.shape[0], o) + osz, st, dl, bg)
            elif kk == 1 and st == (1, 1) and not any(bg) and not any(en) and (
                    n_pix * wsh.size <= pw_macs or (gemm is None and n_pix <= POINTWISE_DIRECT_PIXELS)):
                geo = ("pw", (x.shape[0], o) + osz)
            elif gemm is not None:
                geo = ("gemm", (x.shape[0], o) + osz, (kernel if nd == 2 else (1,) + kernel), st, dl,
                       (bg[0], bg[1], en[0], en[1]))
            else:
                geo = ("no",)
            geo_cache[x.shape] = geo
        if geo[0] == "no":
            return None
        xc = np.ascontiguousarray(x)
        out = np.empty(geo[1], ydt)
        if geo[0] == "dw":
            st, dl, bg = geo[2], geo[3], geo[4]
            x4 = xc if nd == 2 else xc.reshape(x.shape[0], x.shape[1], 1, x.shape[2])
            depthwise_requant(x4, zx, w32, b32, scale, zy, lo, hi, st[0], st[1], dl[0], dl[1], bg[0], bg[1],
                              out)
        elif geo[0] == "pw":
            pointwise_requant(xc.reshape(x.shape[0], x.shape[1], -1), zx, w32, b32, scale, zy, lo, hi,
                              out.reshape(x.shape[0], o, -1))
        else:
            x4 = xc if nd == 2 else xc.reshape(x.shape[0], x.shape[1], 1, x.shape[2])
            o2 = out.reshape(x.shape[0], o, -1)
            for i in range(x.shape[0]):
                gemm(x4[i], zx, geo[2], geo[3], geo[4], geo[5], o2[i])
        return out if nd == 2 else out.reshape(out.shape[0], o, -1)

    return run


def _spec_qlinear_conv(generic, node, attrs, consts, ex):
    from qsim.onnxrun.ops import int_range

    if len(consts) < 8 or ex.options["pair_saturate16"]:
        return None
    _, xs, xz, w, ws, wz, ys, yz = consts[:8]
    bias = consts[8] if len(consts) > 8 else None
    if len(node.input) > 8 and node.input[8] and bias is None:
        return None  # a bias computed at run time: the generic op
    sx, sy = _scalar_scale(xs), _scalar_scale(ys)
    zx, zy = _scalar_zp(xz), _scalar_zp(yz)
    if sx is None or sy is None or zx is None or zy is None or zy[1] not in _QDTYPES[:2] or w is None:
        return None
    o = w.shape[0]
    if not isinstance(ws, np.ndarray) or ws.dtype != _F32 or not (ws.size == 1 or ws.shape[-1] == ws.size == o) \
            or not (np.all(np.isfinite(ws)) and np.all(ws > 0)):
        return None
    xdt = zx[1]
    if xdt is None or xdt.name not in ("uint8", "int8"):
        return None
    acc_fn = _int_conv(w, wz, bias, attrs, ex)
    if acc_fn is None:
        return None
    scale = ((F32(sx) * ws.reshape(-1).astype(F32)) / F32(sy)).astype(F32)
    if not np.all(np.isfinite(scale)):
        return None
    scale = np.ascontiguousarray(np.broadcast_to(scale, (o,)))
    lo, hi = int_range(zy[1])
    ydt = zy[1]
    zxv, zyv = zx[0], zy[0]
    fused = _fused_qconv(w, wz, bias, attrs, ex, xdt, zxv, scale, zyv, lo, hi, ydt)

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype != xdt:
            return generic(ctx, args, attrs_)
        if fused is not None:
            out = fused(x, attrs_)
            if out is not None:
                ctx.integer_node = True
                return [out]
        acc = acc_fn(x, attrs_, ctx, zxv)
        if acc is None:
            return generic(ctx, args, attrs_)
        ctx.integer_node = True
        out = np.empty(acc.shape, ydt)
        requant_nchw(acc.reshape(acc.shape[0], acc.shape[1], -1), scale, zyv, lo, hi,
                     out.reshape(acc.shape[0], acc.shape[1], -1))
        return [out]

    fast.qconv = (w, wz, bias, xdt, zxv, scale, zyv, lo, hi, ydt)  # for exactconv.spec_qlinear_conv
    return fast


def _spec_conv_integer(generic, node, attrs, consts, ex):
    consts = consts + [None] * (4 - len(consts))
    _, w, xz, wz = consts[:4]
    if len(node.input) > 3 and node.input[3] and wz is None:
        return None
    zx_runtime = len(node.input) > 2 and bool(node.input[2]) and xz is None  # DynamicQuantizeLinear's zero point
    zx = (0, None) if zx_runtime else _scalar_zp(xz)
    if zx is None or w is None:
        return None
    acc_fn = _int_conv(w, wz, None, attrs, ex)
    if acc_fn is None:
        return None

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype.name not in ("uint8", "int8"):
            return generic(ctx, args, attrs_)
        if zx_runtime:
            z = args[2]
            if z is None or z.dtype != x.dtype or z.size != 1:
                return generic(ctx, args, attrs_)
            zxv = int(z.reshape(-1)[0])
        else:
            if zx[1] is not None and x.dtype != zx[1]:
                return generic(ctx, args, attrs_)
            zxv = zx[0]
        acc = acc_fn(x, attrs_, ctx, zxv)
        if acc is None:
            return generic(ctx, args, attrs_)
        ctx.integer_node = True
        return [acc.astype(np.int32)]

    return fast


@njit(cache=True, nogil=True)
def requant_rows(acc, scale, zp, lo, hi, out):
    """out[m, n] = clamp(rne(fl32(acc[m, n]) · scale[n]) + zp, lo, hi): `requantize(fp32_rne)`
    with the weight scale per column (channel_axis −1); acc may be larger than out (its top-left
    block is read: a padded kernel result)."""
    m_, n_ = out.shape
    for m in range(m_):
        for n in range(n_):
            v = np.rint(np.float32(acc[m, n]) * scale[n]) + zp
            out[m, n] = lo if v < lo else (hi if v > hi else np.int64(v))
    return out


def _padded_base(acc: np.ndarray) -> np.ndarray:
    """The C-contiguous 2-D array whose top-left block the (M, N) view acc is (a packed kernel's
    padded result), else acc: `requant_rows` reads it in its fast contiguous layout."""
    base = acc.base
    if acc.flags.c_contiguous or not isinstance(base, np.ndarray) or base.ndim != 2 \
            or not base.flags.c_contiguous or base.dtype != acc.dtype or acc.strides != base.strides \
            or base.shape[0] < acc.shape[0] or base.shape[1] < acc.shape[1] or acc.ndim != 2 \
            or acc.__array_interface__["data"][0] != base.__array_interface__["data"][0]:
        return acc
    return base


def _qlinear_matmul_runtime_b(generic, consts, ex):
    """QLinearMatMul of two activations (attention's Q·Kᵀ and P·V) with constant per-tensor scales and
    zero points: when every partial sum provably stays below 2^24 (and within the accumulator), the
    exact sums are one batched float32 product of a − za and b − zb (any order gives the same
    integers), then the fp32_rne requantization of `requant_rows`; else the generic op."""
    from qsim.onnxrun.ops import int_range

    _, as_, az, _, bs, bz, ys, yz = consts[:8]
    sa, sb, sy = _scalar_scale(as_), _scalar_scale(bs), _scalar_scale(ys)
    za, zb, zy = _scalar_zp(az), _scalar_zp(bz), _scalar_zp(yz)
    if None in (sa, sb, sy, za, zb, zy) or za[1] not in _QDTYPES[:2] or zb[1] not in _QDTYPES[:2] \
            or zy[1] not in _QDTYPES[:2]:
        return None
    adt, bdt, ydt = za[1], zb[1], zy[1]
    scale = F32(F32(sa) * F32(sb)) / F32(sy)
    if not np.isfinite(scale):
        return None
    lo, hi = int_range(ydt)
    (lo_a, hi_a), (lo_b, hi_b) = int_range(adt), int_range(bdt)
    max_ab = max(abs(lo_a - za[0]), abs(hi_a - za[0])) * max(abs(lo_b - zb[0]), abs(hi_b - zb[0]))
    hi_acc = (1 << (ex.options["acc_bits"] - 1)) - 1
    k_max = min(F32_EXACT - 1, hi_acc) // max_ab
    fza, fzb = F32(za[0]), F32(zb[0])
    scales: dict = {}

    def fast(ctx, args, attrs_):
        a, b = args[0], args[3]
        if a.dtype != adt or b.dtype != bdt or a.ndim < 2 or b.ndim < 2 or a.shape[-1] > k_max \
                or a.shape[-1] != b.shape[-2] or a.size == 0 or b.size == 0:
            return generic(ctx, args, attrs_)
        try:
            acc = np.matmul(np.subtract(a, fza, dtype=np.float32), np.subtract(b, fzb, dtype=np.float32))
        except ValueError:
            return generic(ctx, args, attrs_)
        ctx.integer_node = True
        n = acc.shape[-1]
        sv = scales.get(n)
        if sv is None:
            sv = scales[n] = np.full(n, scale, np.float32)
        out = np.empty(acc.shape, ydt)
        requant_rows(acc.reshape(-1, n), sv, zy[0], lo, hi, out.reshape(-1, n))
        return [out]

    return fast


def _spec_qlinear_matmul(generic, node, attrs, consts, ex):
    from qsim.onnxrun.ops import _kernels, int_range

    if len(consts) < 8 or ex.options["pair_saturate16"]:
        return None
    _, as_, az, b, bs, bz, ys, yz = consts[:8]
    if b is None and len(node.input) > 3 and node.input[3]:  # b computed at run time
        return _qlinear_matmul_runtime_b(generic, consts, ex)
    if b is None or b.ndim != 2 or b.dtype.name not in ("uint8", "int8") or b.shape[0] == 0:
        return None
    sa, sy = _scalar_scale(as_), _scalar_scale(ys)
    za, zy = _scalar_zp(az), _scalar_zp(yz)
    if sa is None or sy is None or za is None or zy is None or za[1] is None or zy[1] not in _QDTYPES[:2] \
            or za[1] not in _QDTYPES[:2]:
        return None
    n = b.shape[1]
    if not isinstance(bs, np.ndarray) or bs.dtype != _F32 or not (bs.size == 1 or bs.shape[-1] == bs.size == n) \
            or not (np.all(np.isfinite(bs)) and np.all(bs > 0)):
        return None
    if bz is not None and (not isinstance(bz, np.ndarray) or bz.dtype != b.dtype
                           or not (bz.size == 1 or bz.shape[-1] == bz.size == n)):
        return None
    scale = ((F32(sa) * bs.reshape(-1).astype(F32)) / F32(sy)).astype(F32)
    if not np.all(np.isfinite(scale)):
        return None
    scale = np.ascontiguousarray(np.broadcast_to(scale, (n,)))
    zb = 0 if bz is None else (int(bz.reshape(-1)[0]) if bz.size == 1 else bz.reshape(-1).astype(np.int64))
    k = _kernels()
    try:
        pw = k.pack_weights(b) if hasattr(k, "pack_weights") else b
    except (ValueError, TypeError):
        pw = b
    adt, ydt = za[1], zy[1]
    lo, hi = int_range(ydt)
    acc_bits, overflow = ex.options["acc_bits"], ex.options["overflow"]
    bsh = b.astype(np.int64) - np.broadcast_to(np.asarray(zb, np.int64), (n,))[None, :]
    lo_a, hi_a = int_range(adt)
    bound = b.shape[0] * max(abs(lo_a - za[0]), abs(hi_a - za[0])) * int(np.abs(bsh).max(initial=0))
    # exact float32 product when every partial sum provably stays below 2^24 (see _conv_int_f32)
    b_f32 = bsh.astype(np.float32) if bound < F32_EXACT and bound <= (1 << (acc_bits - 1)) - 1 else None
    if getattr(pw, "packed", False):
        b_f32 = None   # the packed VNNI product is faster at every size measured (10×120×360: 5 vs 15 µs)

    def fast(ctx, args, attrs_):
        a = args[0]
        if a.dtype != adt or a.ndim < 2 or a.shape[-1] != b.shape[0]:
            return generic(ctx, args, attrs_)
        ctx.integer_node = True
        a2 = np.ascontiguousarray(a).reshape(-1, a.shape[-1])
        if b_f32 is not None and a2.shape[0] * b_f32.size <= FLOAT_PATH_MACS:
            acc = np.subtract(a2, np.float32(za[0]), dtype=np.float32) @ b_f32
            out = np.empty((a2.shape[0], n), ydt)
            requant_rows(acc, scale, zy[0], lo, hi, out)
            return [out.reshape(a.shape[:-1] + (n,))]
        acc, ovf = k.matmul_int(a2, pw, za[0], zb, acc_bits=acc_bits, overflow=overflow)
        ctx.overflows += int(ovf)
        out = np.empty((a2.shape[0], n), ydt)
        requant_rows(_padded_base(np.asarray(acc)), scale, zy[0], lo, hi, out)
        return [out.reshape(a.shape[:-1] + (n,))]

    return fast


@njit(cache=True, nogil=True)
def qgap_rows(x, zx, scale, zy, lo, hi, out):
    """`contrib.qlinear_global_average_pool` per row of x (rows, n): exact sum − zx·n, then
    rne(clamp(fl32(fl32(sum) · scale), lo − zy, hi − zy)) + zy."""
    r_, n_ = x.shape
    flo = np.float32(lo - zy)
    fhi = np.float32(hi - zy)
    for r in range(r_):
        acc = np.int64(0)
        for i in range(n_):
            acc += np.int64(x[r, i])
        acc -= zx * n_
        v = np.float32(acc) * scale
        v = min(max(v, flo), fhi)
        out[r] = np.int64(np.rint(v)) + zy
    return out


def _spec_qlinear_gap(generic, node, attrs, consts, ex):
    from qsim.onnxrun.ops import int_range

    consts = consts + [None] * (5 - len(consts))
    _, xs, xz, ys, yz = consts[:5]
    if int(attrs.get("channels_last", 0)):
        return None
    sx, sy = _scalar_scale(xs), _scalar_scale(ys)
    zx, zy = _scalar_zp(xz), _scalar_zp(yz)
    if sx is None or sy is None or zx is None or zy is None or zx[1] is None or zx[1] != zy[1] \
            or zx[1] not in _QDTYPES[:2]:
        return None
    dt = zx[1]
    lo, hi = int_range(dt)

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype != dt or x.ndim < 3:
            return generic(ctx, args, attrs_)
        n = int(np.prod(x.shape[2:]))
        scale = F32(sx / F32(sy * F32(n)))
        rows = np.ascontiguousarray(x).reshape(x.shape[0] * x.shape[1], n)
        out = np.empty(rows.shape[0], dt)
        qgap_rows(rows, zx[0], scale, zy[0], lo, hi, out)
        ctx.integer_node = True
        return [out.reshape(x.shape[:2] + (1,) * (x.ndim - 2))]

    return fast


def _spec_qlinear_table(fn_of_attrs):
    """QLinearSigmoid / QLinearLeakyRelu: ORT's 256-entry table built once from the constant scales."""
    def maker(generic, node, attrs, consts, ex):
        from qsim.onnxrun.contrib import _lookup, _table

        consts_ = consts + [None] * (5 - len(consts))
        _, xs, xz, ys, yz = consts_[:5]
        sx, sy = _scalar_scale(xs), _scalar_scale(ys)
        zx, zy = _scalar_zp(xz), _scalar_zp(yz)
        if sx is None or sy is None or zx is None or zy is None or zx[1] is None or zx[1] != zy[1] \
                or zx[1] not in _QDTYPES[:2]:
            return None
        dt = zx[1]
        table = _table(sx, zx[0], sy, zy[0], dt, fn_of_attrs(attrs))

        def fast(ctx, args, attrs_):
            x = args[0]
            if x.dtype != dt:
                return generic(ctx, args, attrs_)
            ctx.integer_node = True
            return [_lookup(x, table)]

        return fast

    return maker


def reflect_pad_axis(x: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    """np.pad(mode="reflect") along one axis when both pads are shorter than it (no repeated
    reflection): the mirrored edges (excluding the edge element) concatenated around x."""
    n = x.shape[axis]
    lead = (slice(None),) * axis
    left = x[lead + (slice(before, 0, -1),)]
    stop = n - 2 - after
    right = x[lead + (slice(n - 2, stop if stop >= 0 else None, -1),)]
    return np.concatenate([left, x, right], axis=axis)


def _spec_pad(generic, node, attrs, consts, ex):
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if ex.opset < 11 or mode != "reflect" or len(consts) < 2 or consts[1] is None:
        return None
    if len(node.input) > 3 and node.input[3]:
        return None  # axes: the generic op
    pads = [int(v) for v in np.asarray(consts[1]).ravel()]
    k = len(pads) // 2
    nonzero = [i for i in range(k) if pads[i] or pads[i + k]]
    if len(nonzero) != 1 or min(pads) < 0:
        return None
    axis = nonzero[0]
    before, after = pads[axis], pads[axis + k]

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.ndim != k or not (before < x.shape[axis] and after < x.shape[axis]):
            return generic(ctx, args, attrs_)
        return [reflect_pad_axis(x, axis, before, after)]

    return fast


# -- QLinearAdd / QLinearMul (same-shape operands) -----------------------------------------------------------
@njit(cache=True, nogil=True)
def qadd_codes(a, b, ra, rb, fixed, lo, hi, out):
    """`qsim.onnxrun.contrib._add_kernel` mode 0 reading the 8-bit codes directly (no float32 copies)."""
    for i in range(out.size):
        v = _fma32(np.float32(a[i]), ra, _fma32(np.float32(b[i]), rb, fixed))
        q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
        out[i] = min(max(np.int64(q), lo), hi)
    return out



@njit(cache=True, nogil=True)
def qadd_scalar(x, rx, fixed2, lo, hi, out):
    """`contrib._add_kernel` mode 1/2 (the other side one constant code, pre-added to fixed2)."""
    for i in range(out.size):
        v = _fma32(np.float32(x[i]), rx, fixed2)
        q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
        out[i] = min(max(np.int64(q), lo), hi)
    return out


@njit(cache=True, nogil=True)
def qmul_scalar(x, zx, term, ratio, zc, lo, hi, out):
    """`contrib._mul_kernel` with the other side one constant code (term = code − its zero point)."""
    for i in range(out.size):
        p = (np.int64(x[i]) - zx) * term
        v = np.float32(p) * ratio + zc
        q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
        out[i] = min(max(np.int64(q), lo), hi)
    return out


@njit(cache=True, nogil=True)
def qmul_channel(x, zx, y, zy, mid, inner, ratio, zc, lo, hi, out):
    """`contrib._mul_kernel` on x times y broadcast: y[(i // inner) % mid] (one value per channel span)."""
    for r in range(out.size // inner):
        t = np.int64(y[r % mid]) - zy
        xs, os_ = x[r * inner:(r + 1) * inner], out[r * inner:(r + 1) * inner]  # slices: the loop vectorises
        for j in range(inner):
            p = (np.int64(xs[j]) - zx) * t
            v = np.float32(p) * ratio + zc
            q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
            os_[j] = min(max(np.int64(q), lo), hi)
    return out


@njit(cache=True, nogil=True)
def qadd_channel(x, rx, y, ry, fixed, mid, inner, lo, hi, out):
    """`contrib._add_kernel` mode 1/2 (y one value per innermost span, y[(i // inner) % mid])."""
    for r in range(out.size // inner):
        f = fixed + np.float32(y[r % mid]) * ry
        xs, os_ = x[r * inner:(r + 1) * inner], out[r * inner:(r + 1) * inner]
        for j in range(inner):
            v = _fma32(np.float32(xs[j]), rx, f)
            q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
            os_[j] = min(max(np.int64(q), lo), hi)
    return out


def channel_span(full: tuple, small: tuple):
    """(mid, inner) when `small` broadcasts to `full` as one contiguous block of full's dims
    (e.g. (1, C, 1, 1) against (N, C, H, W): mid = C, inner = H·W), else None."""
    if len(small) > len(full):
        return None
    small = (1,) * (len(full) - len(small)) + tuple(small)
    keep = [d for d, n in enumerate(small) if n != 1]
    if not keep or keep[-1] - keep[0] + 1 != len(keep) or any(small[d] != full[d] for d in keep):
        return None
    return int(np.prod(full[keep[0]:keep[-1] + 1])), int(np.prod(full[keep[-1] + 1:]))


def _spec_qlinear_binary(kind):
    def maker(generic, node, attrs, consts, ex):
        from qsim.onnxrun.contrib import _fma, _mul_kernel
        from qsim.onnxrun.ops import int_range

        consts = consts + [None] * (8 - len(consts))
        _, as_, az, _, bs, bz, cs, cz = consts[:8]
        sa, sb, sc = _scalar_scale(as_), _scalar_scale(bs), _scalar_scale(cs)
        za, zb, zc = _scalar_zp(az), _scalar_zp(bz), _scalar_zp(cz)
        if None in (sa, sb, sc, za, zb, zc):
            return None
        dts = {d for d in (za[1], zb[1], zc[1]) if d is not None}
        if len(dts) != 1 or next(iter(dts)) not in _QDTYPES[:2]:
            return None
        dt = next(iter(dts))
        lo, hi = int_range(dt)
        if kind == "add":
            r_a, r_b = F32(sa / sc), F32(sb / sc)
            fixed = F32(F32(zc[0]) - _fma(r_a, F32(za[0]), F32(r_b * F32(zb[0]))))
        else:
            ratio = F32(F32(sa * sb) / sc)

        # one side a constant scalar (x·0.2 + 0.5 of HardSigmoid, ...): ORT's scalar-span kernel
        side = None
        for i_const, i_vec in ((0, 3), (3, 0)):
            cval = consts[i_const]
            if cval is not None and isinstance(cval, np.ndarray) and cval.size == 1 and cval.dtype == dt:
                side = (i_const, i_vec, int(cval.reshape(-1)[0]), cval.ndim)
                break
        if side is not None:
            i_const, i_vec, code, c_ndim = side
            if kind == "add":  # mode 1 (a scalar) / 2 (b scalar): fixed' = fl(fixed + fl(code·r_const))
                r_vec = r_b if i_vec == 3 else r_a
                r_const = r_a if i_const == 0 else r_b
                fixed2 = F32(fixed + F32(F32(code) * r_const))
            else:
                z_vec = (zb if i_vec == 3 else za)[0]
                term = code - (za if i_const == 0 else zb)[0]

            c_arr, zcf = consts[i_const], F32(zc[0])

            def fast_scalar(ctx, args, attrs_):
                x = args[i_vec]
                if args[i_const] is not c_arr or x.dtype != dt or x.size <= 1 or x.ndim < c_ndim \
                        or not x.flags.c_contiguous:
                    return generic(ctx, args, attrs_)
                ctx.integer_node = True
                out = np.empty_like(x)
                if kind == "add":
                    qadd_scalar(x.reshape(-1), r_vec, fixed2, lo, hi, out.reshape(-1))
                else:
                    qmul_scalar(x.reshape(-1), z_vec, term, ratio, zcf, lo, hi, out.reshape(-1))
                return [out]

            return fast_scalar

        spans: dict = {}
        zcf = F32(zc[0])

        def one_code(ctx, x, s_, vec_is_b):
            """One side a single code computed at run time: the scalar-span kernel (mode 1 / 2)."""
            code = int(s_.reshape(-1)[0])
            ctx.integer_node = True
            out = np.empty_like(x)
            if kind == "add":
                r_vec, r_s = (r_b, r_a) if vec_is_b else (r_a, r_b)
                qadd_scalar(x.reshape(-1), r_vec, F32(fixed + F32(F32(code) * r_s)), lo, hi, out.reshape(-1))
            else:
                z_vec, z_s = (zb[0], za[0]) if vec_is_b else (za[0], zb[0])
                qmul_scalar(x.reshape(-1), z_vec, code - z_s, ratio, zcf, lo, hi, out.reshape(-1))
            return [out]

        def fast(ctx, args, attrs_):
            a, b = args[0], args[3]
            if (a.size == 1) != (b.size == 1):
                x, s_ = (b, a) if a.size == 1 else (a, b)
                if x.dtype != dt or s_.dtype != dt or x.size <= 1 or s_.ndim > x.ndim or not x.flags.c_contiguous:
                    return generic(ctx, args, attrs_)
                return one_code(ctx, x, s_, a.size == 1)
            if a.dtype != dt or b.dtype != dt or a.size <= 1 or b.size <= 1 \
                    or not a.flags.c_contiguous or not b.flags.c_contiguous:
                return generic(ctx, args, attrs_)
            if a.shape != b.shape:  # one side one value per channel span (SE blocks' x·gate, biases)
                key = (a.shape, b.shape)
                span = spans.get(key, 0)
                if span == 0:
                    span = None
                    for i_full, full, small in ((0, a, b), (3, b, a)):
                        cs = channel_span(full.shape, small.shape) if full.size > small.size else None
                        # add: the generic op's mode 1/2 only where the span's last dim is broadcast
                        if cs is not None and cs[1] > 1 and (kind == "mul" or full.shape[-1] != 1):
                            span = (i_full, cs[0], cs[1])
                    spans[key] = span
                if span is None:
                    return generic(ctx, args, attrs_)
                i_full, mid, inner = span
                full, small = (a, b) if i_full == 0 else (b, a)
                ctx.integer_node = True
                out = np.empty(full.shape, dt)
                if kind == "add":
                    rf, rs = (r_a, r_b) if i_full == 0 else (r_b, r_a)
                    qadd_channel(full.reshape(-1), rf, small.reshape(-1), rs, fixed, mid, inner, lo, hi,
                                 out.reshape(-1))
                else:
                    zf, zs = (za[0], zb[0]) if i_full == 0 else (zb[0], za[0])
                    qmul_channel(full.reshape(-1), zf, small.reshape(-1), zs, mid, inner, ratio, zcf,
                                 lo, hi, out.reshape(-1))
                return [out]
            ctx.integer_node = True
            out = np.empty_like(a)
            if kind == "add":
                qadd_codes(a.reshape(-1), b.reshape(-1), r_a, r_b, fixed, lo, hi, out.reshape(-1))
            else:
                _mul_kernel(a.reshape(-1), b.reshape(-1), za[0], zb[0], ratio, zcf, lo, hi, out.reshape(-1))
            return [out]

        return fast

    return maker


# -- QLinearConcat ------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def table_rows(x, table, off, out):
    """out[r, off + j] = table[x[r, j]] (bytes: the codes of one QLinearConcat input requantized)."""
    for r in range(x.shape[0]):
        src = x[r]
        dst = out[r, off:off + x.shape[1]]
        for j in range(x.shape[1]):
            dst[j] = table[src[j]]


def _spec_qlinear_concat(generic, node, attrs, consts, ex):
    """Constant scales / zero points: each input's requantization table (`contrib._table` with the
    identity) built once, inputs whose scale and zero point equal the output's copied as they are."""
    from qsim.onnxrun.contrib import _table

    if len(consts) < 5 or (len(consts) - 2) % 3 or "axis" not in attrs:
        return None
    ys, yz = _scalar_scale(consts[0]), _scalar_zp(consts[1])
    if ys is None or yz is None or yz[1] not in _QDTYPES[:2]:
        return None
    dt = yz[1]
    tables = []
    for i in range(2, len(consts), 3):
        xs, xz = _scalar_scale(consts[i + 1]), _scalar_zp(consts[i + 2])
        if xs is None or xz is None or xz[1] is None:
            return None
        tables.append(None if (xs == ys and xz[0] == yz[0]) else _table(xs, xz[0], ys, yz[0], dt, lambda v: v))
    axis = int(attrs["axis"])
    n = len(tables)
    identity = np.arange(256, dtype=np.uint8).view(dt)
    copies = [t is None for t in tables]
    tables = [identity if t is None else t for t in tables]

    layouts: dict = {}

    def fast(ctx, args, attrs_):
        xs = args[2::3]
        if len(xs) != n or any(x is None or x.dtype != dt or not x.flags.c_contiguous for x in xs):
            return generic(ctx, args, attrs_)
        key = tuple(x.shape for x in xs)
        lay = layouts.get(key)
        if lay is None:  # output shape, rows and each input's width, once per input shapes
            nd = xs[0].ndim
            ax = axis + nd if axis < 0 else axis
            if not 0 <= ax < nd or any(x.ndim != nd or x.shape[:ax] != xs[0].shape[:ax]
                                       or x.shape[ax + 1:] != xs[0].shape[ax + 1:] for x in xs):
                return generic(ctx, args, attrs_)
            shape = list(xs[0].shape)
            shape[ax] = sum(x.shape[ax] for x in xs)
            outer = int(np.prod(shape[:ax]))
            lay = layouts[key] = (tuple(shape), outer, [x.size // outer if outer else 0 for x in xs])
        shape, outer, widths = lay
        y = np.empty(shape, dt)
        y2 = y.reshape(outer, -1).view(np.uint8) if outer else y.reshape(0, 0).view(np.uint8)
        off = 0
        for x, t, width, same in zip(xs, tables, widths, copies):
            if same:  # the output's scale and zero point: the codes as they are
                y2[:, off:off + width] = x.reshape(outer, width).view(np.uint8)
            else:
                table_rows(x.reshape(outer, width).view(np.uint8), t.view(np.uint8), off, y2)
            off += width
        ctx.integer_node = True
        return [y]

    return fast


# -- Resize (nearest) --------------------------------------------------------------------------------------------
def _spec_resize_nearest(generic, node, attrs, consts, ex):
    """Nearest Resize with constant roi / scales / sizes is a gather (`shapemaps.gather_by_shape`)."""
    from qsim.onnxrun.shapemaps import fixed_operands, gather_by_shape

    mode = attrs.get("mode", b"nearest")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "nearest":
        return None
    fixed = fixed_operands(node, consts)  # None: roi / scales / sizes computed at run time, the generic op
    return None if fixed is None else gather_by_shape(generic, fixed)


# -- float ConvTranspose, stride = kernel (the detection heads' 2x2 / stride 2 upsampling) -------------------
@njit(cache=True, nogil=True)
def place_taps(col, out):
    """out[o, h·kh + i, w·kw + j] = 0 + col[o, i, j, h, w] (the zero-initialised col2im's one add per
    element where strides = kernel: −0 becomes +0 as there)."""
    og, kh, kw, h, wd = col.shape
    for o in range(og):
        for r in range(h):
            for i in range(kh):
                row = out[o, r * kh + i]
                for j in range(kw):
                    src = col[o, i, j, r]
                    for c in range(wd):
                        row[c * kw + j] = np.float32(0.0) + src[c]


def _spec_conv_transpose(generic, node, attrs, consts, ex):
    """`f32_ops.conv_transpose` where the taps do not overlap (strides = kernel, no pads, dilation 1,
    no output padding): the same GEMM from the weights transposed once, each tap's plane placed by a
    reshape (0 + col, as the generic op's zero-initialised col2im adds it), then the bias."""
    from qsim.onnxrun.f32gemm import sgemm

    if len(consts) < 2 or consts[1] is None:
        return None
    w = consts[1]
    b = consts[2] if len(consts) > 2 else None
    if (len(node.input) > 2 and node.input[2] and b is None) or w.dtype != _F32 or w.ndim != 4:
        return None
    g, og, kernel = int(attrs.get("group", 1)), w.shape[1], tuple(w.shape[2:])
    ints = {k: [int(v) for v in attrs.get(k, [])] for k in ("strides", "dilations", "output_padding", "pads")}
    auto = attrs.get("auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "VALID") or g != 1 \
            or ints["strides"] != list(kernel) or any(d != 1 for d in ints["dilations"]) \
            or any(ints["output_padding"]) or any(ints["pads"]) or "output_shape" in attrs \
            or (b is not None and (b.dtype.kind != "f" or b.shape != (og,))):
        return None
    c, (kh, kw) = w.shape[0], kernel
    wt_t = np.ascontiguousarray(w.astype(F32).reshape(1, c, og * kh * kw)[0].T)
    bias = None if b is None else b.astype(F32).reshape(1, -1, 1, 1)

    def fast(ctx, args, attrs_):
        x = args[0]
        if not isinstance(x, np.ndarray) or x.dtype != _F32 or x.ndim != 4 or x.shape[1] != c \
                or args[1] is not w or (b is not None and args[2] is not b):
            return generic(ctx, args, attrs_)
        n, _, h, wd = x.shape
        y = np.empty((n, og, h * kh, wd * kw), F32)
        for i in range(n):
            col = sgemm(wt_t, x[i].reshape(c, h * wd), packed=False, trans_a=True)
            place_taps(col.reshape(og, kh, kw, h, wd), y[i])
        if bias is not None:
            y += bias
        return [y]

    return fast


# -- HardSigmoid (float32) ----------------------------------------------------------------------------------------
def _spec_hard_sigmoid(generic, node, attrs, consts, ex):
    """`f32_ops.hard_sigmoid` with the clip as maximum / minimum in place (np.clip's Python wrapper costs
    more than the work on the SE gates' few values); beta ≠ 0, so x·alpha + beta is never −0 and the two
    clips agree (NaN propagates through both)."""
    alpha, beta = F32(attrs.get("alpha", 0.2)), F32(attrs.get("beta", 0.5))
    if beta == 0 or not np.isfinite(beta):
        return None
    zero, one = F32(0), F32(1)

    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or x.dtype != _F32 or x.ndim == 0:
            return generic(ctx, args, attrs_)
        y = x * alpha
        y += beta
        np.maximum(y, zero, out=y)
        np.minimum(y, one, out=y)
        return [y]

    return fast


# -- float Conv --------------------------------------------------------------------------------------------------
def _spec_conv(generic, node, attrs, consts, ex):
    """Float Conv with constant weights: grouped once; 1-D / 2-D ones (depthwise aside) in one Numba
    call (`fastconv.conv_once`), the rest through `f32_ops.conv_prepared`."""
    from qsim.onnxrun.f32_ops import conv_prepared
    from qsim.onnxrun.fastconv import conv_once, conv_params
    from qsim.onnxrun.spatial import window

    if len(consts) < 2 or consts[1] is None:
        return None
    w = consts[1]
    b = consts[2] if len(consts) > 2 else None
    if len(node.input) > 2 and node.input[2] and b is None:
        return None  # a bias computed at run time: the generic op
    if w.dtype.kind != "f" or w.ndim not in (3, 4) or (b is not None and b.dtype.kind != "f"):
        return None
    g = int(attrs.get("group", 1))
    o = w.shape[0]
    if o % g or (b is not None and b.shape != (o,)):
        return None
    kernel = w.shape[2:]
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != tuple(kernel):
        return None
    kk = int(np.prod(kernel))
    wg = np.ascontiguousarray(w.astype(F32).reshape(g, o // g, w.shape[1] * kk))
    bias = None if b is None else b.astype(F32)
    wg_t = np.ascontiguousarray(wg.transpose(0, 2, 1))

    wins: dict = {}
    no_bias = np.zeros(0, F32)

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype != _F32 or x.ndim != w.ndim or x.shape[1] != w.shape[1] * g:
            return generic(ctx, args, attrs_)
        hit = wins.get(x.shape[2:])
        if hit is None:
            try:
                win = window(attrs_, x.shape[2:], kernel)
            except ValueError:
                return generic(ctx, args, attrs_)
            hit = wins[x.shape[2:]] = (win, conv_params(win, kernel, x.shape[1], g, o // g, bias is not None))
        win, params = hit
        if params is None or not x.flags.c_contiguous:
            return conv_prepared(ctx, x, w, wg, bias, attrs_, wg_t, win)
        n = x.shape[0]
        y = np.empty((n, g, o // g, int(params[8] * params[9])), F32)
        conv_once(x if x.ndim == 4 else x.reshape(n, x.shape[1], 1, x.shape[2]), wg, wg_t,
                  no_bias if bias is None else bias, params, y)
        return [y.reshape((n, o) + win.out)]

    return fast


def _spec_if(generic, node, attrs, consts, ex):
    """If: the taken branch through its own prepared plan (`control_flow.prepared_if`)."""
    from qsim.onnxrun.control_flow import prepared_if

    return prepared_if(generic, node, attrs, consts, ex)


SPECIALIZERS = {
    ("", "If"): _spec_if,
    ("", "DequantizeLinear"): _spec_dequantize,
    ("", "QuantizeLinear"): _spec_quantize,
    ("", "Add"): _spec_binary(np.add),
    ("", "Sub"): _spec_binary(np.subtract),
    ("", "Mul"): _spec_binary(np.multiply),
    ("", "Div"): _spec_binary(np.divide),
    ("", "Clip"): _spec_clip,
    ("", "QLinearConv"): _spec_qlinear_conv,
    ("", "ConvInteger"): _spec_conv_integer,
    ("", "QLinearMatMul"): _spec_qlinear_matmul,
    ("com.microsoft", "QLinearGlobalAveragePool"): _spec_qlinear_gap,
    ("", "Pad"): _spec_pad,
    ("", "Conv"): _spec_conv,
    ("com.microsoft", "QLinearAdd"): _spec_qlinear_binary("add"),
    ("com.microsoft", "QLinearMul"): _spec_qlinear_binary("mul"),
    ("com.microsoft", "QLinearConcat"): _spec_qlinear_concat,
    ("", "Resize"): _spec_resize_nearest,
    ("", "ConvTranspose"): _spec_conv_transpose,
    ("", "HardSigmoid"): _spec_hard_sigmoid,
}


def _register_tables():
    """QLinearSigmoid / QLinearLeakyRelu (contrib imports this module's siblings: registered last) and
    the data-movement ops of `qsim.onnxrun.shapemaps`."""
    from qsim.onnxrun.contrib import _leaky_fn, _sigmoid_fn
    from qsim.onnxrun.exactconv import spec_conv_integer, spec_qlinear_conv
    from qsim.onnxrun.fastdynamic import spec_dynamic_quantize_linear
    from qsim.onnxrun.fastgemm import spec_gemm
    from qsim.onnxrun.fastlstm import spec_dynamic_quantize_lstm, spec_lstm
    from qsim.onnxrun.shapemaps import SHAPE_SPECIALIZERS

    SPECIALIZERS.update(SHAPE_SPECIALIZERS)
    SPECIALIZERS[("", "Gemm")] = spec_gemm
    SPECIALIZERS[("", "LSTM")] = spec_lstm
    SPECIALIZERS[("com.microsoft", "DynamicQuantizeLSTM")] = spec_dynamic_quantize_lstm
    SPECIALIZERS[("", "ConvInteger")] = spec_conv_integer
    SPECIALIZERS[("", "QLinearConv")] = spec_qlinear_conv
    SPECIALIZERS[("", "DynamicQuantizeLinear")] = spec_dynamic_quantize_linear

    SPECIALIZERS[("com.microsoft", "QLinearSigmoid")] = _spec_qlinear_table(_sigmoid_fn)
    SPECIALIZERS[("com.microsoft", "QLinearLeakyRelu")] = _spec_qlinear_table(_leaky_fn)


_register_tables()
