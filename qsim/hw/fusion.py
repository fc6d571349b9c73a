"""Operator fusion: which non-MAC layers a runtime folds into the producing MAC kernel.

TensorRT, cuDNN, ONNX Runtime, XLA and TFLite run activations, residual adds and often pooling
as the epilogue of the conv/GEMM that produced their input: no launch and no memory round trip
of their own. A profile lists the op kinds its runtime fuses (`fusion`). Walking the layer list
in order, a non-MAC layer is fused into the nearest preceding MAC layer when every layer
between them was fused too, its kind is listed, and it consumes exactly that chain's output
(an elementwise op over as many elements; a pool whose input is that output). A residual add
still reads its other operand(s). Anything else runs as its own kernel, and the report says why.
"""

from __future__ import annotations

import numpy as np

from qsim.workload.layers import Elementwise, Pool2d


def op_kind(layer) -> str:
    """The fusion name of a non-MAC layer: its elementwise kind, max_pool/avg_pool, or the class name."""
    if isinstance(layer, Elementwise):
        return layer.kind
    if isinstance(layer, Pool2d):
        return f"{layer.kind}_pool"
    return type(layer).__name__.lower()


def fusion_plan(layers, fusable) -> tuple[list[str], list[str], np.ndarray]:
    """(fused_into per layer ('' if not fused), why-not note per non-MAC layer, extra input elements)."""
    fusable = set(fusable)
    into, notes = [""] * len(layers), [""] * len(layers)
    extra = np.zeros(len(layers))
    producer, chain_out = None, 0
    for i, layer in enumerate(layers):
        if layer.gemm is not None:
            producer, chain_out = layer.name, layer.output_elements
            continue
        kind = op_kind(layer)
        if not fusable:
            notes[i] = "profile fuses nothing"
        elif kind not in fusable:
            notes[i] = f"{kind} is not fused on this profile"
        elif producer is None:
            notes[i] = "no MAC layer directly before it"
        elif isinstance(layer, Elementwise) and layer.elements != chain_out:
            notes[i] = f"{layer.elements} elements, producer chain outputs {chain_out}"
        elif isinstance(layer, Pool2d) and layer.input_elements != chain_out:
            notes[i] = f"input of {layer.input_elements} elements, producer chain outputs {chain_out}"
        else:
            into[i] = producer
            if isinstance(layer, Elementwise):
                extra[i] = (layer.operands - 1) * layer.elements
            else:
                chain_out = layer.output_elements
            continue
        producer = None
    return into, notes, extra
