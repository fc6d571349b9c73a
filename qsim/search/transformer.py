"""MiniLM in the search: its 36 linear layers each get a weight and an input-activation width.

Why a separate adapter: MiniLM is not a sequential `Architecture`; its executor
(`qsim.nets.minilm`) takes per-linear-layer weight and activation specs, its attention
matmuls (query·keyᵀ, probabilities·values) share one spec, and its only labelled data are the
SICK-R pairs it is scored on. So:
- layers are `minilm.linear_names()`; a choice's (wbits, abits) applies to that linear layer
  (its weights and the activation it consumes); no layer can stay float;
- the cost workload's Dense layers `l{i}.q/k/v/o/ffn1/ffn2` follow their linear layer's choice;
  the attention matmuls run at A8 in the executor and stay at W8A8 cost, softmax, LayerNorms and
  GELUs at their fixed cost, whatever the choice;
- the sensitivity is measured on sentences of the calibration corpus that calibration does not
  use (never the scored pairs): the embedding noise ratio ‖e_q − e_fp32‖² / ‖e_fp32‖² when only that
  layer is at the choice and every other at the reference (the sum of such ratios is what the ILP adds).
"""

from __future__ import annotations

import functools

import numpy as np

NETWORK = "minilm"
DEFAULT_ABITS = (4, 6, 8)   # candidate input-activation widths when none are given
_SUFFIX = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
           "attention.output.dense": "o", "intermediate.dense": "ffn1", "output.dense": "ffn2"}


def is_transformer(network) -> bool:
    return str(getattr(network, "name", network)) == NETWORK


def layers() -> list[str]:
    from qsim.nets.minilm import linear_names

    return linear_names()


@functools.lru_cache(maxsize=1)
def cost_owners() -> dict:
    """{workload layer: linear layer whose choice it takes, or None (fixed W8A8 cost)}."""
    from qsim.nets.minilm import workload

    by_short = {}
    for name in layers():
        i = int(name.split(".")[2])
        by_short[f"l{i}.{_SUFFIX[name.split('.', 3)[3]]}"] = name
    return {layer.name: by_short.get(layer.name) for layer in workload().layers}


def sensitivity_texts(size: int, calib_size: int) -> list[str]:
    from qsim.nets.minilm import task_data

    texts = task_data("sick")[4]
    if calib_size + size > len(texts):
        raise ValueError(f"MiniLM has {len(texts)} calibration sentences: calib_size + samples must not exceed it")
    return list(texts[calib_size:calib_size + size])


@functools.lru_cache(maxsize=4)
def _float_embeddings(size: int, calib_size: int) -> np.ndarray:
    from qsim.nets.minilm import embed

    return embed(sensitivity_texts(size, calib_size))


def _quantizer(assignment):
    from qsim.nets.minilm import Quantizer
    from qsim.search.assign import executor_args

    kw = executor_args(assignment, NETWORK)
    return Quantizer(wspec=kw["wspec"], aspec=kw["aspec"], acc_bits=kw["acc_bits"],
                     wspecs={n: s["w"] for n, s in kw["overrides"].items()},
                     aspecs={n: s["a"] for n, s in kw["overrides"].items()})


@functools.lru_cache(maxsize=2)
def _reference(calib_size: int):
    """The uniform W8A8 reference's quantizer, calibrated on the first `calib_size` calibration sentences
    (its ranges cover every site: linear inputs and attention operands), weights quantized."""
    from qsim.nets.minilm import embed, load_weights, task_data
    from qsim.search.assign import uniform
    from qsim.search.sensitivity import REFERENCE

    q = _quantizer(uniform(NETWORK, REFERENCE))
    q.calibrating = True
    embed(task_data("sick")[4][:calib_size], q)
    q.finish_calibration()
    W = load_weights()
    for n in layers():
        q.weight(n, W[n + ".weight"])
    return q


def reference_ranges(calib_size: int) -> dict:
    return dict(_reference(calib_size).ranges)


@functools.lru_cache(maxsize=2)
def _reference_prefix(size: int, calib_size: int) -> list:
    """[(indices, ids, mask, hidden states entering each block)] of the sensitivity sentences under the reference."""
    from qsim.nets.minilm import batches, encode

    q = _reference(calib_size)
    out = []
    for idx, ids, mask in batches(sensitivity_texts(size, calib_size)):
        states: list = []
        encode(ids, mask, q, states=states)
        out.append((idx, ids, mask, states))
    return out


def noise_ratio(assignment, size: int, calib_size: int) -> float:
    """‖e_q − e_fp32‖² / ‖e_fp32‖² of the sentence embeddings under `assignment`.

    The activation ranges are the W8A8 reference's (`reference_ranges`, calibrated once): a site's
    min-max range does not depend on the bits it is quantized to, and a single layer's change
    moves the ranges after it only slightly, so no calibration pass per entry (2/3 of the time;
    `evaluate` recalibrates every re-evaluated assignment in full). The transformer blocks before
    the first changed layer are the reference's, so their stored output is reused (exact)."""
    from qsim.nets.minilm import HIDDEN, LAYERS, encode
    from qsim.search.sensitivity import REFERENCE

    ref_q = _reference(calib_size)
    q = _quantizer(assignment)
    q.ranges = ref_q.ranges
    names = layers()
    same = [n for n in names if assignment[n] == REFERENCE]
    q.qweights = {n: ref_q.qweights[n] for n in same}
    changed = [i for i, n in enumerate(names) if n not in same]
    block = changed[0] * LAYERS // len(names) if changed else 0
    emb = np.empty((size, HIDDEN), np.float32)
    for idx, ids, mask, states in _reference_prefix(size, calib_size):
        emb[idx] = encode(ids, mask, q, start=(block, states[block]))
    ref = _float_embeddings(size, calib_size).astype(np.float64)
    emb = emb.astype(np.float64)
    return float(np.sum((emb - ref) ** 2) / np.sum(ref ** 2))
