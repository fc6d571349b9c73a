"""PTQ of the sequential networks (the CNNs/MLPs of `qsim.nets`), run through the same integer
pipeline as `qsim.nets.quant_exec` (its `run_mac_layer`, requantization policies and kernels).

`prepare(...)` applies the methods in their literature order — CLE (float, function-preserving)
→ calibration of every layer's input on the (equalized) float network → per layer the integer
codes (RTN, GPTQ or AdaRound on the RTN grid) → bias correction — and returns the float
parameters, the weight `QTensor`s and the corrected biases. `evaluate_cnn` runs them and
returns `qsim.nets.evaluate`'s dictionary. `seed` 0 calibrates on the study's calibration set
(`Dataset.calibration`); other seeds draw another calibration subset of the training split (the
spread over seeds is the spread over calibration sets: the algorithms themselves are deterministic).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from qsim.nets import float_exec
from qsim.nets.data import load_dataset
from qsim.nets.models import Conv, Flatten, Linear, MaxPool
from qsim.nets.registry import get_network
from qsim.ptq.adaround import adaround_codes
from qsim.ptq.bias_correction import corrected_bias
from qsim.ptq.cle import equalize
from qsim.ptq.core import Grid, grid_rows, rtn, second_moment
from qsim.ptq.gptq import gptq_codes
from qsim.quant import QuantSpec

MAX_ROWS = 65536          # calibration rows per layer for H (a seeded subsample beyond this)


@dataclass
class Prepared:
    params: dict                       # float parameters after CLE (function-preserving)
    qweights: dict                     # layer → QTensor of the (out, K) weight
    biases: dict                       # layer → float32 bias (corrected where asked)
    calib_inputs: dict                 # layer → float input on the calibration set
    notes: dict = field(default_factory=dict)
    seconds: float = 0.0


def layer_rows(op, x: np.ndarray) -> np.ndarray:
    """The GEMM rows (n, K) a MAC layer multiplies its (out, K) weight with."""
    if isinstance(op, Conv):
        return float_exec.im2col(np.asarray(x, np.float32), op.kernel, op.stride, op.padding)
    return np.asarray(x, np.float32).reshape(len(x), -1)


def _groups(op, w2):
    g = op.groups if isinstance(op, Conv) else 1
    og, kg = w2.shape[0] // g, w2.shape[1]
    return [(slice(i * og, (i + 1) * og), slice(i * kg, (i + 1) * kg)) for i in range(g)]


def prepare(name, wspec: QuantSpec, methods: tuple, calib_size: int = 256, seed: int = 0,
            adaround_iters: int = 300) -> Prepared:
    t0 = time.perf_counter()
    net = get_network(name)
    arch = net.arch
    params = {k: np.array(v, np.float32) for k, v in net.weights().items()}
    notes = {}
    if "cle" in methods:
        params, pairs = equalize(arch, params)
        notes["cle_pairs"] = pairs
    ds = load_dataset(net.dataset)
    if seed == 0:                       # the study's calibration set
        xcal = ds.calibration(calib_size)
    else:                               # another seeded draw of calibration samples from the training split
        pick = np.random.default_rng([seed, 7]).choice(len(ds.x_train), min(int(calib_size), len(ds.x_train)), False)
        xcal = ds.x_train[np.sort(pick)]
    _, trace = float_exec.forward(arch, params, xcal, record=True)
    rng = np.random.default_rng(seed)
    qweights, biases = {}, {}
    qparams = dict(params)            # the network as quantized so far (dequantized weights, corrected biases)
    for op in arch.mac_ops:
        w = params[f"{op.name}.w"]
        w2 = w.reshape(w.shape[0], -1)
        b = params[f"{op.name}.b"]
        rows = layer_rows(op, trace[op.name][0])
        mean_f = rows.mean(0, dtype=np.float64)
        if len(rows) > MAX_ROWS:
            rows = rows[np.sort(rng.choice(len(rows), MAX_ROWS, replace=False))]
        qt = rtn(w2, wspec)
        grid = Grid.from_params(w2.shape, wspec, qt.scale, qt.zero_point)
        codes = qt.q.astype(np.float64)
        groups = [(o, k if isinstance(op, Conv) and op.groups > 1 else slice(None)) for o, k in _groups(op, w2)]
        if isinstance(op, Conv) and op.groups > 1:
            kg = rows.shape[1] // op.groups
            groups = [(o, slice(i * kg, (i + 1) * kg)) for i, (o, _) in enumerate(groups)]
        if "gptq" in methods or "adaround" in methods:
            for orows, kcols in groups:
                H = second_moment(rows[:, kcols])
                g = grid_rows(grid, orows)
                if "gptq" in methods:
                    codes[orows] = gptq_codes(w2[orows], H, g)
                else:
                    codes[orows] = adaround_codes(w2[orows], H, g, iters=adaround_iters, seed=seed)
            qt = grid.qtensor(codes)
        if "bias_correction" in methods:
            w_hat = qt.dequantize(np.float64)
            # the layer's mean input with every earlier layer quantized (weights; activations float)
            _, tq = float_exec.forward(arch, qparams, xcal, record=True)
            mean_q = layer_rows(op, tq[op.name][0]).mean(0, dtype=np.float64)
            nb = np.array(b, np.float32)
            for orows, kcols in groups:
                nb[orows] = corrected_bias(b[orows], w2[orows], w_hat[orows], mean_f[kcols], mean_q[kcols])
            b = nb
        qparams[f"{op.name}.w"] = qt.dequantize(np.float32).reshape(w.shape)
        qparams[f"{op.name}.b"] = np.asarray(b, np.float32)
        qweights[op.name], biases[op.name] = qt, np.asarray(b, np.float32)
    return Prepared(params, qweights, biases, {k: v[0] for k, v in trace.items()}, notes,
                    time.perf_counter() - t0)


def prepared_weight(op, qt, w_shape, label: str):
    """`quant_exec.PreparedWeight` of a PTQ QTensor (`quant_exec.weight_from_qtensor`)."""
    from qsim.nets.quant_exec import weight_from_qtensor

    return weight_from_qtensor(qt, op, w_shape, label)


def act_plan(net, prep: Prepared, aspec: QuantSpec):
    """Input ActParams of every MAC layer, calibrated on the PTQ'd float network."""
    from qsim.nets.quant_exec import ActParams, _observe
    from qsim.quant.quantize import uniform_params

    acts = {}
    everything = list(prep.calib_inputs.values())
    for op in net.arch.mac_ops:
        lo, hi = _observe(aspec, everything if aspec.granularity == "global" else [prep.calib_inputs[op.name]])
        s, z = uniform_params(lo, hi, aspec)
        qmin, qmax = aspec.qrange
        acts[op.name] = ActParams(float(s), int(z), qmin, qmax)
    return acts


