"""Post-training quantization beyond round-to-nearest (`qsim nets eval --ptq …`, study axis `ptq`).

One module per method, each turning float weights + calibration data into ordinary quantized
weights/scales (`QTensor`s) that run through the same integer kernels:

    bias_correction  empirical bias correction (Nagel et al., DFQ 2019)
    cle              cross-layer equalization (DFQ; BN folding where a net has BN)
    adaround         learned up/down rounding (Nagel et al. 2020)
    gptq             second-order column-wise rounding with act-order and static groups (Frantar et al. 2022)
    awq              activation-aware per-channel weight scaling, α grid + clip search (Lin et al. 2023)
    smoothquant      activation → weight outlier migration for W8A8 (Xiao et al. 2022)
    rotation         randomized Hadamard rotation of activations and weights (QuaRot-style) for W4A4

Methods combine with `+` where the literature combines them (e.g. `cle+bias_correction`,
`smoothquant+gptq`, `awq+gptq`, `rotation+gptq`, `adaround+bias_correction`); they are applied
in a fixed order: cle → smoothquant | awq | rotation → rtn | gptq | adaround → bias_correction.

`act_mode`: `static` (ranges calibrated once), `dynamic_tensor` (one range per tensor computed at
run time, as ORT DynamicQuantizeLinear) or `dynamic_token` (symmetric per-token scales, as LLM
W8A8 kernels); the dynamic modes apply to the transformers, whose linear layers take float input.
"""

from __future__ import annotations

METHODS = ("rtn", "cle", "smoothquant", "awq", "rotation", "gptq", "adaround", "bias_correction")
ACT_MODES = ("static", "dynamic_tensor", "dynamic_token")
SEQUENTIAL_ONLY = {"cle": "CLE needs consecutive MAC layers joined by a ReLU (positively homogeneous); the "
                          "transformers have GELU/SiLU, LayerNorm/RMSNorm and residuals between their linear layers",
                   "adaround": "AdaRound's per-weight optimisation over 36-210 layers of 384-1536 inputs is too slow "
                               "for this NumPy simulator; use gptq (the same output-error objective, closed form)",
                   "bias_correction": "bias correction is wired into the sequential networks' executor only; the "
                                      "transformers' GPTQ/AWQ already minimise the output error including its mean"}
TRANSFORMER_ONLY = {"awq": "AWQ's per-input-channel scales must fold into the op before the layer; qsim applies "
                           "it to the transformers' linear layers (minilm, smollm2)",
                    "smoothquant": "SmoothQuant targets activation outlier channels of transformer linear layers "
                                   "(minilm, smollm2); the CNNs' ReLU outputs have none to migrate",
                    "rotation": "a rotation cannot pass a ReLU, and the CNN pipeline requantizes integer to integer "
                                "between layers (no float input to rotate); use it on minilm or smollm2"}
CONFLICTS = ({"gptq", "adaround"}, {"awq", "smoothquant"}, {"awq", "rotation"}, {"smoothquant", "rotation"})
TRANSFORMERS = ("minilm", "smollm2")


def parse_ptq(text) -> tuple[str, ...]:
    """'gptq+awq' → ('awq', 'gptq') in application order; 'rtn' → (). Unknown names are rejected."""
    if text is None:
        return ()
    if isinstance(text, (tuple, list)):
        text = "+".join(text)
    parts = [p.strip() for p in str(text).split("+")]
    bad = [p for p in parts if p not in METHODS]
    if bad or not parts:
        raise ValueError(f"ptq: unknown method(s) {bad or [text]}; methods are {list(METHODS)}, combined with '+'")
    if len(set(parts)) != len(parts):
        raise ValueError(f"ptq: {text!r} names a method twice")
    if "rtn" in parts and len(parts) > 1:
        raise ValueError(f"ptq: 'rtn' is plain round-to-nearest and combines with nothing (got {text!r})")
    for pair in CONFLICTS:
        if pair <= set(parts):
            a, b = sorted(pair)
            raise ValueError(f"ptq: {a} and {b} do not combine (both choose the same thing: "
                             f"{'the integer codes' if pair == {'gptq', 'adaround'} else 'the per-channel scaling'})")
    return tuple(m for m in METHODS if m in parts and m != "rtn")


def ptq_label(methods) -> str:
    methods = parse_ptq(methods) if isinstance(methods, str) else tuple(methods)
    return "+".join(methods) if methods else "rtn"


