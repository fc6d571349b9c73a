"""MiniLM in the search: its 36 linear layers get per-layer weight widths (activations share one A8 spec).

Why a separate adapter: MiniLM is not a sequential `Architecture`; its executor
(`qsim.nets.minilm`) takes per-layer weight specs but one activation spec for all its sites,
and its only labelled data are the SICK-R pairs it is scored on. So:
- layers are `minilm.linear_names()`; a choice's `abits` must be the same on every layer;
- the cost workload's Dense layers `l{i}.q/k/v/o/ffn1/ffn2` follow their linear layer's choice;
  the attention matmuls, softmax, LayerNorms and GELUs stay at W8A8 / fixed cost whatever the choice;
- the sensitivity is measured on sentences of the calibration corpus that calibration does not
  use (never the scored pairs): the embedding noise ratio ‖e_q − e_fp32‖² / ‖e_fp32‖² when only that
  layer is at the choice and every other at the reference (the sum of such ratios is what the ILP adds).
"""

from __future__ import annotations

import functools

import numpy as np

NETWORK = "minilm"
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


def noise_ratio(assignment, size: int, calib_size: int) -> float:
    """‖e_q − e_fp32‖² / ‖e_fp32‖² of the sentence embeddings under `assignment` (calibrated as evaluate does)."""
    from qsim.nets.minilm import Quantizer, embed, task_data
    from qsim.search.assign import executor_args

    kw = executor_args(assignment, NETWORK)
    q = Quantizer(wspec=kw["wspec"], aspec=kw["aspec"], acc_bits=kw["acc_bits"],
                  wspecs={n: s["w"] for n, s in kw["overrides"].items()})
    if kw["aspec"] is not None:
        q.calibrating = True
        embed(task_data("sick")[4][:calib_size], q)
        q.finish_calibration()
    ref = _float_embeddings(size, calib_size).astype(np.float64)
    emb = embed(sensitivity_texts(size, calib_size), q).astype(np.float64)
    return float(np.sum((emb - ref) ** 2) / np.sum(ref ** 2))
