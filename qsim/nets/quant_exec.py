"""Quantized executor: post-training quantization run through qsim's integer kernels.

Pipeline of one MAC layer (a faithful integer pipeline, as TFLite / ONNX QOperator):

    input codes (uint/int, per-tensor scale s_in, zero point z_in)
      → integer MAC (`conv2d_int` / `matmul_int`) with int32 bias rne(b / (s_in·s_w)),
        on an emulated `acc_bits` accumulator (wrap or saturate, overflows counted)
      → `requantize(policy)` straight to the NEXT MAC layer's input codes, ReLU fused as
        the clamp at the zero point; max-pool and flatten act on the codes (exact)
      → the last layer's accumulator is dequantized (acc·s_in·s_w) into float logits.

Activation ranges come from `qsim.quant.calibration.make_observer(aspec)` over the float
network's activations on a calibration subset of the TRAINING split (fed in batches of
`CALIB_BATCH` samples). Activations must be uniform (affine/symmetric) per tensor, or
`global` (one range shared by every activation of the model).

Weight schemes and the path they run (`per_layer[i]["path"]`):
* "int": affine/symmetric, pow2, binary, ternary with tensor/channel/global scales — the
  integer levels in `QTensor.q` go straight into the kernels.
* "int_grouped": per-group scales (`granularity="group"`) and the block formats whose
  levels are integers within 16 bits (mxint8, mxfp6_*, mxfp4, nvfp4): each group's partial
  sum is an exact integer (`matmul_int_grouped`, its own accumulator), the groups are
  combined in float64 (`rescale_groups`) and the float result is quantized to the next
  layer's codes (round half to even).
* "float": codebook weights (kmeans) and formats whose levels exceed 16-bit codes
  (mxfp8_*, pow2 above 5 bits): a float32 product of the dequantized weights with the
  dequantized integer activation codes; activations stay integer between layers.
With `aspec=None` (weight-only quantization) every layer runs the float path on float
activations. Rounding: the network input is quantized with `aspec.rounding`; every later
activation is rounded by the requantization policy (or half to even on the float paths).

Everything that does not depend on the quant config — data, weights, the float forward on
the test split and on the calibration subset, calibrated ranges, quantized weights — is
cached in-process, so a sweep pays only for the integer forward itself. On a VNNI backend a
prepared 8-bit weight is also packed once into the kernels' panels on first use
(`PreparedWeight.kernel_weight`), not per call: the same integers, fewer repacks.

Other networks (e.g. a transformer) reuse the pieces: `QuantConfig.build` (defaults +
per-layer overrides), `act_params` / `ActParams` (calibrated codes), `quantize_input`,
`run_mac_layer` (one Dense/Conv layer on codes → next codes or float), and register a
`Network` with its own `evaluator` so `qsim.nets.evaluate(name, …)` dispatches to it.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from qsim.kernels import (
    POLICIES, PackedWeights, conv2d_int, matmul_int, matmul_int_grouped, pack_weights, requantize, rescale_groups,
)
from qsim.kernels.cpu import has_vnni
from qsim.nets import float_exec
from qsim.nets.data import load_dataset
from qsim.nets.metrics import accuracy, sqnr_db
from qsim.nets.models import Conv, Flatten, Linear, MaxPool
from qsim.nets.registry import get_network
from qsim.quant import QuantSpec, quantize
from qsim.quant.quantize import uniform_params

CALIB_BATCH = 32
CODE_LIMIT = (-(1 << 15), (1 << 16) - 1)   # what the integer kernels accept as codes
ACT_SCHEMES = ("affine", "symmetric")
ACT_GRANULARITIES = ("tensor", "global")


# -- configuration ---------------------------------------------------------------------
@dataclass(frozen=True)
class QuantConfig:
    """Default weight/activation specs, per-layer overrides and the integer arithmetic.

    `overrides` is {layer: {"w": QuantSpec, "a": QuantSpec}} (either key optional); "a" is
    the spec of that layer's INPUT activation (what its MACs consume)."""

    wspec: QuantSpec
    aspec: QuantSpec | None
    policy: str = "fp32_rne"
    acc_bits: int = 32
    overflow: str = "wrap"
    overrides: tuple = ()

    @classmethod
    def build(cls, net, wspec, aspec, *, policy="fp32_rne", acc_bits=32, overflow="wrap", overrides=None):
        names = [op.name for op in net.arch.mac_ops]
        check_spec(wspec, "wspec")
        if aspec is not None:
            check_act_spec(aspec, "aspec")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {list(POLICIES)}, got {policy!r}")
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) or \
                not (8 <= int(acc_bits) <= 32 or int(acc_bits) == 64):
            raise ValueError(f"acc_bits must be an int in 8..32 or 64, got {acc_bits!r}")
        if overflow not in ("wrap", "saturate"):
            raise ValueError(f"overflow must be one of ['wrap', 'saturate'], got {overflow!r}")
        items = []
        for layer, specs in (overrides or {}).items():
            if layer not in names:
                raise ValueError(f"overrides: network {net.name!r} has no MAC layer {layer!r}; layers are {names}")
            if not isinstance(specs, dict) or not specs or set(specs) - {"w", "a"}:
                raise ValueError(f"overrides[{layer!r}] must be a dict with keys 'w' and/or 'a' (QuantSpecs), "
                                 f"got {specs!r}")
            w, a = specs.get("w"), specs.get("a")
            if w is not None:
                check_spec(w, f"overrides[{layer!r}]['w']")
            if a is not None:
                if aspec is None:
                    raise ValueError(f"overrides[{layer!r}]['a'] needs quantized activations (aspec is None)")
                check_act_spec(a, f"overrides[{layer!r}]['a']")
            items.append((layer, w, a))
        return cls(wspec, aspec, policy, int(acc_bits), overflow, tuple(sorted(items, key=lambda t: t[0])))

    def w_for(self, layer: str) -> QuantSpec:
        return next((w for name, w, _ in self.overrides if name == layer and w is not None), self.wspec)

    def a_for(self, layer: str) -> QuantSpec | None:
        return next((a for name, _, a in self.overrides if name == layer and a is not None), self.aspec)

    def describe(self) -> dict:
        spec = lambda s: None if s is None else asdict(s)  # noqa: E731
        return {"wspec": spec(self.wspec), "aspec": spec(self.aspec), "policy": self.policy,
                "acc_bits": self.acc_bits, "overflow": self.overflow,
                "overrides": {name: {k: spec(v) for k, v in (("w", w), ("a", a)) if v is not None}
                              for name, w, a in self.overrides}}


