"""Deterministic seeded NumPy training (manual backprop, Adam, cosine learning rate).

Run once per network by `qsim nets train NAME`; the fp32 weights are committed in
`qsim/data/weights/NAME.npz` so no study ever retrains. BLAS is pinned to one
thread: it is deterministic on a given machine and not slower for these sizes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from qsim.nets.float_exec import col2im, conv_forward, forward, grouped_cols, maxpool
from qsim.nets.models import Architecture, Conv, Flatten, Linear, MaxPool, init_weights
from qsim.train.config import TrainConfig


def softmax_xent(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient w.r.t. the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(p[np.arange(n), y] + 1e-12).mean())
    p[np.arange(n), y] -= 1.0
    return loss, (p / n).astype(np.float32)


def loss_and_grads(arch: Architecture, params: dict, x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """Forward with caches, then backprop through every op."""
    h, tape = x, []
    for op in arch.ops:
        if isinstance(op, Conv):
            out, cols = conv_forward(op, h, params[f"{op.name}.w"], params[f"{op.name}.b"])
            tape.append((op, h.shape, cols, out > 0 if op.relu else None))
            h = np.maximum(out, 0) if op.relu else out
        elif isinstance(op, Linear):
            out = h @ params[f"{op.name}.w"].T + params[f"{op.name}.b"]
            tape.append((op, h, None, out > 0 if op.relu else None))
            h = np.maximum(out, 0) if op.relu else out
        elif isinstance(op, MaxPool):
            out = maxpool(h, op.size)
            tape.append((op, h, out, None))
            h = out
        elif isinstance(op, Flatten):
            tape.append((op, h.shape, None, None))
            h = h.reshape(h.shape[0], -1)
    loss, g = softmax_xent(h, y)
    grads = {}
    for idx in range(len(tape) - 1, -1, -1):
        op, saved, extra, mask = tape[idx]
        first = idx == 0
        if mask is not None:
            g = g * mask
        if isinstance(op, Conv):
            n, o = saved[0], op.out_ch
            gm = g.transpose(0, 2, 3, 1).reshape(-1, o)
            w2 = params[f"{op.name}.w"].reshape(o, -1)
            if op.groups == 1:
                dw = gm.T @ extra
                dcols = None if first else gm @ w2
            else:
                gg = op.groups
                gmg = gm.reshape(-1, gg, o // gg).transpose(1, 0, 2)  # (G, M, O/G)
                dw = np.matmul(gmg.transpose(0, 2, 1), grouped_cols(extra, gg)).reshape(o, -1)
                dcols = None if first else np.matmul(gmg, w2.reshape(gg, o // gg, -1)).transpose(1, 0, 2).reshape(
                    gm.shape[0], -1)
            grads[f"{op.name}.w"] = dw.reshape(op.weight_shape)
            grads[f"{op.name}.b"] = gm.sum(axis=0)
            g = None if first else col2im(dcols, saved, op.kernel, op.stride, op.padding)
        elif isinstance(op, Linear):
            grads[f"{op.name}.w"] = g.T @ saved
            grads[f"{op.name}.b"] = g.sum(axis=0)
            g = None if first else g @ params[f"{op.name}.w"]
        elif isinstance(op, MaxPool):
            s = op.size
            n, c, hh, ww = saved.shape
            up = np.repeat(np.repeat(extra, s, axis=2), s, axis=3)
            gup = np.repeat(np.repeat(g, s, axis=2), s, axis=3)
            full = np.zeros_like(saved)
            full[:, :, : up.shape[2], : up.shape[3]] = gup * (saved[:, :, : up.shape[2], : up.shape[3]] == up)
            g = full
        elif isinstance(op, Flatten):
            g = g.reshape(saved)
    return loss, grads


def train(arch: Architecture, x: np.ndarray, y: np.ndarray, cfg: TrainConfig, log=None) -> dict:
    """Adam with a cosine learning-rate decay; returns float32 parameters."""
    from threadpoolctl import threadpool_limits

    params = init_weights(arch, cfg.seed)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    rng = np.random.default_rng(cfg.seed + 1000)
    steps_per_epoch = -(-len(x) // cfg.batch_size)
    total, step = cfg.epochs * steps_per_epoch, 0
    b1, b2, eps = 0.9, 0.999, 1e-8
    with threadpool_limits(1):
        for epoch in range(cfg.epochs):
            order = rng.permutation(len(x))
            losses = []
            for s in range(steps_per_epoch):
                idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                loss, grads = loss_and_grads(arch, params, x[idx], y[idx])
                losses.append(loss)
                step += 1
                lr = cfg.lr * 0.5 * (1.0 + np.cos(np.pi * (step - 1) / total))
                for k, p in params.items():
                    gk = grads[k] + cfg.weight_decay * p if cfg.weight_decay else grads[k]
                    m[k] = b1 * m[k] + (1 - b1) * gk
                    v[k] = b2 * v[k] + (1 - b2) * gk * gk
                    mh, vh = m[k] / (1 - b1 ** step), v[k] / (1 - b2 ** step)
                    params[k] = (p - lr * mh / (np.sqrt(vh) + eps)).astype(np.float32)
            if log:
                log(f"epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses):.4f}")
    return params


def accuracy_of(arch: Architecture, params: dict, x: np.ndarray, y: np.ndarray) -> float:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return float((forward(arch, params, x).argmax(axis=1) == y).mean())


def save_weights(path: Path, params: dict, meta: dict) -> None:
    """Weights plus a JSON `meta` string (config, accuracy) in one small .npz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **params, meta=np.array(json.dumps(meta, sort_keys=True)))


def train_network(net, out_path: Path | None = None, log=None) -> dict:
    """Train registry network `net` on its data set and write its weights file."""
    from qsim.nets.data import load_dataset

    if net.arch is None or net.train_config is None:
        raise ValueError(f"network {net.name!r} is not trained by qsim (no sequential architecture or recipe)")
    ds = load_dataset(net.dataset)
    t0 = time.perf_counter()
    params = train(net.arch, ds.x_train, ds.y_train, net.train_config, log=log)
    seconds = time.perf_counter() - t0
    acc = accuracy_of(net.arch, params, ds.x_test, ds.y_test)
    meta = {"network": net.name, "dataset": net.dataset, "train_config": asdict(net.train_config),
            "test_accuracy": acc, "train_seconds": round(seconds, 1), "numpy": np.__version__}
    save_weights(Path(out_path) if out_path else net.weights_path, params, meta)
    return meta