def int_forward(net, prep: Prepared, cfg, acts: dict, x: np.ndarray, *, record=False, logits_act=None):
    """Integer forward of the PTQ'd network (per-layer output codes in the trace with `record`).
    `logits_act` (ActParams) quantizes the last layer's output to codes too (the QDQ export's output)."""
    from qsim.nets.quant_exec import maxpool_codes, quantize_input, run_mac_layer

    macs = net.arch.mac_ops
    nxt = {op.name: (acts[macs[i + 1].name] if i + 1 < len(macs) else logits_act) for i, op in enumerate(macs)}
    h = quantize_input(x, acts[macs[0].name])
    trace = {}
    for op in net.arch.ops:
        if isinstance(op, (Conv, Linear)):
            w_shape = prep.params[f"{op.name}.w"].shape
            pw = prepared_weight(op, prep.qweights[op.name], w_shape, cfg.wspec.label())
            h, ovf = run_mac_layer(op, pw, prep.biases[op.name], h, acts[op.name], nxt[op.name], cfg)
            if record:
                trace[op.name] = (h, ovf)
        elif isinstance(op, MaxPool):
            h = maxpool_codes(h, op.size)
        elif isinstance(op, Flatten):
            h = h.reshape(h.shape[0], -1)
    return h, trace


def evaluate_cnn(name, wspec, aspec, methods: tuple, *, calib_size=256, policy="fp32_rne", acc_bits=32,
                 overflow="wrap", eval_size=None, seed=0, adaround_iters=300) -> dict:
    from qsim.nets.metrics import accuracy, sqnr_db
    from qsim.nets.quant_exec import QuantConfig, float_reference, layer_numerics, one_blas_thread, summarize_numerics

    net = get_network(name)
    cfg = QuantConfig.build(net, wspec, aspec, policy=policy, acc_bits=acc_bits, overflow=overflow)
    with one_blas_thread():
        prep = prepare(name, wspec, methods, calib_size, seed, adaround_iters)
        ref = float_reference(net.name)
        n = len(ref.labels) if eval_size is None else min(int(eval_size), len(ref.labels))
        x = load_dataset(net.dataset).x_test[:n]
        _, ftrace = float_exec.forward(net.arch, prep.params, x, record=True)
        if aspec is None:
            p = dict(prep.params)
            for op in net.arch.mac_ops:
                p[f"{op.name}.w"] = prep.qweights[op.name].dequantize(np.float32).reshape(p[f"{op.name}.w"].shape)
                p[f"{op.name}.b"] = prep.biases[op.name]
            logits, tr = float_exec.forward(net.arch, p, x, record=True)
            trace = {k: (v[1], 0) for k, v in tr.items()}
        else:
            acts = act_plan(net, prep, aspec)
            logits, codes = int_forward(net, prep, cfg, acts, x, record=True)
            macs = net.arch.mac_ops
            trace = {}
            for i, op in enumerate(macs):
                h, ovf = codes[op.name]
                trace[op.name] = (h if i + 1 == len(macs) else acts[macs[i + 1].name].dequantize(h), ovf)
    labels = ref.labels[:n]
    per_layer = []
    for op in net.arch.mac_ops:
        out, ovf = trace[op.name]
        pw = prepared_weight(op, prep.qweights[op.name], prep.params[f"{op.name}.w"].shape, wspec.label())
        per_layer.append({"layer": op.name, "sqnr_db": sqnr_db(ftrace[op.name][1], out), "overflows": int(ovf),
                          "path": "float" if aspec is None else pw.path, "numerics": layer_numerics(pw, aspec is None),
                          "w": wspec.label(), "a": None if aspec is None else aspec.label()})
    config = {"calib_size": int(calib_size), "eval_size": n, "dataset": net.dataset, **cfg.describe(),
              "ptq_seconds": round(prep.seconds, 3), **({"ptq_notes": prep.notes} if prep.notes else {})}
    return {"network": net.name, "metric": net.metric, "float": {"metric": accuracy(ref.logits[:n], labels)},
            "quantized": {"metric": accuracy(logits, labels), "sqnr_db": sqnr_db(ref.logits[:n], logits),
                          "overflows": int(sum(p["overflows"] for p in per_layer)), "per_layer": per_layer,
                          "numerics": summarize_numerics(per_layer, 0)[0]},
            "config": config}