def check_ptq(network: str, methods, wspec, aspec, act_mode: str = "static") -> tuple[str, ...]:
    """Reject, with the reason, a method that does not apply to this network/config; returns the methods."""
    from qsim.ptq.core import check_weight_spec

    methods = parse_ptq(methods) if not isinstance(methods, tuple) else methods
    if act_mode not in ACT_MODES:
        raise ValueError(f"act_mode must be one of {list(ACT_MODES)}, got {act_mode!r}")
    name = getattr(network, "name", network)
    transformer = name in TRANSFORMERS
    for m in methods:
        if wspec is None:
            raise ValueError(f"--ptq {m}: needs quantized weights; the float-only network has no weight grid to "
                             f"optimise")
        check_weight_spec(wspec, m)
        if transformer and m in SEQUENTIAL_ONLY:
            raise ValueError(f"--ptq {m} on {name}: {SEQUENTIAL_ONLY[m]}")
        if not transformer and m in TRANSFORMER_ONLY:
            raise ValueError(f"--ptq {m} on {name}: {TRANSFORMER_ONLY[m]}")
    if "smoothquant" in methods and aspec is None:
        raise ValueError("--ptq smoothquant: SmoothQuant migrates activation outliers into the weights for W8A8; "
                         "with weight-only quantization (no activation quantizer) there is nothing to smooth")
    if "cle" in methods:
        from qsim.nets.registry import get_network
        from qsim.ptq.cle import equalizable_pairs

        arch = get_network(name).arch
        if not equalizable_pairs(arch):
            raise ValueError(f"--ptq cle on {name}: no MAC layer is followed by another through a ReLU (CLE "
                             f"without a following layer has nowhere to move the scale)")
    if act_mode != "static":
        if aspec is None:
            raise ValueError(f"act_mode {act_mode!r}: weight-only quantization has no activation quantizer")
        if not transformer:
            raise ValueError(f"act_mode {act_mode!r} on {name}: the CNN pipeline requantizes integer to integer "
                             f"with static output scales; dynamic ranges apply to minilm and smollm2")
    return methods


def evaluate_ptq(name, wspec, aspec, *, ptq="rtn", act_mode="static", seed=0, calib_size=256, policy="fp32_rne",
                 acc_bits=32, overflow="wrap", overrides=None, eval_size=None, **kw) -> dict:
    """`qsim.nets.evaluate` with a PTQ method: the same dictionary, plus config.ptq / config.act_mode."""
    from qsim.nets.registry import get_network

    net = get_network(name)
    prune = {k: kw.pop(k) for k in ("sparsity", "sparsity_pattern", "fine_tune_epochs", "compress", "prune_seed")
             if k in kw}
    if any(prune.values()):
        raise ValueError(f"ptq {ptq!r}: PTQ methods do not combine with pruning ({sorted(k for k, v in prune.items() if v)}) "
                         f"in this version; evaluate them separately")
    methods = check_ptq(net.name, ptq, wspec, aspec, act_mode)
    if overrides:
        raise ValueError("--ptq: per-layer overrides are not supported with PTQ methods; use one wspec/aspec")
    if net.name == "minilm":
        from qsim.nets.minilm import evaluate_minilm

        res = evaluate_minilm(wspec, aspec, calib_size=calib_size, policy=policy, acc_bits=acc_bits,
                              overflow=overflow, eval_size=eval_size, ptq=methods, act_mode=act_mode, seed=seed, **kw)
    elif net.name == "smollm2":
        from qsim.nets.smollm2 import evaluate_smollm2

        res = evaluate_smollm2(wspec, aspec, calib_size=calib_size, policy=policy, acc_bits=acc_bits,
                               overflow=overflow, eval_size=eval_size, ptq=methods, act_mode=act_mode, seed=seed, **kw)
    else:
        from qsim.ptq.cnn import evaluate_cnn

        res = evaluate_cnn(net.name, wspec, aspec, methods, calib_size=calib_size, policy=policy,
                           acc_bits=acc_bits, overflow=overflow, eval_size=eval_size, seed=seed, **kw)
    res["config"]["ptq"] = ptq_label(methods)
    res["config"]["act_mode"] = act_mode
    return res


__all__ = ["ACT_MODES", "METHODS", "check_ptq", "evaluate_ptq", "parse_ptq", "ptq_label"]
