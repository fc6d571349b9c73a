"""`quantize(x, spec) -> QTensor` for every scheme and granularity.

Uniform schemes follow ONNX QuantizeLinear exactly (fp32 division for fp32 inputs,
clamp, then rounding), so codes match ONNX Runtime bit for bit. Scales come from a
range (lo, hi) per slice of the granularity: from `value_range` when a calibration
observer produced one, otherwise from the tensor itself with the spec's observer.
"""

from __future__ import annotations

import numpy as np

from qsim.quant.qtensor import QTensor, expand_param, param_shape
from qsim.quant.rounding import apply_rounding, round_half_even, round_to_bf16
from qsim.quant.spec import QuantSpec

POW2_MAX_LEVELS = 31  # exponent levels beyond 2^-30·amax are indistinguishable from 0


# -- input checks -------------------------------------------------------------
def check_tensor(x, name: str = "x", purpose: str = "nothing to quantize") -> np.ndarray:
    """A finite, non-empty float array, or an error saying what is wrong and where.

    `purpose` finishes the message for an empty input (why a value is needed).
    """
    if isinstance(x, (list, tuple, int, float)) or np.isscalar(x):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (or array-like of numbers), got {type(x).__name__}")
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); {purpose}")
    if x.dtype.kind not in "fc":
        x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        where = [tuple(int(i) for i in idx) for idx in np.argwhere(bad)[:5]]
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} Inf value(s) of {x.size}; first at index "
            f"{', '.join(map(str, where))}"
        )
    return x


def resolve_axis(spec: QuantSpec, ndim: int, axis: int | None) -> int | None:
    """Channel axis defaults to 0 (output channels); group/block axis to -1 (reduction)."""
    if spec.granularity in ("tensor", "global") and spec.scheme not in ("binary", "ternary"):
        return None
    if spec.granularity in ("tensor", "global"):
        return None
    if axis is None:
        axis = 0 if spec.granularity == "channel" else -1
    if ndim == 0:
        raise ValueError(f"granularity {spec.granularity!r} needs a tensor with at least one axis, got a scalar")
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"axis must be an int in [{-ndim}, {ndim - 1}] for a {ndim}-D tensor, got {axis!r}")
    return int(axis) % ndim


