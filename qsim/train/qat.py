"""Quantization-aware training (STE, LSQ, PACT) and knowledge distillation in the NumPy trainer.

The forward pass fake-quantizes with qsim's own quantizer, so the trained model IS what the
integer kernels run (`qsim.train.deploy`):

* weights, affine/symmetric (any bits; tensor, channel or group scales): LSQ (Esser et al.
  2020). Each step calls `qsim.quant.quantize(w, spec, axis, scale=s, zero_point=z)` with
  the learned step size `s` (rounded to the spec's `scale_dtype`, as stored) and the fixed
  zero point; the gradient is the straight-through estimator for `w` (zero where clipped)
  and LSQ's `round(w/s) − w/s` (inside) or the clip level (outside) for `s`, times LSQ's
  gradient scale 1/sqrt(N·Q_p). "Clipped" means beyond half a step outside the code range
  (where the clamp, not the rounding, sets the level). Step sizes are learned as log s (Adam on a positive
  quantity); the first step size of each slice is the better (lower weight MSE) of the
  spec's calibrated scale and LSQ's 2·E|w|/sqrt(Q_p).
* weights of every other scheme (binary XNOR-Net α = mean|w|, TWN ternary, pow2, the MX /
  NVFP4 block formats, k-means): the scheme's own scale rule is re-applied to the latent
  float weights at every step (`quantize(w, spec, axis)`), gradient straight through.
* activations (the INPUT of every MAC layer, per tensor, affine/symmetric as the integer
  executor takes them, any bits incl. 1-bit {0, s} codes after a ReLU): the zero point is
  fixed by the fp32 calibration (the PTQ range, so 0 for post-ReLU inputs), the step size
  is learned — by LSQ (`act_learning="lsq"`), or PACT-style (`"pact"`): the clipping
  level α = s·(q_max − z) learns only from the clipped values (gradient 0 inside).
* bias: on the integer path it is fake-quantized to the int32 accumulator units s_a·s_w
  (`quant_exec.int_bias`), as the executor will round it; gradient straight through.

Distillation (Hinton et al. 2015): loss = CE(student, y) + λ·T²·KL(p_T(teacher) ‖ p_T(student))
with p_T = softmax(logits / T), the teacher the committed fp32 network. It runs with or
without quantization (`QATConfig(kd_lambda=..)`, `quantize=False` for an fp32 student).
The seeds' "loss correction" L − λ·KL is the same knob with the sign of the KL term's
direction folded into λ ≥ 0 here.

Training starts from the committed fp32 weights (fine-tuning), Adam with a cosine learning
rate, seeded batches; a non-finite loss or gradient stops it with the epoch, step and the
first layer whose values went non-finite.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from qsim.nets import float_exec
from qsim.nets.models import Conv, Flatten, Linear, MaxPool
from qsim.quant import QuantSpec, quantize
from qsim.quant.quantize import round_scale

TRAININGS = ("ptq", "qat", "qat_kd")
ACT_LEARNING = ("lsq", "pact")
LSQ_SCHEMES = ("affine", "symmetric")
QAT_FORMAT = 1           # bump when the training changes what a cached model holds
CODE_LIMIT = (-(1 << 15), (1 << 16) - 1)
DEFAULT_LR = 1e-3


def _positive_int(name, v, allow_none=False):
    if allow_none and v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _finite_positive(name, v, allow_zero=False):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v) or \
            (v < 0 if allow_zero else v <= 0):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}")


@dataclass(frozen=True)
class QATConfig:
    """Everything (besides the network, its weights and the quant specs) that determines a trained model."""

    epochs: int = 3
    lr: float = 1e-3
    seed: int = 0
    batch_size: int = 64
    kd_lambda: float = 0.0
    kd_temperature: float = 4.0
    act_learning: str = "lsq"
    quantize: bool = True
    train_size: int | None = None      # the first N training samples (None: all)
    weight_decay: float = 0.0          # L2 on the latent weights (not biases or step sizes), as the fp32 trainer

    def __post_init__(self):
        _positive_int("epochs", self.epochs)
        _finite_positive("lr", self.lr)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        _positive_int("batch_size", self.batch_size)
        _finite_positive("kd_lambda", self.kd_lambda, allow_zero=True)
        _finite_positive("kd_temperature", self.kd_temperature)
        if self.act_learning not in ACT_LEARNING:
            raise ValueError(f"act_learning must be one of {list(ACT_LEARNING)}, got {self.act_learning!r}")
        _positive_int("train_size", self.train_size, allow_none=True)
        _finite_positive("weight_decay", self.weight_decay, allow_zero=True)


def check_training(training) -> str:
    if training not in TRAININGS:
        raise ValueError(f"training must be one of {list(TRAININGS)}, got {training!r}")
    return training


# -- slices of a weight's scales ----------------------------------------------------------
def _weight_axis(spec: QuantSpec):
    """The axis of the 2-D (out, K) weight as `quant_exec.prepared_weight` quantizes it."""
    return 0 if spec.granularity == "channel" else None if spec.granularity in ("tensor", "global") else -1


def _reduce(x2: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """Sum of a (out, K) array over each scale's slice, in the scale's shape."""
    if spec.granularity in ("tensor", "global"):
        return np.asarray(x2.sum(dtype=np.float64))
    if spec.granularity == "channel":
        return x2.sum(axis=1, dtype=np.float64)
    gs = spec.group_size
    o, k = x2.shape
    g = -(-k // gs)
    if g * gs != k:
        x2 = np.pad(x2, ((0, 0), (0, g * gs - k)))
    return x2.reshape(o, g, gs).sum(axis=2, dtype=np.float64)


def _slice_count(shape2, spec: QuantSpec) -> float:
    o, k = shape2
    return float(o * k if spec.granularity in ("tensor", "global") else k if spec.granularity == "channel"
                 else min(spec.group_size, k))


def _expand(p: np.ndarray, shape2, spec: QuantSpec) -> np.ndarray:
    from qsim.quant.qtensor import expand_param

    return expand_param(np.asarray(p), shape2, spec.granularity, _weight_axis(spec) if spec.granularity not in
                        ("tensor", "global") else None, spec.group_size)


def weight_path(qt) -> str:
    """Which executor path a quantized weight takes (mirrors `quant_exec.prepared_weight`)."""
    if qt.codebook is not None or not (CODE_LIMIT[0] <= qt.qmin and qt.qmax <= CODE_LIMIT[1]):
        return "float"
    return "int_grouped" if qt.spec.granularity == "group" else "int"


# -- quantizers ---------------------------------------------------------------------------
class WeightQuantizer:
    """Fake quantization of one layer's weight (LSQ for affine/symmetric, STE otherwise)."""

    def __init__(self, layer: str, spec: QuantSpec, w: np.ndarray):
        if spec.granularity == "global":
            raise ValueError(f"QAT weights: granularity 'global' (one range over the whole model) is not trained; "
                             f"use 'tensor', 'channel' or 'group' (layer {layer!r})")
        self.layer, self.spec, self.shape = layer, spec, w.shape
        self.axis = _weight_axis(spec)
        self.lsq = spec.scheme in LSQ_SCHEMES
        w2 = np.asarray(w, np.float32).reshape(w.shape[0], -1)
        qt = quantize(w2, spec, self.axis)
        self.path = weight_path(qt)
        self.log_s = None
        if self.lsq:
            qmin, qmax = spec.qrange
            self.z = np.asarray(qt.zero_point, np.int64)
            s_cal = np.asarray(qt.scale, np.float64)
            s = s_cal
            if spec.scheme == "symmetric":
                qp = max(qmax, 1)
                s_lsq = np.maximum(2.0 * _reduce(np.abs(w2), spec) / _slice_count(w2.shape, spec) / math.sqrt(qp),
                                   1e-8)

                def err(sc):
                    fq = quantize(w2, spec, self.axis, scale=sc, zero_point=self.z).dequantize(np.float32)
                    return _reduce((fq - w2) ** 2, spec)

                s = np.where(err(round_scale(s_lsq, spec.scale_dtype)) < err(s_cal), s_lsq, s_cal)
            self.log_s = np.log(np.asarray(s, np.float64))
            self.grad_scale = 1.0 / math.sqrt(_slice_count(w2.shape, spec) * max(qmax - int(np.max(self.z)), 1))

    def scale(self) -> np.ndarray:
        """The step size as stored (rounded to the spec's scale format)."""
        return round_scale(np.exp(self.log_s), self.spec.scale_dtype)

    def qtensor(self, w: np.ndarray):
        w2 = np.asarray(w, np.float32).reshape(self.shape[0], -1)
        if self.lsq:
            return quantize(w2, self.spec, self.axis, scale=self.scale(), zero_point=self.z)
        return quantize(w2, self.spec, self.axis)

    def forward(self, w: np.ndarray):
        qt = self.qtensor(w)
        wq = qt.dequantize(np.float32).reshape(self.shape)
        if not self.lsq:
            return wq, np.asarray(qt.scale, np.float64), None
        w2 = np.asarray(w, np.float32).reshape(self.shape[0], -1)
        s = self.scale()
        s_full, z_full = _expand(s, w2.shape, self.spec), _expand(self.z, w2.shape, self.spec)
        qmin, qmax = self.spec.qrange
        v = w2 / s_full.astype(np.float32)                       # qsim's fp32 division
        inside = (v >= qmin - z_full - 0.5) & (v <= qmax - z_full + 0.5)   # clipping changes the level
        levels = qt.q.astype(np.float64) - z_full                  # round(clip(v)) as integers
        return wq, s, (inside, levels - np.where(inside, v, 0.0), s)

    def backward(self, g: np.ndarray, ctx):
        """(gradient for the latent weight, gradient for log s or None)."""
        if ctx is None:
            return g, None
        inside, ds_elem, s = ctx
        g2 = g.reshape(inside.shape)
        dw = np.where(inside, g2, 0.0).astype(np.float32).reshape(self.shape)
        ds = _reduce(g2 * ds_elem, self.spec) * self.grad_scale
        return dw, ds * s


