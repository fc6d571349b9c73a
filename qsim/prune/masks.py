"""Pruning masks for the sequential networks (True = keep).

Every weight is viewed as (out, K) with K = in/groups · kh · kw in OIHW order, the reduction
dimension of the layer's GEMM. Patterns (`PATTERNS`):

* `unstructured`: per layer, the round(S·n) smallest |w| of each MAC layer are pruned.
* `global`: one magnitude threshold over all MAC layers: the round(S·N) smallest |w| of the
  whole network (layers with small weights lose more).
* `random`: per layer, round(S·n) positions drawn with a seeded generator (the seeds'
  "random 30 %" example): fixed random scores per weight, lowest pruned, so iterative
  schedules give nested masks.
* `channel`: structured filter pruning: in every MAC layer but the last (whose outputs are
  the classes), the round(S·out) filters with the smallest L1 norm are removed — weights
  *and* bias, so the channel's output is exactly 0 — and the next layer's weights that read
  that channel are masked too when it is a dense (groups = 1) conv or a linear layer after
  a flatten (they multiply an exact zero).
* `N:M` (`2:4`, `4:8`): in every M consecutive weights along K of every row, the N largest
  |w| are kept (ties: lower index first). K must be a multiple of M in every layer.

Ties in magnitude break by position (stable sort), so masks are deterministic.
"""

from __future__ import annotations

import numpy as np

from qsim.nets.models import Conv, Flatten, Linear, MaxPool

PATTERNS = ("unstructured", "global", "random", "channel", "2:4", "4:8")


def parse_nm(pattern: str) -> tuple[int, int] | None:
    """(N, M) of an 'N:M' pattern, else None."""
    if isinstance(pattern, str) and ":" in pattern:
        n, m = pattern.split(":", 1)
        if n.isdigit() and m.isdigit() and 0 < int(n) < int(m):
            return int(n), int(m)
    return None


def check_pattern(pattern) -> str:
    if pattern not in PATTERNS:
        raise ValueError(f"unknown sparsity pattern {pattern!r}; patterns are: {', '.join(PATTERNS)}")
    return pattern


def check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.integer, np.floating)) \
            or not np.isfinite(sparsity) or not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    return float(sparsity)


def reduction_dim(op) -> int:
    shape = op.weight_shape
    return int(np.prod(shape[1:]))


def check_nm_layers(arch, pattern: str, layers=None) -> None:
    """An N:M pattern needs K % M == 0 in every pruned layer; the first offender is named."""
    nm = parse_nm(pattern)
    if nm is None:
        return
    for op in arch.mac_ops:
        if layers is not None and op.name not in layers:
            continue
        k = reduction_dim(op)
        if k % nm[1]:
            raise ValueError(f"sparsity pattern {pattern}: layer {op.name!r} of {arch.name} has reduction dimension "
                             f"K = {k} (weight {op.weight_shape}), not a multiple of {nm[1]}")


def _prune_lowest(scores: np.ndarray, count: int) -> np.ndarray:
    keep = np.ones(scores.size, dtype=bool)
    if count > 0:
        keep[np.argsort(scores.ravel(), kind="stable")[:count]] = False
    return keep.reshape(scores.shape)


def _random_scores(shape, seed: int, index: int) -> np.ndarray:
    return np.random.default_rng([int(seed), 7919, int(index)]).random(shape)


