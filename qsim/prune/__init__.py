"""Pruning, N:M sparsity and Deep Compression of the qsim-trained networks.

Patterns (`qsim.prune.masks.PATTERNS`): `unstructured` (magnitude, per layer), `global`
(magnitude, one threshold for the network), `random` (seeded), `channel` (filters by L1
norm, with their bias and the next layer's inputs), `2:4` and `4:8` (along the reduction
dimension K of each layer). One-shot or iterative (`steps`), with masked fine-tuning through
the NumPy trainer.

For study runners (one call per design point; deterministic, cached on disk under
`qsim.nets.data.cache_dir()/prune`, keyed by the weights file, every argument, the training
recipe and the source of the pruning modules and of the trainer):

    from qsim.prune import prune_for_config
    params = prune_for_config("mnist_mlp", sparsity=0.9, pattern="unstructured", seed=0,
                              fine_tune_epochs=2)        # {"fc1.w": float32 with exact zeros, …}

    from qsim.prune import pruned_model, deep_compressed
    pm = pruned_model(net, 0.9, "unstructured", 0, 2)    # .params, .masks, .sparsity
    dc = deep_compressed(net, 0.9, "unstructured", bits=5, seed=0, fine_tune_epochs=2)

The accuracy of a pruned, quantized network with its exact weight storage comes from
`qsim.nets.evaluate(NAME, wspec, aspec, sparsity=S, sparsity_pattern=P, fine_tune_epochs=E,
compress=None|"deep")` (→ `qsim.prune.evaluate.evaluate_pruned`), which adds
`quantized.sparsity`, `quantized.weight_bytes` and `quantized.compression_ratio`. The storage
formats are in `qsim.prune.storage`, canonical Huffman in `qsim.prune.huffman`, the
quantization-noise analysis in `qsim.prune.noise`.
"""

from qsim.prune.masks import PATTERNS, apply_masks, compute_masks, sparsity_of
from qsim.prune.pipeline import DeepCompressed, PrunedModel, deep_compressed, prune_for_config, pruned_model


def evaluate_pruned(name, wspec, aspec, **kwargs) -> dict:
    """See `qsim.prune.evaluate.evaluate_pruned`."""
    from qsim.prune.evaluate import evaluate_pruned as _ev

    return _ev(name, wspec, aspec, **kwargs)


__all__ = ["PATTERNS", "DeepCompressed", "PrunedModel", "apply_masks", "compute_masks", "deep_compressed",
           "evaluate_pruned", "prune_for_config", "pruned_model", "sparsity_of"]