def check_spec(spec, name: str) -> QuantSpec:
    if not isinstance(spec, QuantSpec):
        raise TypeError(f"{name} must be a qsim.quant.QuantSpec, got {type(spec).__name__}")
    return spec


def check_act_spec(spec, name: str) -> QuantSpec:
    check_spec(spec, name)
    if spec.scheme not in ACT_SCHEMES:
        raise ValueError(f"{name}.scheme must be one of {list(ACT_SCHEMES)} for activations (integer codes with "
                         f"one scale), got {spec.scheme!r}")
    if spec.granularity not in ACT_GRANULARITIES:
        raise ValueError(f"{name}.granularity must be one of {list(ACT_GRANULARITIES)} for activations (the "
                         f"integer kernels take one activation scale per tensor), got {spec.granularity!r}")
    return spec


# -- cached, config-independent pieces --------------------------------------------------
@dataclass(frozen=True)
class FloatReference:
    logits: np.ndarray            # test split
    outputs: dict                 # MAC layer → float output (after fused ReLU) on the test split
    labels: np.ndarray


@functools.lru_cache(maxsize=None)
def float_reference(name: str) -> FloatReference:
    """The float network on the whole test split (computed once per process)."""
    net = get_network(name)
    ds = load_dataset(net.dataset)
    with one_blas_thread():
        logits, trace = float_exec.forward(net.arch, net.weights(), ds.x_test, record=True)
    outputs = {k: v[1] for k, v in trace.items()}
    for a in (logits, *outputs.values()):
        a.setflags(write=False)
    return FloatReference(logits, outputs, ds.y_test)


@functools.lru_cache(maxsize=16)
def calibration_inputs(name: str, calib_size: int) -> dict:
    """Float input of every MAC layer on the calibration subset."""
    net = get_network(name)
    x = load_dataset(net.dataset).calibration(calib_size)
    _, trace = float_exec.forward(net.arch, net.weights(), x, record=True)
    return {k: v[0] for k, v in trace.items()}