# -- slices of the granularity ----------------------------------------------
def slice_rows(x: np.ndarray, granularity: str, axis: int | None, group_size: int | None) -> np.ndarray:
    """2-D view with one row per scale (ONNX order); ragged blocks padded with NaN."""
    if granularity in ("tensor", "global"):
        return x.reshape(1, -1)
    if granularity == "channel":
        return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    moved = np.moveaxis(x, axis, -1)
    d = moved.shape[-1]
    blocks = -(-d // group_size)
    if blocks * group_size != d:
        pad = [(0, 0)] * (moved.ndim - 1) + [(0, blocks * group_size - d)]
        moved = np.pad(moved.astype(np.float64), pad, constant_values=np.nan)
    return moved.reshape(-1, group_size)


def rows_to_param(values: np.ndarray, shape, granularity: str, axis: int | None, group_size: int | None) -> np.ndarray:
    """Inverse of `slice_rows` for one value per row."""
    if granularity in ("tensor", "global"):
        return np.asarray(values).reshape(())
    if granularity == "channel":
        return np.asarray(values).reshape(shape[axis])
    moved_shape = tuple(np.delete(np.array(shape), axis)) + (-(-shape[axis] // group_size),)
    return np.moveaxis(np.asarray(values).reshape(moved_shape), -1, axis)


def observe(x: np.ndarray, spec: QuantSpec, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per slice of the granularity, by the spec's calibration method."""
    rows = slice_rows(x, spec.granularity, axis, spec.group_size)
    if spec.calibration in ("minmax", "moving_average"):
        # A single tensor has no history: moving average reduces to min-max.
        lo, hi = np.nanmin(rows, axis=1), np.nanmax(rows, axis=1)
    else:
        from qsim.quant.calibration import range_of_rows

        lo, hi = range_of_rows(rows, spec)
    to_param = lambda v: rows_to_param(v, x.shape, spec.granularity, axis, spec.group_size)  # noqa: E731
    return to_param(lo).astype(np.float64), to_param(hi).astype(np.float64)


# -- scales -------------------------------------------------------------------
def round_scale(s: np.ndarray, scale_dtype: str) -> np.ndarray:
    """Round positive scales to their storage format (never to zero)."""
    s = np.asarray(s, dtype=np.float64)
    if scale_dtype == "fp32":
        out = s.astype(np.float32).astype(np.float64)
        tiny = float(np.finfo(np.float32).smallest_subnormal)
    elif scale_dtype == "fp16":
        out = np.minimum(s, float(np.finfo(np.float16).max)).astype(np.float16).astype(np.float64)
        tiny = float(np.finfo(np.float16).smallest_subnormal)
    elif scale_dtype == "bf16":
        out = round_to_bf16(s)
        tiny = 2.0 ** -133
    elif scale_dtype == "pow2":
        # Round up, so the power-of-two scale never clips more than the exact one.
        out = np.exp2(np.maximum(np.ceil(np.log2(s)), -149))  # never below fp32's smallest subnormal
        tiny = 2.0 ** -149
    else:
        raise ValueError(f"scale_dtype {scale_dtype!r} is not a uniform-scheme scale format")
    return np.where(out > 0, out, tiny)


def uniform_params(lo, hi, spec: QuantSpec) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of the affine/symmetric schemes from a range (torch/ONNX rules)."""
    qmin, qmax = spec.qrange
    lo, hi = np.minimum(np.asarray(lo, np.float64), 0.0), np.maximum(np.asarray(hi, np.float64), 0.0)
    if spec.scheme == "affine":
        s = (hi - lo) / (qmax - qmin)
        s = round_scale(np.where(s > 0, s, 1.0), spec.scale_dtype)
        z = np.clip(qmin - round_half_even(lo / s), qmin, qmax).astype(np.int64)
        return s, z
    amax = np.maximum(np.abs(lo), np.abs(hi))
    if spec.signed and not spec.restricted:
        denom = (qmax - qmin) / 2.0  # torch: amax/127.5 for int8
    else:
        denom = float(qmax)
    s = amax / denom
    s = round_scale(np.where(s > 0, s, 1.0), spec.scale_dtype)
    return s, np.zeros(np.shape(s), dtype=np.int64)


def _code_dtype(qmin: int, qmax: int):
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= qmin and qmax <= info.max:
            return dt
    return np.int64


def _divide(x: np.ndarray, s_full: np.ndarray) -> np.ndarray:
    """x / s in the precision ONNX Runtime uses: fp32 for fp32 (or narrower) input."""
    if x.dtype.itemsize <= 4:
        return x.astype(np.float32) / s_full.astype(np.float32)
    return x / s_full


# -- the schemes -----------------------------------------------------------------
def _uniform(x, spec, axis, value_range, scale, zero_point) -> QTensor:
    qmin, qmax = spec.qrange
    shape_p = param_shape(x.shape, spec.granularity, axis, spec.group_size)
    if scale is None:
        lo, hi = value_range if value_range is not None else observe(x, spec, axis)
        s, z = uniform_params(np.broadcast_to(lo, shape_p), np.broadcast_to(hi, shape_p), spec)
    else:
        s = check_scale(scale, shape_p)
        z = check_zero_point(zero_point, shape_p, qmin, qmax)
    s_full = expand_param(s, x.shape, spec.granularity, axis, spec.group_size)
    z_full = expand_param(z, x.shape, spec.granularity, axis, spec.group_size)
    v = _divide(x, s_full)
    # Clamp before rounding, as MLAS does; identical for integer bounds, and avoids overflow.
    v = np.clip(v, qmin - z_full, qmax - z_full)
    q = apply_rounding(v, spec.rounding, spec.seed) + z_full
    q = np.clip(q, qmin, qmax).astype(_code_dtype(qmin, qmax))
    return QTensor(q=q, scale=np.asarray(s, np.float64), zero_point=np.asarray(z, np.int64), spec=spec,
                   axis=axis, qmin=qmin, qmax=qmax, has_zero_point=spec.scheme == "affine")


def _pow2(x, spec, axis, value_range) -> QTensor:
    """Levels {0, ±2^e}: nearest level in the linear domain (INQ thresholds), ties up."""
    n_levels = min((1 << (spec.bits - 1)) - 1 if spec.signed else (1 << spec.bits) - 1, POW2_MAX_LEVELS)
    lo, hi = value_range if value_range is not None else observe(x, spec, axis)
    amax = np.maximum(np.abs(lo), np.abs(hi)) if spec.signed else np.maximum(hi, 0.0)
    amax = np.where(amax > 0, amax, 1.0)
    e_top = np.floor(np.log2(amax * 4.0 / 3.0))  # INQ: n1 = floor(log2(4·max/3))
    smallest = np.exp2(e_top - (n_levels - 1))
    s_full = expand_param(smallest, x.shape, spec.granularity, axis, spec.group_size)
    mag = np.abs(x) / s_full if spec.signed else np.maximum(x, 0) / s_full
    # Level 2^k (k=0..n-1) for mag in [0.75·2^k, 1.5·2^k); below 0.5 → 0.
    k = np.clip(np.floor(np.log2(np.maximum(mag, 1e-300) * 4.0 / 3.0)), 0, n_levels - 1)
    level = np.where(mag >= 0.5, np.exp2(k), 0.0)
    q = (np.sign(x) * level if spec.signed else level).astype(np.int64)
    top = 1 << (n_levels - 1)
    return QTensor(q=q, scale=np.asarray(smallest, np.float64), zero_point=np.zeros(np.shape(smallest), np.int64),
                   spec=spec, axis=axis, qmin=-top if spec.signed else 0, qmax=top)


def _binary_ternary(x, spec, axis) -> QTensor:
    """XNOR-Net binary (α = mean|w|) and TWN ternary (Δ = 0.7·E|w|, α = mean of |w| > Δ)."""
    rows = np.abs(slice_rows(x, spec.granularity, axis, spec.group_size))
    if spec.scheme == "binary":
        alpha = np.nanmean(rows, axis=1)
    else:
        delta = 0.7 * np.nanmean(rows, axis=1)
        keep = rows > delta[:, None]
        count = keep.sum(axis=1)
        alpha = np.where(count > 0, np.where(keep, rows, 0.0).sum(axis=1) / np.maximum(count, 1), 0.0)
    to_param = lambda v: rows_to_param(v, x.shape, spec.granularity, axis, spec.group_size)  # noqa: E731
    alpha = round_scale(np.where(alpha > 0, alpha, 1.0), spec.scale_dtype)
    alpha_p = to_param(alpha)
    if spec.scheme == "binary":
        q = np.where(x >= 0, 1, -1).astype(np.int8)
    else:
        delta_full = expand_param(to_param(delta), x.shape, spec.granularity, axis, spec.group_size)
        q = (np.sign(x) * (np.abs(x) > delta_full)).astype(np.int8)
    return QTensor(q=q, scale=np.asarray(alpha_p, np.float64), zero_point=np.zeros(np.shape(alpha_p), np.int64),
                   spec=spec, axis=axis, qmin=-1, qmax=1)


def _kmeans(x, spec) -> QTensor:
    """Deep-Compression codebook: 2^bits centroids, linear init, Lloyd iterations (1-D)."""
    if spec.granularity not in ("tensor", "global"):
        raise ValueError(f"scheme 'kmeans' shares one codebook per tensor; granularity must be 'tensor' or "
                         f"'global', got {spec.granularity!r}")
    flat = x.astype(np.float64).ravel()
    k = 1 << spec.bits
    distinct = np.unique(flat)
    if distinct.size <= k:  # every value gets its own centroid: exact, and re-quantizing reproduces it
        codebook = np.concatenate([distinct, np.full(k - distinct.size, distinct[-1])]).astype(np.float32)
        idx = _nearest(flat, codebook.astype(np.float64)).reshape(x.shape)
        return QTensor(q=idx.astype(_code_dtype(0, k - 1)), scale=np.ones(()), zero_point=np.zeros((), np.int64),
                       spec=spec, axis=None, qmin=0, qmax=k - 1, codebook=codebook)
    centroids = np.linspace(flat.min(), flat.max(), k)
    for _ in range(30):
        idx = _nearest(flat, centroids)
        sums = np.bincount(idx, weights=flat, minlength=k)
        counts = np.bincount(idx, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.array_equal(new, centroids):
            break
        centroids = np.sort(new)
    codebook = centroids.astype(np.float32)
    idx = _nearest(flat, codebook.astype(np.float64)).reshape(x.shape)
    return QTensor(q=idx.astype(_code_dtype(0, k - 1)), scale=np.ones(()), zero_point=np.zeros((), np.int64),
                   spec=spec, axis=None, qmin=0, qmax=k - 1, codebook=codebook)


def _nearest(values: np.ndarray, sorted_centroids: np.ndarray) -> np.ndarray:
    mids = (sorted_centroids[1:] + sorted_centroids[:-1]) / 2.0
    return np.searchsorted(mids, values, side="left").astype(np.int64)


# -- parameter checks ---------------------------------------------------------
def check_scale(scale, shape) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if s.shape != tuple(shape):
        try:
            s = np.broadcast_to(s, shape).copy()
        except ValueError:
            raise ValueError(f"scale must have shape {tuple(shape)} for this granularity, got {np.shape(scale)}") from None
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"scale must be finite and > 0 everywhere, got {s.ravel()[:8]}")
    return s


def check_zero_point(zero_point, shape, qmin: int, qmax: int) -> np.ndarray:
    if zero_point is None:
        return np.zeros(shape, dtype=np.int64)
    z = np.asarray(zero_point)
    if z.dtype.kind == "f" and not np.all(z == np.round(z)):
        raise ValueError(f"zero_point must be integers, got {z.ravel()[:8]}")
    z = np.broadcast_to(z.astype(np.int64), shape).copy()
    if np.any(z < qmin) or np.any(z > qmax):
        raise ValueError(f"zero_point must lie in the code range [{qmin}, {qmax}], got {z.ravel()[:8]}")
    return z


# -- public entry ---------------------------------------------------------------
def quantize(
    x,
    spec: QuantSpec,
    axis: int | None = None,
    *,
    value_range=None,
    scale=None,
    zero_point=None,
) -> QTensor:
    """Quantize `x` according to `spec`.

    axis         channel axis (`channel`, default 0) or blocked axis (`group` and the
                 block formats, default -1, the reduction axis of an (N, K) weight).
    value_range  (lo, hi) from a calibration observer, scalars or arrays in the ONNX
                 parameter layout; `global` granularity passes the model-wide range here.
    scale, zero_point  fixed parameters (uniform schemes), e.g. from an ONNX model.
    """
    if not isinstance(spec, QuantSpec):
        raise TypeError(f"spec must be a qsim.quant.QuantSpec, got {type(spec).__name__}")
    x = check_tensor(x)
    axis = resolve_axis(spec, x.ndim, axis)
    if spec.granularity == "group" and spec.group_size is None:
        raise ValueError("granularity 'group' needs group_size")
    if spec.is_block_format:
        from qsim.quant.formats import quantize_block

        return quantize_block(x, spec, axis)
    if scale is not None and spec.scheme not in ("affine", "symmetric"):
        raise ValueError(f"fixed scale/zero_point are supported for affine and symmetric schemes, not {spec.scheme!r}")
    if spec.scheme in ("affine", "symmetric"):
        return _uniform(x, spec, axis, value_range, scale, zero_point)
    if spec.scheme == "pow2":
        return _pow2(x, spec, axis, value_range)
    if spec.scheme in ("binary", "ternary"):
        return _binary_ternary(x, spec, axis)
    return _kmeans(x, spec)


def fake_quantize(x, spec: QuantSpec, axis: int | None = None, **kwargs) -> np.ndarray:
    """dequantize(quantize(x)): the float values the quantized tensor stands for."""
    return quantize(x, spec, axis, **kwargs).dequantize(np.result_type(np.asarray(x).dtype, np.float32))
