"""Cross-layer equalization (Nagel et al., DFQ 2019, arXiv:1906.04721 §4.1) and BatchNorm folding.

For two MAC layers joined by a ReLU (positively homogeneous: relu(x/s) = relu(x)/s for s > 0),
output channel i of the first layer is divided by s_i and the matching input channel(s) of
the second multiplied by s_i, with s_i = sqrt(r1_i / r2_i) (r = the channel's weight range,
max |w|), which leaves both layers with range sqrt(r1_i·r2_i): the float function is
unchanged and per-tensor quantization of each layer loses less. The second layer may be a
conv (dense or depthwise), or a linear layer after a Flatten (each channel owns H·W inputs).
Pairs are equalized in order, and the sweep repeats `sweeps` times (DFQ iterates to a fixed
point). A layer whose output feeds no following MAC layer through a ReLU is left alone.
"""

from __future__ import annotations

import numpy as np

from qsim.nets.models import Conv, Flatten, Linear, MaxPool


def fold_bn(w, b, gamma, beta, mean, var, eps=1e-5):
    """Fold inference BatchNorm into the preceding conv/linear (out first): W·γ/σ, (b − μ)·γ/σ + β."""
    k = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    w2 = np.asarray(w, np.float64) * k.reshape((-1,) + (1,) * (np.ndim(w) - 1))
    b2 = (np.asarray(b, np.float64) - mean) * k + beta
    return w2.astype(np.float32), b2.astype(np.float32)


def equalizable_pairs(arch) -> list[tuple]:
    """(first, second, channels→inputs of second) for consecutive MAC layers joined by a ReLU
    (max-pool and flatten between them are allowed: both commute with a positive per-channel scale)."""
    pairs, prev, flat = [], None, 1
    shape = tuple(arch.input_shape)
    for op in arch.ops:
        if isinstance(op, (Conv, Linear)):
            if prev is not None and prev.relu:
                if isinstance(op, Conv) and (op.groups == 1 or op.groups == op.in_ch):
                    pairs.append((prev, op, 1))
                elif isinstance(op, Linear):
                    pairs.append((prev, op, flat))
            prev, flat = op, 1
        elif isinstance(op, Flatten) and prev is not None:
            flat = int(np.prod(shape[1:])) if len(shape) == 3 else 1
        elif not isinstance(op, MaxPool):
            prev = None
        shape = op.out_shape(shape)
    return pairs


def _in_ranges(op2, w2, flat):
    """Per input channel of the second layer: max |w| over what that channel touches."""
    a = np.abs(w2)
    if isinstance(op2, Conv) and op2.groups > 1:           # depthwise: channel i owns filter i
        return a.reshape(a.shape[0], -1).max(1)
    if isinstance(op2, Conv):
        return a.max(axis=(0, 2, 3))
    return a.reshape(a.shape[0], -1, flat).max(axis=(0, 2))


def equalize(arch, params: dict, sweeps: int = 4) -> tuple[dict, list[str]]:
    """CLE over every equalizable pair; returns (new params, the pairs as 'a→b')."""
    pairs = equalizable_pairs(arch)
    if not pairs:
        raise ValueError(f"--ptq cle: network {arch.name!r} has no pair of MAC layers joined by a ReLU (CLE needs "
                         f"a following layer to absorb each channel's scale)")
    p = {k: np.array(v, np.float64) for k, v in params.items()}
    for _ in range(sweeps):
        for op1, op2, flat in pairs:
            w1, b1, w2 = p[f"{op1.name}.w"], p[f"{op1.name}.b"], p[f"{op2.name}.w"]
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(1)
            r2 = _in_ranges(op2, w2, flat)
            ok = (r1 > 0) & (r2 > 0)
            s = np.where(ok, np.sqrt(np.where(ok, r1 / np.where(r2 > 0, r2, 1), 1.0)), 1.0)
            p[f"{op1.name}.w"] = w1 / s.reshape((-1,) + (1,) * (w1.ndim - 1))
            p[f"{op1.name}.b"] = b1 / s
            if isinstance(op2, Conv) and op2.groups > 1:
                w2 = w2 * s.reshape(-1, 1, 1, 1)
                # a depthwise layer's bias is per channel: its outputs scale with its inputs, untouched here
            elif isinstance(op2, Conv):
                w2 = w2 * s.reshape(1, -1, 1, 1)
            else:
                w2 = w2 * np.repeat(s, flat)[None, :]
            p[f"{op2.name}.w"] = w2
    out = {k: v.astype(np.float32) for k, v in p.items()}
    return out, [f"{a.name}→{b.name}" for a, b, _ in pairs]