def _observe(spec: QuantSpec, arrays) -> tuple[float, float]:
    try:
        from qsim.quant.calibration import make_observer
    except ImportError:  # observers not installed: min-max (widened to include 0) is all we can do
        if spec.calibration != "minmax":
            raise ValueError(f"calibration {spec.calibration!r} needs qsim.quant.calibration; use 'minmax'") from None
        return (min(0.0, min(float(a.min()) for a in arrays)), max(0.0, max(float(a.max()) for a in arrays)))
    obs = make_observer(spec)
    for a in arrays:
        for i in range(0, len(a), CALIB_BATCH):
            obs.update(a[i:i + CALIB_BATCH])
    return obs.range()


@functools.lru_cache(maxsize=1024)
def activation_range(name: str, calib_size: int, layer: str, aspec: QuantSpec) -> tuple[float, float]:
    """Calibrated (lo, hi) of `layer`'s input; `global` specs share one range over all inputs."""
    inputs = calibration_inputs(name, calib_size)
    if aspec.granularity == "global":
        return _observe(aspec, list(inputs.values()))
    return _observe(aspec, [inputs[layer]])


@dataclass(frozen=True)
class ActParams:
    scale: float
    zero_point: int
    qmin: int
    qmax: int

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """float32 s·(q − z): q − z is exact in float32 for 16-bit codes."""
        return (codes.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)


@functools.lru_cache(maxsize=1024)
def act_params(name: str, calib_size: int, layer: str, aspec: QuantSpec) -> ActParams:
    lo, hi = activation_range(name, calib_size, layer, aspec)
    s, z = uniform_params(lo, hi, aspec)
    qmin, qmax = aspec.qrange
    return ActParams(float(s), int(z), qmin, qmax)


@dataclass(frozen=True)
class PreparedWeight:
    """One layer's quantized weight, laid out for its kernel."""

    path: str                     # "int", "int_grouped" or "float"
    q: np.ndarray | None          # codes: OIHW for conv, (K, N) for dense
    zero_point: object            # scalar, (O,) or (G, O)
    scale: np.ndarray             # scalar, (O,) or (G, O)
    dequantized: np.ndarray       # float32, original layout
    group_size: int | None
    label: str
    float_reason: str = ""        # why path is "float" (provenance; empty on the integer paths)

    def kernel_weight(self, groups: int = 1):
        """What `conv2d_int` / `matmul_int` get for `q`: on a VNNI backend the codes packed once
        into the kernels' panels (`qsim.kernels.pack_weights`, built on first use and kept with
        this weight), so no forward re-packs them; else (another backend, 16-bit codes, K beyond
        the panels, grouped convs) `q` itself. The kernels return the same integers either way."""
        if groups != 1:
            return self.q
        packed = self._packed
        return self.q if packed is None else packed

    @functools.cached_property
    def _packed(self) -> PackedWeights | None:
        return pack_if_useful(self.q) if self.path == "int" else None


def pack_if_useful(q) -> PackedWeights | None:
    """`pack_weights(q)` when the packed panels can serve it: a VNNI backend (`has_vnni`), 8-bit
    codes, a (K, N) matrix or an (O, C, kh, kw) conv weight with 0 < K ≤ the panels' K_MAX
    (K = C·kh·kw for a conv) and N > 0; else None (the kernels would only use the stored copy)."""
    if q is None or not has_vnni() or q.dtype.itemsize != 1 or q.dtype.kind not in "iu" or q.ndim not in (2, 4):
        return None
    from qsim.kernels.vnni import K_MAX

    K, N = (q.shape[0], q.shape[1]) if q.ndim == 2 else (int(np.prod(q.shape[1:])), q.shape[0])
    if not (0 < K <= K_MAX and N > 0):
        return None
    packed = pack_weights(q)
    return packed if packed.packed else None


def _code_dtype(lo: int, hi: int):
    for dt in (np.int8, np.uint8, np.int16, np.uint16):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return dt
    return np.int32


@functools.lru_cache(maxsize=1024)
def prepared_weight(name: str, layer: str, wspec: QuantSpec) -> PreparedWeight:
    """Quantize one layer's weight (as a 2-D (out, K) matrix: channel axis 0, groups along K)."""
    net = get_network(name)
    params = net.weights()
    op = next(o for o in net.arch.mac_ops if o.name == layer)
    w = params[f"{layer}.w"]
    w2 = w.reshape(w.shape[0], -1)
    value_range = None
    if wspec.granularity == "global":
        allw = np.concatenate([params[f"{o.name}.w"].ravel() for o in net.arch.mac_ops])
        value_range = (float(allw.min()), float(allw.max()))
    qt = quantize(w2, wspec, axis=0 if wspec.granularity == "channel" else None if
                  wspec.granularity in ("tensor", "global") else -1, value_range=value_range)
    return weight_from_qtensor(qt, op, w.shape, wspec.label())