def _nm_mask(w2: np.ndarray, n: int, m: int) -> np.ndarray:
    rows, k = w2.shape
    groups = np.abs(w2).reshape(rows, k // m, m)
    # stable descending order: sort by (-|w|, position)
    order = np.argsort(-groups, axis=2, kind="stable")
    keep = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    return keep.reshape(rows, k)


def _next_mac(arch, op):
    """The MAC op after `op` and the shape of `op`'s output on the way (flatten / pooling)."""
    ops = list(arch.ops)
    shapes = arch.shapes()
    i = ops.index(op)
    out_shape = shapes[i]
    flattened = False
    for nxt in ops[i + 1:]:
        if isinstance(nxt, Flatten):
            flattened = True
        elif isinstance(nxt, MaxPool):
            out_shape = nxt.out_shape(out_shape)
        elif isinstance(nxt, (Conv, Linear)):
            return nxt, out_shape, flattened
    return None, out_shape, flattened


def compute_masks(arch, params: dict, sparsity: float, pattern: str, seed: int = 0, layers=None) -> dict:
    """{layer: bool mask shaped like its weight} for `pattern` at `sparsity`.

    `layers` (names) restricts pruning to those MAC layers (default: all; `channel` never
    prunes the last layer's filters)."""
    sparsity = check_sparsity(sparsity)
    check_pattern(pattern)
    macs = [op for op in arch.mac_ops]
    names = [op.name for op in macs]
    if layers is not None:
        unknown = sorted(set(layers) - set(names))
        if unknown:
            raise ValueError(f"layers {unknown} are not MAC layers of {arch.name}; layers are {names}")
    chosen = [op for op in macs if layers is None or op.name in layers]
    masks = {op.name: np.ones(op.weight_shape, dtype=bool) for op in macs}
    nm = parse_nm(pattern)
    if nm is not None:
        check_nm_layers(arch, pattern, layers)
        for op in chosen:
            w2 = params[f"{op.name}.w"].reshape(op.weight_shape[0], -1)
            masks[op.name] = _nm_mask(w2, *nm).reshape(op.weight_shape)
        return masks
    if pattern == "global":
        flat = np.concatenate([np.abs(params[f"{op.name}.w"]).ravel() for op in chosen])
        keep = _prune_lowest(flat, int(round(sparsity * flat.size)))
        start = 0
        for op in chosen:
            n = int(np.prod(op.weight_shape))
            masks[op.name] = keep[start:start + n].reshape(op.weight_shape)
            start += n
        return masks
    if pattern == "channel":
        for op in chosen:
            if op is macs[-1]:
                continue
            w = params[f"{op.name}.w"]
            norms = np.abs(w.reshape(w.shape[0], -1)).sum(axis=1)
            count = int(round(sparsity * w.shape[0]))
            removed = np.flatnonzero(~_prune_lowest(norms, count))
            masks[op.name][removed] = False
            nxt, shape, flattened = _next_mac(arch, op)
            if nxt is None or len(removed) == 0:
                continue
            if isinstance(nxt, Conv) and nxt.groups == 1 and not flattened:
                masks[nxt.name][:, removed] = False
            elif isinstance(nxt, Linear) and flattened and len(shape) == 3:
                hw = shape[1] * shape[2]
                cols = (removed[:, None] * hw + np.arange(hw)[None, :]).ravel()
                masks[nxt.name][:, cols] = False
        return masks
    for idx, op in enumerate(macs):
        if op not in chosen:
            continue
        w = params[f"{op.name}.w"]
        scores = np.abs(w) if pattern == "unstructured" else _random_scores(w.shape, seed, idx)
        masks[op.name] = _prune_lowest(scores, int(round(sparsity * w.size)))
    return masks


def removed_channels(arch, masks: dict) -> dict:
    """{layer: indices of output channels whose weights are all pruned} (their bias goes too)."""
    out = {}
    for op in arch.mac_ops:
        m = masks[op.name].reshape(op.weight_shape[0], -1)
        out[op.name] = np.flatnonzero(~m.any(axis=1))
    return out


def apply_masks(arch, params: dict, masks: dict, pattern: str) -> dict:
    """Float32 copy of `params` with pruned weights set to 0 (and, for `channel`, the bias
    of every removed filter, so the channel's output is exactly 0)."""
    out = {k: np.array(v, dtype=np.float32, copy=True) for k, v in params.items()}
    for op in arch.mac_ops:
        out[f"{op.name}.w"] *= masks[op.name]
    if pattern == "channel":
        for name, rem in removed_channels(arch, masks).items():
            out[f"{name}.b"][rem] = 0.0
    return out


def sparsity_of(arch, masks: dict) -> float:
    """Fraction of all MAC weights pruned."""
    total = sum(int(np.prod(op.weight_shape)) for op in arch.mac_ops)
    pruned = sum(int((~masks[op.name]).sum()) for op in arch.mac_ops)
    return pruned / total