class ActQuantizer:
    """Fake quantization of one MAC layer's input: per tensor, fixed zero point, learned step."""

    def __init__(self, layer: str, spec: QuantSpec, scale: float, zero_point: int, learning: str):
        self.layer, self.spec, self.learning = layer, spec, learning
        self.qmin, self.qmax = spec.qrange
        self.z = int(zero_point)
        self.log_s = np.log(np.asarray(float(scale), np.float64))

    def scale(self) -> float:
        return float(np.float32(np.exp(self.log_s)))

    def params(self):
        from qsim.nets.quant_exec import ActParams

        return ActParams(self.scale(), self.z, self.qmin, self.qmax)

    def forward(self, h: np.ndarray):
        s = np.float32(self.scale())
        v = np.asarray(h, np.float32) / s
        lo, hi = self.qmin - self.z, self.qmax - self.z
        inside = (v >= lo - 0.5) & (v <= hi + 0.5)   # outside: clipping changes the level
        levels = np.rint(np.clip(v, lo, hi))
        return (levels * s).astype(np.float32), (v, levels, inside, float(s), h[0].size)

    def backward(self, g: np.ndarray, ctx):
        v, levels, inside, s, n = ctx
        dh = np.where(inside, g, 0.0).astype(np.float32)
        if self.learning == "lsq":
            ds = float((g * (levels - np.where(inside, v, 0.0))).sum(dtype=np.float64))
        else:   # PACT: the clipping level learns from the clipped values only
            ds = float((g * np.where(inside, 0.0, levels)).sum(dtype=np.float64))
        ds /= math.sqrt(n * max(self.qmax - self.z, 1))
        return dh, ds * s


