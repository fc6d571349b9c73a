"""Fine-tuning of pruned and weight-shared networks through the NumPy trainer.

The trainer's gradient is reached through `trainer_grads()` alone, so when the trainer
moves (`qsim.nets.train` → `qsim.train`) only that function changes. Updates are Adam with a
cosine-decayed learning rate, like the trainer's own loop; pruned weights (and the biases of
removed filters) receive no update and stay exactly 0. Weight sharing (Deep Compression §3.1)
fine-tunes the centroids: the gradient of every weight is added to its centroid
(`np.bincount` over the cluster indices), so all weights of a cluster move together.
"""

from __future__ import annotations

import numpy as np

FINE_TUNE_LR_FACTOR = 0.5      # fine-tuning lr = this × the network's training lr


def trainer_grads():
    """The trainer's `loss_and_grads(arch, params, x, y) -> (loss, {param: grad})`."""
    try:
        from qsim.train.core import loss_and_grads  # the trainer's new home
    except ImportError:
        from qsim.nets.train import loss_and_grads
    return loss_and_grads


def _adam(params: dict, keys):
    m = {k: np.zeros_like(params[k], dtype=np.float64) for k in keys}
    v = {k: np.zeros_like(params[k], dtype=np.float64) for k in keys}
    return m, v


def _batches(n: int, batch_size: int, epochs: int, seed: int):
    rng = np.random.default_rng(int(seed) + 4242)
    steps = -(-n // batch_size)
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(steps):
            yield order[s * batch_size:(s + 1) * batch_size]


def fine_tune_masked(arch, params: dict, masks: dict, bias_masks: dict, x, y, *, epochs: int, batch_size: int,
                     lr: float, seed: int, log=None) -> dict:
    """Adam on all parameters with pruned entries frozen at 0; float32 result."""
    from threadpoolctl import threadpool_limits

    grads_of = trainer_grads()
    p = {k: np.array(v, dtype=np.float32, copy=True) for k, v in params.items()}
    keep = {}
    for op in arch.mac_ops:
        keep[f"{op.name}.w"] = masks[op.name].astype(np.float32)
        if op.name in bias_masks:
            keep[f"{op.name}.b"] = bias_masks[op.name].astype(np.float32)
    for k, mk in keep.items():
        p[k] *= mk
    m, v = _adam(p, p.keys())
    total = epochs * -(-len(x) // batch_size)
    b1, b2, eps = 0.9, 0.999, 1e-8
    with threadpool_limits(1):
        for step, idx in enumerate(_batches(len(x), batch_size, epochs, seed), start=1):
            loss, grads = grads_of(arch, p, x[idx], y[idx])
            rate = lr * 0.5 * (1.0 + np.cos(np.pi * (step - 1) / total))
            for k in p:
                g = grads[k] * keep[k] if k in keep else grads[k]
                m[k] = b1 * m[k] + (1 - b1) * g
                v[k] = b2 * v[k] + (1 - b2) * g * g
                upd = rate * (m[k] / (1 - b1 ** step)) / (np.sqrt(v[k] / (1 - b2 ** step)) + eps)
                p[k] = (p[k] - upd).astype(np.float32)
                if k in keep:
                    p[k] *= keep[k]
            if log and step % 200 == 0:
                log(f"fine-tune step {step}/{total}: loss {loss:.4f}")
    return p


def fine_tune_centroids(arch, params: dict, masks: dict, indices: dict, codebooks: dict, x, y, *, epochs: int,
                        batch_size: int, lr: float, seed: int, log=None) -> tuple[dict, dict]:
    """Deep Compression's centroid fine-tuning: gradients summed per centroid (Adam on the
    centroids and the biases). `indices[layer]` holds each weight's cluster (any value where
    pruned), `codebooks[layer]` the float centroids. Returns (codebooks, biases)."""
    from threadpoolctl import threadpool_limits

    grads_of = trainer_grads()
    cb = {k: np.array(v, dtype=np.float64, copy=True) for k, v in codebooks.items()}
    biases = {op.name: np.array(params[f"{op.name}.b"], dtype=np.float32, copy=True) for op in arch.mac_ops}
    bias_keep = {op.name: masks[op.name].reshape(op.weight_shape[0], -1).any(axis=1).astype(np.float32)
                 for op in arch.mac_ops}
    flat_idx = {name: indices[name].ravel() for name in cb}
    flat_keep = {name: masks[name].ravel() for name in cb}

    def weights():
        p = {}
        for op in arch.mac_ops:
            w = cb[op.name][flat_idx[op.name]].astype(np.float32) * flat_keep[op.name]
            p[f"{op.name}.w"] = w.reshape(op.weight_shape).astype(np.float32)
            p[f"{op.name}.b"] = biases[op.name]
        return p

    state = {**{f"c:{k}": v for k, v in cb.items()}, **{f"b:{k}": v for k, v in biases.items()}}
    m, v = _adam(state, state.keys())
    total = epochs * -(-len(x) // batch_size)
    b1, b2, eps = 0.9, 0.999, 1e-8
    with threadpool_limits(1):
        for step, idx in enumerate(_batches(len(x), batch_size, epochs, seed), start=1):
            loss, grads = grads_of(arch, weights(), x[idx], y[idx])
            rate = lr * 0.5 * (1.0 + np.cos(np.pi * (step - 1) / total))
            for op in arch.mac_ops:
                name = op.name
                gw = grads[f"{name}.w"].ravel()
                k = len(cb[name])
                gc = np.bincount(flat_idx[name][flat_keep[name]], weights=gw[flat_keep[name]], minlength=k)
                for key, g, target in ((f"c:{name}", gc, cb), (f"b:{name}", grads[f"{name}.b"] * bias_keep[name],
                                                                 biases)):
                    m[key] = b1 * m[key] + (1 - b1) * g
                    v[key] = b2 * v[key] + (1 - b2) * g * g
                    upd = rate * (m[key] / (1 - b1 ** step)) / (np.sqrt(v[key] / (1 - b2 ** step)) + eps)
                    target[name] = (target[name] - upd).astype(target[name].dtype)
            if log and step % 200 == 0:
                log(f"centroid fine-tune step {step}/{total}: loss {loss:.4f}")
    return cb, biases
