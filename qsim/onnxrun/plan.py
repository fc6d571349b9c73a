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

This module holds the plan core, QuantizeLinear / DequantizeLinear and the registry
(`SPECIALIZERS`, the one list of which specialiser serves which op); the specialisers live by topic
in sibling modules (`qconv`, `qelementwise`, `floatplan`, `shapemaps`, `exactconv`, `fast*`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun import codegen
from qsim.onnxrun.floatplan import (_spec_binary, _spec_clip, _spec_conv, _spec_conv_transpose,
                                    _spec_hard_sigmoid, _spec_if, _spec_pad, _spec_resize_nearest)
from qsim.onnxrun.qconv import _spec_conv_integer, _spec_qlinear_conv, _spec_qlinear_matmul
from qsim.onnxrun.qelementwise import (_spec_qlinear_binary, _spec_qlinear_concat, _spec_qlinear_gap,
                                       _spec_qlinear_table)
from qsim.onnxrun.specbase import _F32, _QDTYPES, F32, _scalar_scale, _scalar_zp


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


# -- QuantizeLinear / DequantizeLinear -----------------------------------------------------------------


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