def weight_from_qtensor(qt, op, weight_shape, label: str) -> PreparedWeight:
    """The executor's `PreparedWeight` of a QTensor of the 2-D (out, K) weight: codes laid out for
    the kernels (K, O) for dense and grouped layers, OIHW for convs; the float path (with the
    reason) for codebook weights or levels beyond the kernels' 16-bit codes. PTQ and QAT build
    their deployed weights here too, so all three run the same layout."""
    deq = qt.dequantize(np.float32).reshape(weight_shape)
    deq.setflags(write=False)
    fits = qt.codebook is None and CODE_LIMIT[0] <= qt.qmin and qt.qmax <= CODE_LIMIT[1]
    if not fits:
        why = ("k-means codebook weights (no integer levels)" if qt.codebook is not None else
               f"weight levels {qt.qmin}..{qt.qmax} exceed the kernels' 16-bit codes")
        return PreparedWeight("float", None, 0, np.ones(()), deq, None, label, why)
    q = qt.q.astype(_code_dtype(qt.qmin, qt.qmax))
    grouped = qt.spec.granularity == "group"
    if grouped:
        scale = np.ascontiguousarray(qt.scale.T)                      # (G, O)
        zp = np.ascontiguousarray(qt.zero_point.T) if qt.has_zero_point else 0
    else:
        scale = qt.scale                                              # () or (O,)
        zp = (qt.zero_point if qt.zero_point.ndim else int(qt.zero_point)) if qt.has_zero_point else 0
    if isinstance(op, Linear) or grouped:
        q = np.ascontiguousarray(q.T)                                 # (K, O)
    else:
        q = q.reshape(weight_shape)                                   # OIHW
    q.setflags(write=False)
    return PreparedWeight("int_grouped" if grouped else "int", q, zp, scale, deq,
                          qt.spec.group_size if grouped else None, label)


# -- one MAC layer --------------------------------------------------------------------
def int_bias(b: np.ndarray, in_scale: float, w_scale) -> np.ndarray:
    """int32 bias in the accumulator's units s_in·s_w (TFLite / QLinearConv), saturated to int32."""
    v = np.rint(b.astype(np.float64) / (in_scale * np.asarray(w_scale, np.float64)))
    v = np.broadcast_to(v, b.shape)
    return np.clip(v, -(1 << 31), (1 << 31) - 1).astype(np.int64)


def _pad4(op: Conv):
    ph, pw = op.padding
    return (ph, pw, ph, pw)


def _to_nchw(y2: np.ndarray, n: int, op: Conv, in_hw) -> np.ndarray:
    _, ho, wo = op.out_shape((op.in_ch,) + tuple(in_hw))
    return y2.reshape(n, ho, wo, op.out_ch).transpose(0, 3, 1, 2)


def _grouped_mac(op, pw: PreparedWeight, codes, a: ActParams, bias, cfg) -> tuple[np.ndarray, int]:
    """Per-group integer partial sums, combined in float64 (+ float bias)."""
    if isinstance(op, Conv):
        cols = float_exec.im2col(codes, op.kernel, op.stride, op.padding, pad_value=a.zero_point)
        g, og = op.groups, op.out_ch // op.groups
        kg = cols.shape[1] // g
        y = np.empty((cols.shape[0], op.out_ch))
        total = 0
        for i in range(g):
            sl = slice(i * og, (i + 1) * og)
            zp = pw.zero_point[:, sl] if np.ndim(pw.zero_point) else pw.zero_point
            parts, ovf = matmul_int_grouped(np.ascontiguousarray(cols[:, i * kg:(i + 1) * kg]), pw.q[:, sl],
                                            pw.group_size, a.zero_point, zp, acc_bits=cfg.acc_bits,
                                            overflow=cfg.overflow)
            y[:, sl] = rescale_groups(parts, a.scale, pw.scale[:, sl])
            total += ovf
        return _to_nchw(y + bias, codes.shape[0], op, codes.shape[2:]), total
    parts, ovf = matmul_int_grouped(codes, pw.q, pw.group_size, a.zero_point, pw.zero_point,
                                    acc_bits=cfg.acc_bits, overflow=cfg.overflow)
    return rescale_groups(parts, a.scale, pw.scale) + bias, ovf


