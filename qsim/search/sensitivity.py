"""Per-layer sensitivity: how much one layer at one choice hurts, measured and estimated.

Measured (`method="kl"`, the default): only layer l runs at choice c, every other layer at the
reference W8A8 (per-channel weights), all through qsim's integer executor; the number is
the mean KL(softmax(fp32 logits) ‖ softmax(quantized logits)) minus the reference's, in nats,
with the accuracy drop beside it. KL is used as the solver's objective because it is smooth
(accuracy on a few hundred samples moves in steps and is 0 for most single-layer changes).

Hessian proxy (`method="hessian"`, HAWQ-V3): the NumPy-trained networks have exact gradients
(`qsim.nets.train.loss_and_grads`), so Tr(H_l) of each layer's weight block is estimated by
Hutchinson's method (Rademacher probes v, Hv by central differences of gradients in float64)
and the expected loss increase of quantizing W_l at a choice is ½·Tr(H_l)/n_l·‖Q(W_l) − W_l‖²
(nats, like KL); a negative trace estimate is clipped to 0. The Hessian says nothing about
activations, so the activation part of a choice
is the measured KL of that layer's input at `abits` with W8 weights. The report names the method.

Samples: a seeded subset of the TRAINING split disjoint from the calibration subset — never
the test split the results are reported on (selection on test data would flatter the front).
Every entry is cached on disk (`qsim.search.cache`), keyed by the weights, samples and code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from qsim.search.assign import Assignment, LayerChoice, executor_args, mac_layers
from qsim.search.cache import JsonCache, NoCache, arrays_hash, code_hash, stable_hash, weights_hash

REFERENCE = LayerChoice(8, 8, "symmetric", "channel")
SENS_SEED = 14
METHODS = ("kl", "hessian")


@dataclass
class SensitivityTable:
    network: str
    layers: list[str]
    choices: list[LayerChoice]
    method: str
    objective: np.ndarray            # layers × choices, nats (what the solver minimises)
    kl: np.ndarray                   # measured: Δ KL vs the reference, layers × choices
    metric_drop: np.ndarray          # measured: reference metric − metric, layers × choices
    hessian_trace: np.ndarray | None = None   # Tr(H_l) per layer (hessian method)
    info: dict = field(default_factory=dict)

    def describe(self) -> str:
        if self.network == "minilm":
            return ("measured: Δ embedding noise ratio ‖e_q − e_fp32‖²/‖e_fp32‖² on calibration-corpus sentences "
                    "outside the calibration subset, only that layer changed, others W8A8 (activation ranges "
                    "of the W8A8 calibration)")
        if self.method == "hessian":
            return ("Hessian proxy (HAWQ-V3): ½·Tr(H_l)/n_l·‖ΔW_l‖² from Hutchinson traces "
                    f"({self.info.get('probes')} probes) + measured activation KL")
        return ("measured: Δ KL(fp32 ‖ quantized) with only that layer changed, others W8A8, "
                "qsim integer executor")


def sensitivity_samples(network: str, size: int, calib_size: int):
    """(x, y): `size` training samples, seeded, disjoint from the `calib_size` calibration subset."""
    from qsim.nets import get_network
    from qsim.nets.data import SPLIT_SEED, load_dataset

    ds = load_dataset(get_network(network).dataset)
    n = len(ds.x_train)
    calib = set(np.random.default_rng(SPLIT_SEED + 1).permutation(n)[:calib_size].tolist())
    order = [i for i in np.random.default_rng(SENS_SEED).permutation(n).tolist() if i not in calib]
    idx = np.sort(np.asarray(order[:size], dtype=np.int64))
    return ds.x_train[idx], ds.y_train[idx]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def kl_divergence(ref_logits, logits) -> float:
    """Mean KL(softmax(ref) ‖ softmax(test)) over samples, nats."""
    p, q = _softmax(ref_logits), _softmax(logits)
    return float(np.mean(np.sum(p * (np.log(p + 1e-300) - np.log(q + 1e-300)), axis=1)))


def run_logits(network: str, assignment: Assignment, x: np.ndarray, calib_size: int) -> np.ndarray:
    """Logits of `x` with every layer as assigned, through the integer executor."""
    from qsim.nets import get_network
    from qsim.nets.quant_exec import QuantConfig, one_blas_thread, quantized_forward

    net = get_network(network)
    kw = executor_args(assignment)
    cfg = QuantConfig.build(net, kw["wspec"], kw["aspec"], acc_bits=kw["acc_bits"], overrides=kw["overrides"])
    with one_blas_thread():
        return quantized_forward(net, cfg, x, calib_size)


def measure(network: str, layers_choices, *, samples: int = 512, calib_size: int = 256,
            cache: JsonCache | None = None, progress=None) -> dict:
    """{(layer, choice): {"kl", "metric"}} for each requested (layer, choice), plus the reference
    under key None; cached entries are read, missing ones computed and stored at once."""
    from qsim.nets import float_exec, get_network
    from qsim.nets.metrics import accuracy
    from qsim.nets.quant_exec import one_blas_thread

    from qsim.search import transformer

    cache = cache or NoCache()
    net = get_network(network)
    if transformer.is_transformer(net):   # sentences outside the calibration subset; embedding noise ratio
        x = y = None
        data = stable_hash(transformer.sensitivity_texts(samples, calib_size))
    else:
        x, y = sensitivity_samples(network, samples, calib_size)
        data = arrays_hash([x, y])
    base = {"network": network, "weights": weights_hash(network), "samples": data,
            "calib_size": calib_size, "reference": REFERENCE.compact(), "code": code_hash()}
    float_logits = None
    names = mac_layers(network)
    out = {}

    def one(layer, choice):
        nonlocal float_logits
        if choice == REFERENCE and layer is not None and None in out:   # the reference itself
            return out[None]
        key = stable_hash({**base, "layer": layer, "choice": None if choice is None else choice.compact()})
        rec = cache.get("sensitivity", key)
        if rec is None and x is None:
            a = Assignment((n, choice if n == layer else REFERENCE) for n in names)
            rec = {"kl": transformer.noise_ratio(a, samples, calib_size), "metric": float("nan")}
            cache.put("sensitivity", key, rec)
        if rec is None:
            if float_logits is None:
                with one_blas_thread():
                    float_logits = float_exec.forward(net.arch, net.weights(), x, batch_size=256)
            a = Assignment((n, choice if n == layer else REFERENCE) for n in names)
            logits = run_logits(network, a, x, calib_size)
            rec = {"kl": kl_divergence(float_logits, logits), "metric": accuracy(logits, y)}
            cache.put("sensitivity", key, rec)
        return rec

    out[None] = one(None, None)
    todo = list(layers_choices)
    for i, (layer, choice) in enumerate(todo):
        out[(layer, choice)] = one(layer, choice)
        if progress:
            progress(i + 1, len(todo))
    return out


def hutchinson_traces(network: str, *, samples: int = 512, calib_size: int = 256, probes: int = 32,
                      seed: int = 0, cache: JsonCache | None = None) -> np.ndarray:
    """Tr(H_l) of the cross-entropy loss w.r.t. each MAC layer's weights (Hutchinson, float64,
    Hv = (g(w+εv) − g(w−εv)) / 2ε with one joint Rademacher probe for all layers per draw)."""
    from qsim.nets import get_network
    from qsim.nets.train import loss_and_grads

    cache = cache or NoCache()
    net = get_network(network)
    if net.arch is None or net.train_config is None:
        raise ValueError(f"network {net.name!r} has no NumPy training graph: no Hessian proxy; use method 'kl'")
    x, y = sensitivity_samples(network, samples, calib_size)
    key = stable_hash({"network": network, "weights": weights_hash(network), "samples": arrays_hash([x, y]),
                       "probes": probes, "seed": seed, "code": code_hash()})
    rec = cache.get("hessian", key)
    names = mac_layers(network)
    if rec is not None:
        return np.asarray([rec[n] for n in names])
    from threadpoolctl import threadpool_limits

    params = {k: v.astype(np.float64) for k, v in net.weights().items()}
    x64 = x.astype(np.float64)
    rng = np.random.default_rng(seed)
    eps = 1e-4
    est = np.zeros(len(names))
    with threadpool_limits(1):
        for _ in range(probes):
            v = {n: rng.choice([-1.0, 1.0], size=params[f"{n}.w"].shape) for n in names}
            plus = dict(params, **{f"{n}.w": params[f"{n}.w"] + eps * v[n] for n in names})
            minus = dict(params, **{f"{n}.w": params[f"{n}.w"] - eps * v[n] for n in names})
            gp, gm = loss_and_grads(net.arch, plus, x64, y)[1], loss_and_grads(net.arch, minus, x64, y)[1]
            for i, n in enumerate(names):
                hv = (gp[f"{n}.w"].astype(np.float64) - gm[f"{n}.w"]) / (2 * eps)
                est[i] += float(np.sum(v[n] * hv))
    est /= probes
    # The loss Hessian of a ReLU network can be indefinite and a few probes are noisy: a
    # negative estimate means "no measurable curvature", not a gain from quantizing.
    est = np.maximum(est, 0.0)
    cache.put("hessian", key, {n: float(t) for n, t in zip(names, est)})
    return est


def weight_perturbation(network: str, layer: str, choice: LayerChoice) -> float:
    """‖Q(W) − W‖² of a layer's weight at a choice (the executor's own quantizer)."""
    from qsim.nets import get_network
    from qsim.nets.quant_exec import prepared_weight

    w = get_network(network).weights()[f"{layer}.w"].astype(np.float64)
    deq = prepared_weight(network, layer, choice.specs()[0]).dequantized.astype(np.float64)
    return float(np.sum((deq - w) ** 2))


def sensitivities(network: str, choices: list[LayerChoice], *, method: str = "kl", samples: int = 512,
                  calib_size: int = 256, probes: int = 32, cache: JsonCache | None = None,
                  progress=None) -> SensitivityTable:
    """The solver's objective table for every (MAC layer, choice)."""
    if method not in METHODS:
        raise ValueError(f"sensitivity method must be one of {list(METHODS)}, got {method!r}")
    t0 = time.perf_counter()
    cache = cache or NoCache()
    layers = mac_layers(network)
    choices = list(dict.fromkeys(choices))
    hits0 = cache.hits
    rec = measure(network, [(l, c) for l in layers for c in choices], samples=samples, calib_size=calib_size,
                  cache=cache, progress=progress)
    ref = rec[None]
    kl = np.array([[rec[(l, c)]["kl"] - ref["kl"] for c in choices] for l in layers])
    drop = np.array([[ref["metric"] - rec[(l, c)]["metric"] for c in choices] for l in layers])
    info = {"samples": samples, "calib_size": calib_size, "reference": REFERENCE.label(),
            "reference_kl": ref["kl"], "reference_metric": ref["metric"]}
    traces = None
    objective = kl
    if method == "hessian":
        traces = hutchinson_traces(network, samples=samples, calib_size=calib_size, probes=probes, cache=cache)
        act = {c: LayerChoice(8, c.abits, "symmetric", "channel") if not c.is_float else c for c in choices}
        act_rec = measure(network, [(l, act[c]) for l in layers for c in choices], samples=samples,
                          calib_size=calib_size, cache=cache)
        sizes = _weight_sizes(network, layers)
        objective = np.array([[0.5 * traces[i] / sizes[i] * weight_perturbation(network, l, c)
                               + act_rec[(l, act[c])]["kl"] - ref["kl"] for c in choices]
                              for i, l in enumerate(layers)])
        info["probes"] = probes
    info["seconds"] = round(time.perf_counter() - t0, 3)
    info["cache_hits"] = cache.hits - hits0
    return SensitivityTable(network, layers, choices, method, objective, kl, drop, traces, info)


def _weight_sizes(network, layers) -> list[int]:
    from qsim.nets import get_network

    w = get_network(network).weights()
    return [int(w[f"{l}.w"].size) for l in layers]
