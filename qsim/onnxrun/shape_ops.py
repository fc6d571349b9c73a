"""Pure data-movement ops that exported graphs wrap around quantized layers
(PyTorch exports flatten with Shape → Gather → Concat → Reshape). No arithmetic here."""

from __future__ import annotations

import numpy as np


def _axes(ctx, inputs, attrs, ndim: int, what: str):
    """Axes from the input (opset 13+) or the attribute (older opsets), normalised."""
    axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")
    if axes is None:
        return None
    axes = [int(a) for a in np.asarray(axes).ravel()]
    if any(not -ndim <= a < ndim for a in axes):
        raise ctx.error(f"{what} axes {axes} out of range for rank {ndim}")
    return sorted(a % ndim for a in axes)


def shape(ctx, inputs, attrs):
    dims = np.array(inputs[0].shape, np.int64)
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    return [dims[start:None if end is None else int(end)]]


def gather(ctx, inputs, attrs):
    x, idx = inputs[:2]
    axis = int(attrs.get("axis", 0))
    if not -x.ndim <= axis < x.ndim:
        raise ctx.error(f"axis {axis} out of range for rank {x.ndim}")
    idx = np.asarray(idx).astype(np.int64)
    n = x.shape[axis]
    if np.any(idx < -n) or np.any(idx >= n):
        raise ctx.error(f"indices {idx.ravel()[:8]} out of range for an axis of length {n}")
    return [np.take(x, np.where(idx < 0, idx + n, idx), axis=axis)]


def concat(ctx, inputs, attrs):
    parts = [p for p in inputs if p is not None]
    try:
        return [np.concatenate(parts, axis=int(attrs["axis"]))]
    except ValueError as exc:  # numpy AxisError is a ValueError
        raise ctx.error(f"cannot concatenate shapes {[p.shape for p in parts]}: {exc}") from None


def squeeze(ctx, inputs, attrs):
    x = inputs[0]
    axes = _axes(ctx, inputs, attrs, x.ndim, "Squeeze")
    if axes is None:
        return [x.reshape([d for d in x.shape if d != 1])]
    if any(x.shape[a] != 1 for a in axes):
        raise ctx.error(f"cannot squeeze axes {axes} of shape {x.shape}: not of size 1")
    return [np.squeeze(x, axis=tuple(axes))]


def unsqueeze(ctx, inputs, attrs):
    x = inputs[0]
    n = len(np.asarray(inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes", [])).ravel())
    axes = _axes(ctx, inputs, attrs, x.ndim + n, "Unsqueeze")
    if not axes:
        raise ctx.error("Unsqueeze needs axes")
    return [np.expand_dims(x, tuple(axes))]


SHAPE_OPS = {"Shape": shape, "Gather": gather, "Concat": concat, "Squeeze": squeeze, "Unsqueeze": unsqueeze}
