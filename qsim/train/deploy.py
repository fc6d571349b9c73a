"""A trained (or PTQ) model as integers, run through qsim's integer kernels, next to its fake-quant twin.

`deploy_qat` turns a `QATState` into one `DeployedLayer` per MAC layer: the weight as a
`QTensor` from `qsim.quant.quantize` with the LEARNED step sizes (`PreparedWeight`, laid
out as `quant_exec.prepared_weight` lays out its own), the input activation's learned
`ActParams`, and the float bias (the executor rounds it to int32 itself). `deploy_ptq`
builds the same from the executor's own calibrated PTQ pieces. Both then run

* `integer_forward`: the executor's documented building blocks (`quantize_input`,
  `run_mac_layer` with `QuantConfig`'s policy / accumulator, `maxpool_codes`) — the
  integer kernels, exactly as `qsim nets eval` runs a PTQ model;
* `fake_quant_forward`: the dequantized weights and fake-quantized activations (what QAT
  trains), with the int32-rounded bias on the integer path; evaluated in the executor's
  arithmetic (accumulator in units s_a·s_w, the executor's requantization and rounding) for
  the reported fake-quant metric and agreement, or in float32 as the training forward runs
  (`fake_quant_fp32_agreement`, which can differ at near-tied codes and logits).

`evaluate_deployed` reports the integer metric as `quantized.metric` and the fake-quant
metric and the top-1 agreement of the two beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from qsim.nets import float_exec
from qsim.nets.models import Conv, Flatten, Linear, MaxPool


@dataclass(frozen=True)
class DeployedLayer:
    op: object
    pw: object              # quant_exec.PreparedWeight
    act: object             # quant_exec.ActParams of the layer's input, or None (weight-only)
    bias: np.ndarray        # float32


def prepare_qtensor(qt, op, weight_shape, label: str):
    """A `PreparedWeight` from a QTensor of the 2-D (out, K) weight (`quant_exec.weight_from_qtensor`)."""
    from qsim.nets.quant_exec import weight_from_qtensor

    return weight_from_qtensor(qt, op, weight_shape, label)


def deploy_qat(net, state) -> list[DeployedLayer]:
    from qsim.nets.quant_exec import PreparedWeight

    layers = []
    for op in net.arch.mac_ops:
        wq, aq = state.quantizers.get(op.name, (None, None))
        w = state.params[f"{op.name}.w"]
        if wq is not None:
            pw = prepare_qtensor(wq.qtensor(w), op, op.weight_shape, wq.spec.label())
        else:
            deq = np.array(w, np.float32)
            deq.setflags(write=False)
            pw = PreparedWeight("float", None, 0, np.ones(()), deq, None, "fp32", "float weights")
        layers.append(DeployedLayer(op, pw, None if aq is None else aq.params(),
                                    np.asarray(state.params[f"{op.name}.b"], np.float32)))
    return layers


def deploy_ptq(net, cfg, calib_size: int) -> list[DeployedLayer]:
    from qsim.nets.quant_exec import act_params, prepared_weight

    params = net.weights()
    return [DeployedLayer(op, prepared_weight(net.name, op.name, cfg.w_for(op.name)),
                          None if cfg.a_for(op.name) is None else
                          act_params(net.name, int(calib_size), op.name, cfg.a_for(op.name)),
                          np.asarray(params[f"{op.name}.b"], np.float32)) for op in net.arch.mac_ops]


def _fake_act(h, a):
    s = np.float32(a.scale)
    lo, hi = a.qmin - a.zero_point, a.qmax - a.zero_point
    return (np.rint(np.clip(np.asarray(h, np.float32) / s, lo, hi)) * s).astype(np.float32)


def _levels(values, scale) -> np.ndarray:
    """The integer levels (q − z) of fake-quantized float32 values with step `scale`, as float64
    (values = fl32((q − z)·s): the quotient is within 2^-9 of the level for 16-bit codes, so rint is exact)."""
    return np.rint(np.asarray(values, np.float64) / np.asarray(scale, np.float64))


def _mac(op, h, w, b):
    if isinstance(op, Conv):
        return float_exec.conv_forward(op, h, w, b)[0]
    return h @ w.T + b


def fake_quant_forward(arch, layers: list[DeployedLayer], x: np.ndarray, cfg=None) -> np.ndarray:
    """The fake-quantized network (dequantized weights, fake-quantized activations) on `x`.

    cfg=None: float32 arithmetic, as the QAT training forward computes it (each layer's float
    output rounded to the next layer's step by rne(fl32(h / s))).
    cfg (a `QuantConfig`): the same model in the executor's arithmetic — on the integer path the
    accumulator in units s_a·s_w (the activation and weight levels multiplied and summed in float64,
    exact for these sizes, plus the int32-rounded bias), requantized to the next layer's codes by
    `qsim.kernels.requantize` under `cfg.policy`, the last layer's logits acc·(s_a·s_w) in float64;
    other paths round their float output to the next layer's codes as the executor does. The two
    differ only where a value lies within float32 rounding of a rounding boundary (near-tied
    codes or logits); the integer kernels (`integer_forward`) must then agree with the cfg form."""
    from qsim.kernels.requant import requantize
    from qsim.nets.quant_exec import _quantize_to, int_bias

    macs = [d for d in layers]
    nxt = {d.op.name: (macs[j + 1].act if j + 1 < len(macs) else None) for j, d in enumerate(macs)}
    by = {d.op.name: d for d in layers}
    h = x
    for op in arch.ops:
        if isinstance(op, (Conv, Linear)):
            d = by[op.name]
            b = d.bias
            if d.act is not None:
                h = _fake_act(h, d.act)
            if cfg is None or d.act is None:
                if d.act is not None and d.pw.path == "int":
                    unit = d.act.scale * np.asarray(d.pw.scale, np.float64)
                    b = (int_bias(d.bias, d.act.scale, d.pw.scale) * unit).astype(np.float32)
                out = _mac(op, h, d.pw.dequantized, b)
                h = np.maximum(out, 0) if op.relu else out
                continue
            out_act, axis = nxt[op.name], 1 if isinstance(op, Conv) else -1
            if d.pw.path == "int":
                s_w = np.asarray(d.pw.scale, np.float64)
                chan = s_w.reshape((-1,) + (1,) * (d.pw.dequantized.ndim - 1)) if s_w.ndim else s_w
                acc = _mac(op, _levels(h, d.act.scale), _levels(d.pw.dequantized, chan),
                           int_bias(d.bias, d.act.scale, d.pw.scale).astype(np.float64))
                acc = np.rint(acc).astype(np.int64)      # exact: integer products summed in float64
                if out_act is None:
                    s = d.act.scale * s_w
                    if s.ndim and axis == 1:
                        s = s.reshape(-1, 1, 1)
                    y = acc.astype(np.float64) * s
                    h = np.maximum(y, 0) if op.relu else y
                    continue
                q = requantize(acc, d.act.scale, d.pw.scale, out_act.scale, out_act.zero_point, policy=cfg.policy,
                               qmin=out_act.qmin, qmax=out_act.qmax, activation="relu" if op.relu else None,
                               channel_axis=axis)
            else:
                y = _mac(op, np.asarray(h, np.float64), np.asarray(d.pw.dequantized, np.float64),
                         np.asarray(d.bias, np.float64))
                if out_act is None:
                    h = np.maximum(y, 0) if op.relu else y
                    continue
                q = _quantize_to(y, out_act, op.relu)
            h = out_act.dequantize(np.asarray(q))
        elif isinstance(op, MaxPool):
            h = float_exec.maxpool(h, op.size)
        elif isinstance(op, Flatten):
            h = h.reshape(h.shape[0], -1)
    return h


def integer_forward(arch, layers: list[DeployedLayer], cfg, x: np.ndarray, *, rounding: str = "nearest_even",
                    batch_size: int = 256):
    """The integer kernels (the executor's building blocks): (float logits, {layer: (output, overflows)})."""
    from qsim.nets.quant_exec import maxpool_codes, quantize_input, run_mac_layer

    if layers and layers[0].act is None:   # weight-only: float activations over dequantized weights
        params = {}
        for d in layers:
            params[f"{d.op.name}.w"], params[f"{d.op.name}.b"] = d.pw.dequantized, d.bias
        logits, trace = float_exec.forward(arch, params, x, record=True)
        return logits, {k: (v[1], 0) for k, v in trace.items()}
    outs, traces = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        if rounding == "nearest_even":
            h = quantize_input(xb, layers[0].act)
        else:
            from qsim.quant import quantize

            spec = cfg.a_for(layers[0].op.name)
            h = quantize(xb, spec, scale=layers[0].act.scale, zero_point=layers[0].act.zero_point).q
        trace = {}
        macs = {d.op.name: (j, d) for j, d in enumerate(layers)}
        for op in arch.ops:
            if isinstance(op, (Conv, Linear)):
                j, d = macs[op.name]
                out = layers[j + 1].act if j + 1 < len(layers) else None
                h, ovf = run_mac_layer(op, d.pw, d.bias, h, d.act, out, cfg)
                trace[op.name] = (h if out is None else out.dequantize(h), ovf)
            elif isinstance(op, MaxPool):
                h = maxpool_codes(h, op.size)
            elif isinstance(op, Flatten):
                h = h.reshape(h.shape[0], -1)
        outs.append(h)
        traces.append(trace)
    trace = {k: (np.concatenate([t[k][0] for t in traces]), sum(t[k][1] for t in traces)) for k in traces[0]}
    return np.concatenate(outs), trace


def evaluate_deployed(name, wspec, aspec, training, qcfg, *, calib_size=256, policy="fp32_rne", acc_bits=32,
                      overflow="wrap", overrides=None, eval_size=None, cache=True, log=None) -> dict:
    from qsim.nets.data import load_dataset
    from qsim.nets.metrics import accuracy, sqnr_db
    from qsim.nets.quant_exec import (QuantConfig, evaluate, float_reference, layer_numerics, one_blas_thread,
                                      summarize_numerics)
    from qsim.nets.registry import get_network
    from qsim.train.qat import trained

    net = get_network(name)
    if net.arch is None:
        raise ValueError(f"network {net.name!r} has no sequential architecture; --training applies to the "
                         f"small CNN/MLP networks")
    if wspec is None:
        raise ValueError("--training needs a quantized network (a weight QuantSpec); got float only")
    cfg = QuantConfig.build(net, wspec, aspec, policy=policy, acc_bits=acc_bits, overflow=overflow,
                            overrides=overrides)
    train_info = None
    if training == "ptq":
        result = evaluate(name, wspec, aspec, calib_size=calib_size, policy=policy, acc_bits=acc_bits,
                          overflow=overflow, overrides=overrides, eval_size=eval_size)
        layers = deploy_ptq(net, cfg, calib_size)
    else:
        state = trained(net, wspec, aspec, qcfg, calib_size=calib_size, cache=cache, overrides=overrides, log=log)
        layers = deploy_qat(net, state)
        train_info = {"seconds": round(state.seconds, 2), "cached": state.cached,
                      "loss_history": [round(v, 5) for v in state.history]}
        result = None
    ref = float_reference(net.name)
    n = len(ref.labels) if eval_size is None else min(int(eval_size), len(ref.labels))
    labels = ref.labels[:n]
    x = load_dataset(net.dataset).x_test[:n]
    with one_blas_thread():
        fake = fake_quant_forward(net.arch, layers, x, cfg)
        fake32 = fake_quant_forward(net.arch, layers, x)
        if result is None:
            rounding = aspec.rounding if aspec is not None else "nearest_even"
            logits, trace = integer_forward(net.arch, layers, cfg, x, rounding=rounding)
    if result is None:
        config = {"calib_size": int(calib_size), "eval_size": n, "dataset": net.dataset}
        config.update(cfg.describe())
        per_layer = []
        for d in layers:
            out, ovf = trace[d.op.name]
            per_layer.append({"layer": d.op.name, "sqnr_db": sqnr_db(ref.outputs[d.op.name][:n], out),
                              "overflows": int(ovf), "path": "float" if aspec is None else d.pw.path,
                              "numerics": layer_numerics(d.pw, aspec is None), "w": d.pw.label,
                              "a": None if d.act is None else cfg.a_for(d.op.name).label()})
        result = {"network": net.name, "metric": net.metric, "float": {"metric": accuracy(ref.logits[:n], labels)},
                  "config": config,
                  "quantized": {"metric": accuracy(logits, labels), "sqnr_db": sqnr_db(ref.logits[:n], logits),
                                "overflows": int(sum(p["overflows"] for p in per_layer)), "per_layer": per_layer,
                                "numerics": summarize_numerics(per_layer, 0)[0]}}
    else:
        with one_blas_thread():
            rounding = aspec.rounding if aspec is not None else "nearest_even"
            logits, _ = integer_forward(net.arch, layers, cfg, x, rounding=rounding)
    result["config"]["training"] = training
    result["config"]["training_config"] = None if training == "ptq" else asdict(qcfg)
    q = result["quantized"]
    q["fake_quant_metric"] = accuracy(fake, labels)
    q["agreement"] = float((np.argmax(fake, axis=1) == np.argmax(logits, axis=1)).mean())
    # the float32 training forward's top-1 agreement (differs only by float32 rounding at near-ties)
    q["fake_quant_fp32_agreement"] = float((np.argmax(fake32, axis=1) == np.argmax(logits, axis=1)).mean())
    if train_info is not None:
        result["training"] = train_info
    return result