# -- losses ---------------------------------------------------------------------------------
def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def kd_loss(student: np.ndarray, teacher: np.ndarray, temperature: float) -> tuple[float, np.ndarray]:
    """T²·KL(p_T(teacher) ‖ p_T(student)), batch mean, and its gradient w.r.t. the student logits."""
    t = float(temperature)
    ls, lt = _log_softmax(student / t), _log_softmax(teacher / t)
    pt = np.exp(lt)
    n = len(student)
    loss = t * t * float((pt * (lt - ls)).sum(axis=1).mean())
    grad = t * (np.exp(ls) - pt) / n
    return loss, grad.astype(np.float32)


def total_loss(logits, y, teacher, cfg: QATConfig) -> tuple[float, np.ndarray]:
    from qsim.train.core import softmax_xent

    loss, g = softmax_xent(logits, y)
    if teacher is not None and cfg.kd_lambda > 0:
        kl, gk = kd_loss(logits, teacher, cfg.kd_temperature)
        loss, g = loss + cfg.kd_lambda * kl, g + np.float32(cfg.kd_lambda) * gk
    return loss, g


# -- forward / backward through the fake-quantized network --------------------------------
def _fq_bias(b, wq: WeightQuantizer | None, aq: ActQuantizer | None, w_scale):
    if wq is None or aq is None or wq.path != "int":
        return b
    from qsim.nets.quant_exec import int_bias

    unit = aq.scale() * np.asarray(w_scale, np.float64)
    return (int_bias(b, aq.scale(), w_scale) * unit).astype(np.float32)