def _float_mac(op, w: np.ndarray, x: np.ndarray, bias) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    if isinstance(op, Conv):
        return float_exec.conv_forward(op, x, w, bias)[0]
    return x @ w.T + bias


def quantize_input(x: np.ndarray, a: ActParams) -> np.ndarray:
    """ONNX QuantizeLinear of a float32 input: clamp(rne(fl32(x / s)) + z) — the codes
    `qsim.quant.quantize` gives for these parameters, without its general machinery."""
    q = np.rint(np.asarray(x, np.float32) / np.float32(a.scale))
    q += np.float32(a.zero_point)
    return np.clip(q, a.qmin, a.qmax).astype(_code_dtype(a.qmin, a.qmax))


def _quantize_to(y: np.ndarray, out: ActParams, relu: bool) -> np.ndarray:
    """Float → next layer's codes: rne(y / s) + z, clamped (to [z, qmax] with a fused ReLU)."""
    q = np.rint(y / out.scale) + out.zero_point
    return np.clip(q, max(out.qmin, out.zero_point) if relu else out.qmin, out.qmax).astype(
        _code_dtype(out.qmin, out.qmax))


def maxpool_codes(x: np.ndarray, size: int) -> np.ndarray:
    """`float_exec.maxpool` (non-overlapping size×size windows, ragged edges dropped) as an
    elementwise maximum over the size² strided views: the same values, without NumPy's
    slow multi-axis reduction of a 6-D view (max is exact, so bit-identical)."""
    n, c, h, w = x.shape
    ho, wo = h // size, w // size
    out = None
    for i in range(size):
        for j in range(size):
            v = x[:, :, i:ho * size:size, j:wo * size:size]
            out = v.copy() if out is None else np.maximum(out, v, out=out)
    return out


def run_mac_layer(op, pw: PreparedWeight, b: np.ndarray, codes: np.ndarray, a: ActParams, out: ActParams | None,
                  cfg: QuantConfig) -> tuple[np.ndarray, int]:
    """One quantized MAC layer: input codes → next layer's codes (or float logits if `out` is None).

    Returns (codes or logits, overflow events)."""
    relu = op.relu
    if pw.path == "int":
        w_scale = pw.scale
        bias = int_bias(b, a.scale, w_scale)
        if isinstance(op, Conv):
            acc, ovf = conv2d_int(codes, pw.kernel_weight(op.groups), a.zero_point, pw.zero_point, bias,
                                  stride=op.stride, padding=_pad4(op), groups=op.groups, acc_bits=cfg.acc_bits,
                                  overflow=cfg.overflow)
            axis = 1
        else:
            acc, ovf = matmul_int(codes, pw.kernel_weight(), a.zero_point, pw.zero_point, bias,
                                  acc_bits=cfg.acc_bits, overflow=cfg.overflow)
            axis = -1
        if out is None:
            s = a.scale * np.asarray(w_scale, np.float64)
            if np.ndim(s) and axis == 1:
                s = s.reshape(-1, 1, 1)
            y = acc.astype(np.float64) * s
            return (np.maximum(y, 0) if relu else y), ovf
        q = requantize(acc, a.scale, w_scale, out.scale, out.zero_point, policy=cfg.policy, qmin=out.qmin,
                       qmax=out.qmax, activation="relu" if relu else None, channel_axis=axis)
        return q.astype(_code_dtype(out.qmin, out.qmax)), ovf
    if pw.path == "int_grouped":
        y, ovf = _grouped_mac(op, pw, codes, a, b.astype(np.float64), cfg)
    else:
        y, ovf = _float_mac(op, pw.dequantized, a.dequantize(codes), b), 0
    if out is None:
        return (np.maximum(y, 0) if relu else y), ovf
    return _quantize_to(y, out, relu), ovf


# -- whole network ----------------------------------------------------------------------
def _plan(net, cfg: QuantConfig, calib_size: int):
    """Per MAC layer: (op, prepared weight, input ActParams, output ActParams or None)."""
    macs = net.arch.mac_ops
    acts = [act_params(net.name, calib_size, op.name, cfg.a_for(op.name)) for op in macs]
    return [(op, prepared_weight(net.name, op.name, cfg.w_for(op.name)), acts[i],
             acts[i + 1] if i + 1 < len(macs) else None) for i, op in enumerate(macs)]