def forward_backward(arch, params: dict, quantizers: dict, x, y, teacher=None, cfg: QATConfig | None = None,
                     grads: bool = True):
    """Loss and gradients (params and log step sizes) of the fake-quantized network.

    `quantizers` maps a MAC layer to (WeightQuantizer or None, ActQuantizer or None).
    Returns (loss, grads, logits, outputs) — outputs: each MAC layer's output (non-finite checks)."""
    cfg = cfg or QATConfig()
    h, tape, outputs = x, [], {}
    for op in arch.ops:
        if isinstance(op, (Conv, Linear)):
            wq_, aq_ = quantizers.get(op.name, (None, None))
            a_ctx = w_ctx = None
            if aq_ is not None:
                h, a_ctx = aq_.forward(h)
            w, b = params[f"{op.name}.w"], params[f"{op.name}.b"]
            w_scale = None
            if wq_ is not None:
                w, w_scale, w_ctx = wq_.forward(w)
            b = _fq_bias(b, wq_, aq_, w_scale)
            if isinstance(op, Conv):
                out, cols = float_exec.conv_forward(op, h, w, b)
                saved = h.shape
            else:
                out, cols, saved = h @ w.T + b, None, h
            mask = out > 0 if op.relu else None
            h = np.maximum(out, 0) if op.relu else out
            outputs[op.name] = h
            tape.append((op, saved, cols, mask, w, a_ctx, w_ctx))
        elif isinstance(op, MaxPool):
            out = float_exec.maxpool(h, op.size)
            tape.append((op, h, out, None, None, None, None))
            h = out
        elif isinstance(op, Flatten):
            tape.append((op, h.shape, None, None, None, None, None))
            h = h.reshape(h.shape[0], -1)
    logits = h
    if y is None:
        return None, None, logits, outputs
    loss, g = total_loss(logits, y, teacher, cfg)
    if not grads:
        return loss, None, logits, outputs
    out_grads = {}
    for idx in range(len(tape) - 1, -1, -1):
        op, saved, extra, mask, w, a_ctx, w_ctx = tape[idx]
        need_input = idx > 0 or a_ctx is not None
        if mask is not None:
            g = g * mask
        if isinstance(op, Conv):
            o = op.out_ch
            gm = g.transpose(0, 2, 3, 1).reshape(-1, o)
            w2 = w.reshape(o, -1)
            if op.groups == 1:
                dw = gm.T @ extra
                dcols = gm @ w2 if need_input else None
            else:
                gg = op.groups
                gmg = gm.reshape(-1, gg, o // gg).transpose(1, 0, 2)
                dw = np.matmul(gmg.transpose(0, 2, 1), float_exec.grouped_cols(extra, gg)).reshape(o, -1)
                dcols = np.matmul(gmg, w2.reshape(gg, o // gg, -1)).transpose(1, 0, 2).reshape(
                    gm.shape[0], -1) if need_input else None
            dw = dw.reshape(op.weight_shape)
            db = gm.sum(axis=0)
            g = float_exec.col2im(dcols, saved, op.kernel, op.stride, op.padding) if need_input else None
        elif isinstance(op, Linear):
            dw, db = g.T @ saved, g.sum(axis=0)
            g = g @ w if need_input else None
        elif isinstance(op, MaxPool):
            s = op.size
            up = np.repeat(np.repeat(extra, s, axis=2), s, axis=3)
            gup = np.repeat(np.repeat(g, s, axis=2), s, axis=3)
            full = np.zeros_like(saved)
            full[:, :, : up.shape[2], : up.shape[3]] = gup * (saved[:, :, : up.shape[2], : up.shape[3]] == up)
            g = full
            continue
        else:
            g = g.reshape(saved)
            continue
        wq_, aq_ = quantizers.get(op.name, (None, None))
        if wq_ is not None:
            dw, dlog = wq_.backward(dw, w_ctx)
            if dlog is not None:
                out_grads[f"{op.name}.w_log_s"] = dlog
        out_grads[f"{op.name}.w"], out_grads[f"{op.name}.b"] = dw, db
        if a_ctx is not None:
            g, dlog = aq_.backward(g, a_ctx)
            out_grads[f"{op.name}.a_log_s"] = np.asarray(dlog)
    return loss, out_grads, logits, outputs


# -- the trainer ----------------------------------------------------------------------------
@dataclass
class QATState:
    """A trained model: float latent parameters plus the quantizers (learned step sizes)."""

    net_name: str
    wspec: QuantSpec | None
    aspec: QuantSpec | None
    params: dict
    quantizers: dict
    cfg: QATConfig
    history: list = field(default_factory=list)
    seconds: float = 0.0
    cached: bool = False


def make_quantizers(net, params: dict, wspec, aspec, cfg: QATConfig, calib_size: int = 256,
                    overrides=None) -> dict:
    """Per MAC layer (WeightQuantizer or None, ActQuantizer or None); `overrides` as `QuantConfig.build`."""
    from qsim.nets.quant_exec import QuantConfig, act_params, check_act_spec

    if not cfg.quantize or (wspec is None and aspec is None):
        return {}
    if wspec is None:
        raise ValueError("QAT of activations alone: give a weight QuantSpec too")
    qc = QuantConfig.build(net, wspec, aspec, overrides=overrides)
    out = {}
    for op in net.arch.mac_ops:
        w, a = qc.w_for(op.name), qc.a_for(op.name)
        wq = WeightQuantizer(op.name, w, params[f"{op.name}.w"])
        aq = None
        if a is not None:
            check_act_spec(a, "aspec")
            if a.granularity != "tensor":
                raise ValueError(f"QAT activations: granularity must be 'tensor' (one learned step size per layer "
                                 f"input), got {a.granularity!r}")
            ap = act_params(net.name, int(calib_size), op.name, a)
            aq = ActQuantizer(op.name, a, ap.scale, ap.zero_point, cfg.act_learning)
        out[op.name] = (wq, aq)
    return out


def default_epochs(n_train: int, batch_size: int, steps: int = 600) -> int:
    """Enough epochs for about `steps` Adam steps, at least 3 (small data sets get more epochs)."""
    return max(3, math.ceil(steps / -(-n_train // batch_size)))


def _nonfinite_where(arch, outputs: dict, grads: dict | None) -> str:
    for op in arch.mac_ops:
        if op.name in outputs and not np.all(np.isfinite(outputs[op.name])):
            return f"layer {op.name!r} output"
    for op in arch.mac_ops:
        for k in (f"{op.name}.w", f"{op.name}.b", f"{op.name}.w_log_s", f"{op.name}.a_log_s"):
            if grads and k in grads and not np.all(np.isfinite(grads[k])):
                return f"layer {op.name!r} gradient ({k})"
    return "the loss (every layer output finite)"


def train_qat(net, wspec: QuantSpec | None, aspec: QuantSpec | None, cfg: QATConfig, *, calib_size: int = 256,
              params: dict | None = None, x=None, y=None, overrides=None, log=None) -> QATState:
    """Fine-tune `net` (from its fp32 weights, or `params`) with fake quantization and/or distillation."""
    from threadpoolctl import threadpool_limits

    from qsim.nets.data import load_dataset

    if not isinstance(cfg, QATConfig):
        raise TypeError(f"cfg must be a qsim.train.QATConfig, got {type(cfg).__name__}")
    if net.arch is None:
        raise ValueError(f"network {net.name!r} has no sequential architecture; QAT trains those only")
    if x is None:
        ds = load_dataset(net.dataset)
        x, y = ds.x_train, ds.y_train
    if cfg.train_size is not None:
        x, y = x[:cfg.train_size], y[:cfg.train_size]
    teacher_params = {k: np.asarray(v, np.float32) for k, v in (params or net.weights()).items()}
    params = {k: np.array(v, np.float32) for k, v in teacher_params.items()}
    quantizers = make_quantizers(net, params, wspec, aspec, cfg, calib_size, overrides)
    t0 = time.perf_counter()
    with threadpool_limits(1):
        teacher = float_exec.forward(net.arch, teacher_params, x, batch_size=512) if cfg.kd_lambda > 0 else None
        opt = {k: v for k, v in params.items()}
        for name, (wq, aq) in quantizers.items():
            if wq is not None and wq.lsq:
                opt[f"{name}.w_log_s"] = wq.log_s
            if aq is not None:
                opt[f"{name}.a_log_s"] = aq.log_s
        m = {k: np.zeros_like(np.asarray(v, np.float64 if k.endswith("_log_s") else np.float32))
             for k, v in opt.items()}
        v2 = {k: np.zeros_like(a) for k, a in m.items()}
        rng = np.random.default_rng(cfg.seed + 2000)
        steps = -(-len(x) // cfg.batch_size)
        total, step = cfg.epochs * steps, 0
        b1, b2, eps = 0.9, 0.999, 1e-8
        history = []
        for epoch in range(cfg.epochs):
            order = rng.permutation(len(x))
            losses = []
            for s in range(steps):
                idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    loss, grads, _, outputs = forward_backward(net.arch, params, quantizers, x[idx], y[idx],
                                                               None if teacher is None else teacher[idx], cfg)
                bad = not math.isfinite(loss) or any(not np.all(np.isfinite(g)) for g in grads.values())
                if bad:
                    raise FloatingPointError(
                        f"QAT of {net.name}: non-finite {'loss' if not math.isfinite(loss) else 'gradient'} at "
                        f"epoch {epoch + 1}, step {s + 1}: first non-finite values in "
                        f"{_nonfinite_where(net.arch, outputs, grads)}; lower the learning rate (lr={cfg.lr})")
                losses.append(loss)
                step += 1
                lr = cfg.lr * 0.5 * (1.0 + np.cos(np.pi * (step - 1) / total))
                for k in opt:
                    gk = grads.get(k)
                    if gk is None:
                        continue
                    if cfg.weight_decay and k.endswith(".w"):
                        gk = gk + np.float32(cfg.weight_decay) * params[k]
                    m[k] = b1 * m[k] + (1 - b1) * gk
                    v2[k] = b2 * v2[k] + (1 - b2) * gk * gk
                    upd = lr * (m[k] / (1 - b1 ** step)) / (np.sqrt(v2[k] / (1 - b2 ** step)) + eps)
                    if k.endswith("_log_s"):
                        opt[k] = opt[k] - upd
                        layer, kind = k.rsplit(".", 1)
                        wq, aq = quantizers[layer]
                        if kind == "w_log_s":
                            wq.log_s = opt[k]
                        else:
                            aq.log_s = opt[k]
                    else:
                        opt[k] = params[k] = (params[k] - upd).astype(np.float32)
            history.append(float(np.mean(losses)))
            if log:
                log(f"epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]:.4f}")
    return QATState(net.name, wspec, aspec, params, quantizers, cfg, history, time.perf_counter() - t0)


# -- cache of trained models ---------------------------------------------------------------
def _spec_dict(s):
    return None if s is None else asdict(s)


def weights_digest(params: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(params):
        a = np.ascontiguousarray(params[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def cache_key(net, wspec, aspec, cfg: QATConfig, calib_size: int, overrides=None) -> str:
    ovr = {k: {r: _spec_dict(v) for r, v in sorted(d.items())} for k, d in sorted((overrides or {}).items())}
    doc = {"format": QAT_FORMAT, "network": net.name, "weights": weights_digest(net.weights()),
           "wspec": _spec_dict(wspec), "aspec": _spec_dict(aspec), "calib_size": int(calib_size),
           "overrides": ovr, "train": asdict(cfg), "dataset": net.dataset}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def _cache_path(net, key):
    from qsim.nets.data import cache_dir

    return cache_dir() / "qat" / f"{net.name}-{key}.npz"


def trained(net, wspec, aspec, cfg: QATConfig, *, calib_size: int = 256, cache: bool = True, overrides=None,
            log=None) -> QATState:
    """`train_qat`, cached on disk (keyed by network weights, specs, calibration size and QATConfig)."""
    key = cache_key(net, wspec, aspec, cfg, calib_size, overrides)
    path = _cache_path(net, key)
    if cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as d:
                params = {k[2:]: d[k] for k in d.files if k.startswith("p:")}
                quantizers = make_quantizers(net, {k: v.copy() for k, v in params.items()}, wspec, aspec, cfg,
                                             calib_size, overrides)
                for name, (wq, aq) in quantizers.items():
                    if wq is not None and wq.lsq:
                        wq.log_s = d[f"s:{name}.w"]
                    if aq is not None:
                        aq.log_s = d[f"s:{name}.a"]
                meta = json.loads(str(d["meta"]))
            return QATState(net.name, wspec, aspec, params, quantizers, cfg, meta["history"], meta["seconds"], True)
        except (OSError, KeyError, ValueError):
            pass   # a damaged cache entry is retrained
    state = train_qat(net, wspec, aspec, cfg, calib_size=calib_size, overrides=overrides, log=log)
    if cache:
        arrays = {f"p:{k}": v for k, v in state.params.items()}
        for name, (wq, aq) in state.quantizers.items():
            if wq is not None and wq.lsq:
                arrays[f"s:{name}.w"] = wq.log_s
            if aq is not None:
                arrays[f"s:{name}.a"] = aq.log_s
        arrays["meta"] = np.array(json.dumps({"history": state.history, "seconds": state.seconds, "key": key}))
        from qsim.nets.data import save_npz_atomic

        save_npz_atomic(path, arrays)
    return state


def evaluate_trained(name, wspec=None, aspec=None, training: str = "qat", *, epochs: int | None = None,
                     lr: float | None = None, seed: int = 0, batch_size: int = 64, kd_lambda: float | None = None,
                     kd_temperature: float = 4.0, act_learning: str = "lsq", train_size: int | None = None,
                     weight_decay: float | None = None,
                     calib_size: int = 256, policy: str = "fp32_rne", acc_bits: int = 32, overflow: str = "wrap",
                     overrides=None, eval_size=None, cache: bool = True, log=None) -> dict:
    """`qsim.nets.evaluate`'s result for a PTQ, QAT or QAT+KD model, with the integer-kernel metric
    (`quantized.metric`), the fake-quant metric and their top-1 agreement beside it.

    epochs=None / lr=None / weight_decay=None: the network's `qat_recipe` (registry; mnist1d_cnn: 150 epochs at
    3e-3 with weight decay 5e-4, as its tiny training split needs: without the decay the fine-tune drives the
    training loss to ~1e-3 and over-fits), else about 600 Adam steps (`default_epochs`, at least 3 epochs) at
    1e-3 without decay."""
    from qsim.nets.data import load_dataset
    from qsim.nets.registry import get_network
    from qsim.train.deploy import evaluate_deployed

    check_training(training)
    if kd_lambda is None:
        kd_lambda = 1.0 if training == "qat_kd" else 0.0
    if training == "qat" and kd_lambda:
        raise ValueError(f"training 'qat' has no distillation; use 'qat_kd' for kd_lambda={kd_lambda}")
    net = get_network(name)
    recipe = getattr(net, "qat_recipe", None) or {}
    if lr is None:
        lr = recipe.get("lr", DEFAULT_LR)
    if weight_decay is None:
        weight_decay = recipe.get("weight_decay", 0.0)
    if epochs is None:
        epochs = recipe.get("epochs")
    if epochs is None:
        n = len(load_dataset(net.dataset).x_train) if net.arch is not None else 1
        epochs = default_epochs(n if train_size is None else min(n, int(train_size)), batch_size)
    cfg = QATConfig(epochs=epochs, lr=lr, seed=seed, batch_size=batch_size, kd_lambda=float(kd_lambda),
                    kd_temperature=kd_temperature, act_learning=act_learning, train_size=train_size,
                    weight_decay=weight_decay)
    if training == "qat_kd" and cfg.kd_lambda <= 0:
        raise ValueError(f"training 'qat_kd' needs kd_lambda > 0, got {kd_lambda!r}")
    return evaluate_deployed(name, wspec, aspec, training, cfg, calib_size=calib_size, policy=policy,
                             acc_bits=acc_bits, overflow=overflow, overrides=overrides, eval_size=eval_size,
                             cache=cache, log=log)