def quantized_forward(net, cfg: QuantConfig, x: np.ndarray, calib_size: int = 256, *, record: bool = False,
                      batch_size: int | None = 256):
    """Integer forward of float input `x`: float logits, and with `record` a trace
    {layer: (output, overflows)} — outputs dequantized from the codes (float32), the last
    layer's logits as they are. `batch_size` runs the samples in chunks (cache-friendly;
    the same codes, overflow counts summed)."""
    plan = _plan(net, cfg, calib_size)
    if batch_size is not None and len(x) > batch_size:
        parts = [_int_forward(net, plan, cfg, x[i:i + batch_size], record) for i in range(0, len(x), batch_size)]
        logits = np.concatenate([p[0] for p in parts])
        if not record:
            return logits
        trace = {k: (np.concatenate([p[1][k][0] for p in parts]), sum(p[1][k][1] for p in parts))
                 for k in parts[0][1]}
        return logits, trace
    out = _int_forward(net, plan, cfg, x, record)
    return out if record else out[0]


def _int_forward(net, plan, cfg, x, record):
    params = net.weights()
    by_name = {op.name: entry for op, *entry in plan}
    first = net.arch.mac_ops[0].name
    a0, aspec0 = by_name[first][1], cfg.a_for(first)
    if aspec0.rounding == "nearest_even":
        h = quantize_input(x, a0)
    else:  # the input honours the spec's rounding; later layers round by the requantization policy
        h = quantize(x, aspec0, scale=a0.scale, zero_point=a0.zero_point).q
    trace = {}
    for op in net.arch.ops:
        if isinstance(op, (Conv, Linear)):
            pw, a, out = by_name[op.name]
            h, ovf = run_mac_layer(op, pw, params[f"{op.name}.b"], h, a, out, cfg)
            if record:
                trace[op.name] = (h if out is None else out.dequantize(h), ovf)
        elif isinstance(op, MaxPool):
            h = maxpool_codes(h, op.size)
        elif isinstance(op, Flatten):
            h = h.reshape(h.shape[0], -1)
    return (h, trace) if record else (h,)


def weight_only_forward(net, cfg: QuantConfig, x: np.ndarray):
    """Float activations over dequantized weights (aspec=None)."""
    params = dict(net.weights())
    for op in net.arch.mac_ops:
        params[f"{op.name}.w"] = prepared_weight(net.name, op.name, cfg.w_for(op.name)).dequantized
    logits, trace = float_exec.forward(net.arch, params, x, record=True)
    return logits, {k: (v[1], 0) for k, v in trace.items()}


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """Context pinning BLAS to one thread (cheap after the first call): threaded BLAS on a
    busy small machine made these small GEMMs 100× slower."""
    return _blas_controller().limit(limits=1, user_api="blas")


def layer_numerics(pw: PreparedWeight, weight_only: bool) -> str:
    """How a layer's products were computed: "integer" (overflows counted) or "float: <reason>"."""
    if weight_only:
        return "float: weight-only quantization (float activations)"
    if pw.path == "int":
        return "integer"
    if pw.path == "int_grouped":
        return "integer (exact per-group sums, groups combined in float64)"
    return f"float: {pw.float_reason}"


def summarize_numerics(per_layer: list[dict], overflows) -> tuple[str, float]:
    """(numerics of a whole config, overflow count or NaN where no layer counts overflows).

    "integer kernels" when every MAC layer ran on integers; "float: <reason>" when none did;
    otherwise the float layers are named. Overflows are counted on integer layers only."""
    marks = [p.get("numerics") for p in per_layer]
    if not per_layer or any(m is None for m in marks):
        return "not reported by the network's evaluator", float(overflows) if overflows is not None else float("nan")
    integer = [p for p in per_layer if p["numerics"].startswith("integer")]
    floats = [p for p in per_layer if not p["numerics"].startswith("integer")]
    grouped = " (per-group sums combined in float64)" if any("group" in p["numerics"] for p in integer) else ""
    if not floats:
        text = "integer kernels" + grouped
    elif not integer:
        reasons = sorted({p["numerics"] for p in floats})
        text = "; ".join(reasons)
    else:
        text = (f"integer kernels{grouped} except " + ", ".join(f"{p['layer']} ({p['numerics']})" for p in floats))
    ovf = float(sum(int(p["overflows"]) for p in integer)) if integer else float("nan")
    return text, ovf


def evaluate(name, wspec=None, aspec=None, *, calib_size=256, policy="fp32_rne", acc_bits=32, overflow="wrap",
             overrides=None, eval_size=None, sparsity=None, sparsity_pattern=None, fine_tune_epochs=0,
             compress=None, prune_seed=0) -> dict:
    """Float and quantized task metric, output SQNR, per-layer SQNR and overflow counts.

    wspec=None and aspec=None: float only ("quantized" is None). aspec=None alone:
    weight-only quantization. eval_size: the first N test samples (default all).
    sparsity / sparsity_pattern / fine_tune_epochs / compress / prune_seed: the pruned
    (Deep-Compressed with compress="deep") network, see `qsim.prune.evaluate`."""
    if sparsity is not None or sparsity_pattern is not None or compress is not None or fine_tune_epochs:
        from qsim.prune.evaluate import evaluate_pruned

        return evaluate_pruned(name, wspec, aspec, sparsity=sparsity, sparsity_pattern=sparsity_pattern,
                               fine_tune_epochs=fine_tune_epochs, compress=compress, prune_seed=prune_seed,
                               calib_size=calib_size, policy=policy, acc_bits=acc_bits, overflow=overflow,
                               overrides=overrides, eval_size=eval_size)
    net = get_network(name)
    if net.evaluator is not None:
        return net.evaluator(wspec, aspec, calib_size=calib_size, policy=policy, acc_bits=acc_bits,
                             overflow=overflow, overrides=overrides, eval_size=eval_size)
    with one_blas_thread():
        return _evaluate(name, wspec, aspec, calib_size, policy, acc_bits, overflow, overrides, eval_size)


def _evaluate(name, wspec, aspec, calib_size, policy, acc_bits, overflow, overrides, eval_size) -> dict:
    net = get_network(name)
    if not isinstance(calib_size, (int, np.integer)) or isinstance(calib_size, bool) or calib_size < 1:
        raise ValueError(f"calib_size must be a positive integer, got {calib_size!r}")
    if eval_size is not None and (isinstance(eval_size, bool) or not isinstance(eval_size, (int, np.integer))
                                  or eval_size < 1):
        raise ValueError(f"eval_size must be a positive integer or None, got {eval_size!r}")
    if wspec is None and aspec is not None:
        raise ValueError("aspec without wspec: give a weight QuantSpec too (or neither for float only)")
    cfg = None if wspec is None else QuantConfig.build(net, wspec, aspec, policy=policy, acc_bits=acc_bits,
                                                       overflow=overflow, overrides=overrides)
    ref = float_reference(net.name)
    n = len(ref.labels) if eval_size is None else min(int(eval_size), len(ref.labels))
    labels = ref.labels[:n]
    config = {"calib_size": int(calib_size), "eval_size": n, "dataset": net.dataset}
    config.update(cfg.describe() if cfg else {"wspec": None, "aspec": None})
    result = {"network": net.name, "metric": net.metric, "float": {"metric": accuracy(ref.logits[:n], labels)},
              "quantized": None, "config": config}
    if cfg is None:
        return result
    x = load_dataset(net.dataset).x_test[:n]
    if aspec is None:
        logits, trace = weight_only_forward(net, cfg, x)
    else:
        logits, trace = quantized_forward(net, cfg, x, int(calib_size), record=True)
    per_layer = []
    for op in net.arch.mac_ops:
        out, ovf = trace[op.name]
        pw = prepared_weight(net.name, op.name, cfg.w_for(op.name))
        a = cfg.a_for(op.name)
        per_layer.append({"layer": op.name, "sqnr_db": sqnr_db(ref.outputs[op.name][:n], out),
                          "overflows": int(ovf), "path": "float" if aspec is None else pw.path,
                          "numerics": layer_numerics(pw, aspec is None),
                          "w": pw.label, "a": None if a is None else a.label()})
    result["quantized"] = {"metric": accuracy(logits, labels), "sqnr_db": sqnr_db(ref.logits[:n], logits),
                           "overflows": int(sum(p["overflows"] for p in per_layer)), "per_layer": per_layer,
                           "numerics": summarize_numerics(per_layer, 0)[0]}
    return result
