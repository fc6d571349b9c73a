"""Calibration observers: activation data in, quantization range (lo, hi) out.

Where each procedure comes from (exact rules: ../shared/REFERENCE.md §2):

* ``minmax`` — PyTorch ``MinMaxObserver``: running min/max over all batches, the range
  widened to include 0 (``lo = min(min, 0)``, ``hi = max(max, 0)``).
* ``moving_average`` — PyTorch ``MovingAverageMinMaxObserver``: the first batch
  initialises, then ``xmin ← (1-c)·xmin + c·min(X)`` (same for max), c = 0.01. The range
  is widened to include 0 like min-max (torch does this when it computes qparams).
* ``percentile``, ``mse``, ``entropy`` — NVIDIA TensorRT pytorch-quantization
  ``calib/histogram.py`` (``HistogramCalibrator`` and ``_compute_amax_{percentile,mse,
  entropy}``): a 2048-bin histogram of |x| over [0, max|x|] that grows by appending bins
  of the same width when a later batch exceeds it, then

  - percentile: ``amax = edges[idx]``, idx the first bin whose cumulative count reaches
    p % of all counts (pytorch-quantization's choice: the *lower* edge of the bin in
    which the CDF reaches p, so even p = 100 returns the lower edge of the last bin);
  - mse: amax ranges over the bin centres i = 128..n-1 (stride 1); each is scored by
    ``Σ count·(Q(c) − c)²`` over all centres c, with TensorRT's symmetric fake quantizer
    ``Q(c) = clamp(rint(c·s), ·, M)/s``, ``s = M/amax``, ``M = 2^(b−1+unsigned) − 1``;
    the first minimum wins (1-bit signed has M = 0: every value maps to 0). Note M = 127
    for int8: TensorRT's scale, not the amax/127.5 that `quantize` later uses for a
    full-range symmetric spec;
  - entropy: TensorRT's KL-divergence search (``_compute_amax_entropy``): bin 0 is
    replaced by bin 1 (suppresses the spike of zeros after ReLU); for each
    i ∈ [128, n]: P = bins[:i] with Σ bins[i:] added to its last bin, Q = bins[:i] merged
    into 2^(b−1) levels (2^b if unsigned), each level's mass spread evenly over its
    non-zero bins (zero bins stay zero); amax = ``edges[i]`` of the LAST i that minimises
    KL(P‖Q) (``scipy.stats.entropy``).

  The histogram is of |x| (TensorRT's calibrators are symmetric), so these methods
  return one magnitude amax. qsim turns it into a range: ``(-amax, amax)`` when any
  calibration value was negative, ``(0, amax)`` when all data were ≥ 0 (so unsigned or
  affine specs do not waste half their codes on a sign the data never has). The spec's
  bits and signedness only enter the mse quantizer and the entropy level count.

Deviations from pytorch-quantization, all deliberate:

* Entropy below 128 magnitude levels (signed < 8 bits, unsigned < 7 bits): TensorRT's search
  folds the clipped tail into P's last bin, so clipping looks free; with 2–4 bits (or a spiky
  histogram, e.g. 17-valued pixels) it then keeps 1/16 of the range and the network collapses
  (digits CNN A4: 21 % vs 98 % min-max). There qsim uses a level-aware search
  (`_entropy_levels`): P is the whole histogram, Q spreads each real quantizer cell's mass
  (nearest of nlev levels, the tail in the top cell) over its non-zero bins. From 128 levels
  up the literal TensorRT search is kept (`amax_entropy(..., tensorrt=True)` forces it).

* Binning is exact with respect to the stored edges (value v goes to bin j when
  edges[j] ≤ v < edges[j+1], the top bin closed), like ``np.histogram`` with explicit
  edges; torch.histc's float32 binning can move values at a bin boundary.
* Arithmetic is float64 throughout (TensorRT's mse search runs in float32 on the GPU).
* A KL candidate with an all-zero Q (TensorRT gets NaN from 0/0 and its argmin then
  picks that NaN) counts as +inf, i.e. is never chosen.
* Batches that are all zero are counted in bin 0 once the first non-zero batch fixes
  the bin width (TensorRT would make a histogram over [0, 0]); if no batch was ever
  non-zero, the range is (0, 0).
* The histogram may grow to at most ``CALIBRATION_DEFAULTS["max_bins"]`` bins (a later
  batch 512× larger than the first); beyond that `update` raises instead of allocating
  without bound.

Speed: the entropy search gets KL(P‖Q) of all candidates from prefix sums (Σ P log P −
Σ P log Q per merged level, O(levels) per candidate, a Numba kernel); the candidates
within 1e-9 of the minimum are then re-scored with the literal per-candidate procedure,
so the chosen i is the one TensorRT's loop picks even when candidates tie. The mse
search is a Numba loop over candidates × non-zero bins.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from qsim.quant.quantize import check_tensor
from qsim.quant.spec import QuantSpec

__all__ = [
    "CALIBRATION_DEFAULTS", "Observer", "MinMaxObserver", "MovingAverageObserver", "HistogramObserver",
    "make_observer", "range_of_rows", "histogram_amax", "amax_percentile", "amax_mse", "amax_entropy",
]

CALIBRATION_DEFAULTS = {
    "bins": 2048,          # histogram bins of the first batch (pytorch-quantization, torch HistogramObserver)
    "start_bin": 128,      # first candidate of the mse and entropy searches (pytorch-quantization)
    "stride": 1,           # step between candidates (pytorch-quantization)
    "percentile": 99.99,   # p of the percentile method (pytorch-quantization; QuantSpec.percentile)
    "c": 0.01,             # moving-average constant (torch MovingAverageMinMaxObserver averaging_constant)
    "max_bins": 1 << 20,   # qsim's cap on histogram growth
}

_START_BIN, _STRIDE = CALIBRATION_DEFAULTS["start_bin"], CALIBRATION_DEFAULTS["stride"]
_KL_TIE_TOL = 1e-9          # candidates this close to the fast KL minimum are re-scored exactly
_CHUNK_ELEMENTS = 1 << 21   # working-set cap (elements) of the row-wise histograms


# -- input checks -------------------------------------------------------------
def _check_batch(x, n: int) -> np.ndarray:
    """A finite, non-empty float array of one calibration batch."""
    return check_tensor(x, f"calibration batch {n}", "an observer needs at least one value per batch")


def _check_spec(spec) -> QuantSpec:
    if not isinstance(spec, QuantSpec):
        raise TypeError(f"spec must be a qsim.quant.QuantSpec, got {type(spec).__name__}")
    return spec


def _check_hist(counts, edges) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts)
    edges = np.asarray(edges, dtype=np.float64)
    if counts.ndim != 1 or edges.ndim != 1 or edges.size != counts.size + 1:
        raise ValueError(f"need 1-D counts (n,) and edges (n+1,), got shapes {counts.shape} and {edges.shape}")
    if counts.dtype.kind not in "iu" and not np.all(counts == np.round(counts)):
        raise ValueError("histogram counts must be whole numbers")
    if np.any(counts < 0):
        raise ValueError("histogram counts must be >= 0")
    return counts.astype(np.int64), edges


# -- binning --------------------------------------------------------------------
def _bin_index(v: np.ndarray, edges: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Bin of each value, exact with respect to `edges` (half-open bins, last one closed).

    v (R, L) values in [0, edges[:, -1]]; edges (R, n+1) increasing; width (R,) nominal bin
    width. A first guess floor(v/width) is off by at most one bin; fix it against the edges.
    """
    n = edges.shape[1] - 1
    idx = np.clip(np.floor(v / width[:, None]), 0, n - 1).astype(np.intp)
    for _ in range(8):
        down = v < np.take_along_axis(edges, idx, axis=1)
        up = (v >= np.take_along_axis(edges, idx + 1, axis=1)) & (idx < n - 1)
        if not (down.any() or up.any()):
            return idx
        idx = idx - down + up
    raise RuntimeError("histogram binning did not converge (edges not increasing?)")  # pragma: no cover


def _first_edges(amax: np.ndarray, bins: int) -> np.ndarray:
    """Edges of a first histogram: linspace(0, amax, bins+1) per row (pytorch-quantization)."""
    return np.linspace(0.0, amax, bins + 1, axis=-1)


def _histograms(v: np.ndarray, edges: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Counts (R, n) of v (R, L) over per-row edges (R, n+1); entries where `valid` is False
    are skipped. Works through column blocks so the temporaries stay small."""
    n_rows, length = v.shape
    n = edges.shape[1] - 1
    width = edges[:, 1] - edges[:, 0]
    offset = (np.arange(n_rows) * n)[:, None]
    counts = np.zeros(n_rows * n, dtype=np.int64)
    block = max(1, _CHUNK_ELEMENTS // n_rows)
    for s in range(0, length, block):
        flat = offset + _bin_index(v[:, s:s + block], edges, width)
        if valid is not None:
            flat = flat[valid[:, s:s + block]]
        counts += np.bincount(flat.ravel(), minlength=n_rows * n)
    return counts.reshape(n_rows, n)


# -- amax from a histogram --------------------------------------------------------
def amax_percentile(counts, edges, percentile: float = CALIBRATION_DEFAULTS["percentile"]) -> float:
    """pytorch-quantization `_compute_amax_percentile`: edges[idx], idx the first bin whose
    cumulative count is >= p/100 of the total (the lower edge of that bin)."""
    counts, edges = _check_hist(counts, edges)
    if not 0.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    cum = np.cumsum(counts)
    if cum[-1] == 0:
        raise ValueError("histogram is empty (all counts are 0)")
    idx = int(np.searchsorted(cum, percentile / 100.0 * cum[-1], side="left"))
    return float(edges[idx])


def _mse_max_bound(bits: int, unsigned: bool) -> float:
    return 2.0 ** (bits - 1 + int(unsigned)) - 1.0


@njit(cache=True)
def _mse_search(centers, counts, start, stride, max_bound, min_bound):  # pragma: no cover - compiled
    """Per row: the centre centers[r, i] (i = start, start+stride, ... < n) minimising
    Σ_j counts[r, j]·(Q(c_j) − c_j)², Q(c) = clamp(rint(c·s), min_bound, max_bound)/s,
    s = max_bound/amax; first minimum wins. Only non-zero counts enter the sum (in bin order)."""
    n_rows, n = counts.shape
    out = np.empty(n_rows)
    c = np.empty(n)
    w = np.empty(n)
    for r in range(n_rows):
        m = 0
        for j in range(n):
            if counts[r, j] > 0:
                c[m] = centers[r, j]
                w[m] = counts[r, j]
                m += 1
        best_err = np.inf
        best = centers[r, start]
        for i in range(start, n, stride):
            amax = centers[r, i]
            err = 0.0
            if max_bound <= 0.0:  # 1-bit signed: TensorRT's grid is {0}; every value maps to 0
                for k in range(m):
                    err += w[k] * c[k] * c[k]
            else:
                scale = max_bound / amax
                for k in range(m):
                    q = np.rint(c[k] * scale)
                    q = min(max(q, min_bound), max_bound)
                    d = q / scale - c[k]
                    err += w[k] * d * d
            if err < best_err:
                best_err = err
                best = amax
        out[r] = best
    return out


def _mse_rows(counts: np.ndarray, edges: np.ndarray, bits: int, unsigned: bool, start: int, stride: int) -> np.ndarray:
    """`amax_mse` of each row of (R, n) counts and (R, n+1) edges."""
    centers = (edges[:, 1:] + edges[:, :-1]) / 2.0
    max_bound = _mse_max_bound(bits, unsigned)
    min_bound = 0.0 if unsigned else -max_bound - 1.0
    return _mse_search(np.ascontiguousarray(centers), np.ascontiguousarray(counts, dtype=np.int64),
                       int(start), int(stride), max_bound, min_bound)


def amax_mse(counts, edges, bits: int = 8, unsigned: bool = False,
             start_bin: int = _START_BIN, stride: int = _STRIDE) -> float:
    """pytorch-quantization `_compute_amax_mse`: the bin centre (index start_bin..n-1, step
    stride) that minimises Σ count·(Q(c) − c)² over all centres; first minimum wins."""
    counts, edges = _check_hist(counts, edges)
    if len(counts) <= start_bin:
        raise ValueError(f"mse search needs more than start_bin={start_bin} bins, histogram has {len(counts)}")
    return float(_mse_rows(counts[None, :], edges[None, :], bits, unsigned, start_bin, stride)[0])


def _kl_direct(bins: np.ndarray, i: int, nlev: int) -> float:
    """KL(P‖Q) of one candidate i, computed literally as TensorRT's loop body does
    (the KL itself as `scipy.stats.entropy(P, Q)` computes it, minus its wrapper overhead)."""
    from scipy.special import rel_entr

    level = np.digitize(np.arange(i), np.linspace(0, i, num=nlev + 1)) - 1
    nonzero = bins[:i] != 0
    sums = np.bincount(level[nonzero], weights=bins[:i][nonzero].astype(np.float64), minlength=nlev)
    nnz = np.bincount(level[nonzero], minlength=nlev)
    dens = np.divide(sums, nnz, out=np.zeros(nlev), where=nnz > 0)
    q = np.where(nonzero, dens[level], 0.0)
    p = bins[:i].astype(np.float64)
    p[-1] += bins[i:].sum()
    q_sum = q.sum()
    if q_sum == 0:
        return math.inf
    return float(np.sum(rel_entr(p / p.sum(), q / q_sum)))


def _xlogx(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


@njit(cache=True)
def _kl_all(bins, C, NZ, L, cand, nlev, total):  # pragma: no cover - compiled
    """KL(P‖Q) of every candidate i from prefix sums (C: counts, NZ: non-zero bins, L: x·log x).

    With Q_j = d_k (mass/non-zero bins of level k) on the non-zero bins of level k and P equal
    to bins[:i] except P[i-1] += tail:  KL = (ΣP log P − ΣP log Q)/total − log total + log Σ Q.
    Level k holds the bins j with linspace(0, i, nlev+1)[k] <= j < [k+1] (np.digitize), i.e.
    j ∈ [ceil(k·i/nlev), ceil((k+1)·i/nlev)); the step is computed as np.linspace does.
    +inf where P > 0 but Q = 0 (empty last bin with a tail) or Q is all zero.
    """
    out = np.empty(len(cand))
    log_total = np.log(total)
    bnd = np.empty(nlev + 1, np.int64)
    for t in range(len(cand)):
        i = cand[t]
        step = i / nlev
        for k in range(nlev):
            bnd[k] = np.int64(np.ceil(k * step))
        bnd[nlev] = i
        last = i - 1
        tail = total - C[i]
        sq = C[i]
        if sq == 0 or (bins[last] == 0 and tail > 0):
            out[t] = np.inf
            continue
        p_log_q = 0.0
        d_last = 1.0
        for k in range(nlev):
            lo = bnd[k]
            hi = bnd[k + 1]
            mass = C[hi] - C[lo]
            if mass > 0:
                d = mass / (NZ[hi] - NZ[lo])
                p_log_q += mass * np.log(d)
                if lo <= last and last < hi:
                    d_last = d
        if tail > 0:
            p_log_q += tail * np.log(d_last)
        p_last = bins[last] + tail
        p_log_p = L[last] + p_last * np.log(p_last) if p_last > 0 else L[last]
        out[t] = (p_log_p - p_log_q) / total - log_total + np.log(sq)
    return out


def _entropy_levels(bins: np.ndarray, edges: np.ndarray, cand: np.ndarray, nlev: int) -> float:
    """qsim's entropy search for few levels: amax = edges[i] of the last candidate minimising
    KL(P‖Q) where P is the WHOLE histogram (nothing folded) and Q spreads the mass of each
    quantizer cell evenly over that cell's non-zero bins. The cells are those of the real
    quantizer: nlev magnitude levels 0, s, …, (nlev−1)·s with s = amax/(nlev−1), bins assigned
    to the nearest level by their centre, and everything above the top level (the clipped
    tail) in the top level's cell. Clipping therefore costs what it loses — the tail's detail
    merged into one level — instead of being free, which is what makes TensorRT's folded P
    collapse at 2–4 bits (a spiky histogram folded into one bin has KL 0).

    ΣP log P is the same for every candidate, so the search maximises Σ_cells m·log(m/nnz)."""
    n = len(bins)
    C = np.concatenate(([0.0], np.cumsum(bins, dtype=np.float64)))
    NZ = np.concatenate(([0], np.cumsum(bins != 0)))
    k = np.arange(1, nlev, dtype=np.float64)                       # levels 1..nlev-1 start a cell
    # bin j (centre (j + ½)·w) belongs to level round((j + ½)/step), step = i/(nlev−1) bins
    step = cand[:, None].astype(np.float64) / (nlev - 1)
    lo = np.clip(np.ceil((k[None, :] - 0.5) * step - 0.5), 0, n).astype(np.int64)
    bounds = np.concatenate((np.zeros((len(cand), 1), np.int64), lo, np.full((len(cand), 1), n)), axis=1)
    bounds = np.maximum.accumulate(bounds, axis=1)
    mass = C[bounds[:, 1:]] - C[bounds[:, :-1]]
    nnz = NZ[bounds[:, 1:]] - NZ[bounds[:, :-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(mass > 0, mass * np.log(mass / np.maximum(nnz, 1)), 0.0).sum(axis=1)
    best = np.max(score)
    tied = np.flatnonzero(score >= best - 1e-9 * max(1.0, abs(best)))
    return float(edges[cand[tied[-1]]])


def amax_entropy(counts, edges, bits: int = 8, unsigned: bool = False,
                 start_bin: int = _START_BIN, stride: int = _STRIDE, tensorrt: bool | None = None) -> float:
    """pytorch-quantization `_compute_amax_entropy`: edges[i] of the last i in
    [start_bin, n] (step stride) minimising KL(P‖Q); see the module docstring.

    `tensorrt=None` (default) uses TensorRT's literal search where the quantizer has at least
    128 magnitude levels (8-bit signed, 7-bit unsigned and wider: what it was designed for) and
    qsim's level-aware search (`_entropy_levels`) below that; True/False force one of them."""
    counts, edges = _check_hist(counts, edges)
    bins = counts.copy()
    n = len(bins)
    if n < 2:
        raise ValueError("entropy search needs a histogram of at least 2 bins")
    bins[0] = bins[1]
    nlev = 1 << (bits - 1 + int(unsigned))
    if tensorrt is None:
        tensorrt = nlev >= 128 or nlev < 2
    cand = np.arange(start_bin, n + 1, stride, dtype=np.int64)
    if cand.size == 0:
        raise ValueError(f"entropy search needs at least start_bin={start_bin} bins, histogram has {n}")
    total = int(bins.sum())
    if total == 0:
        raise ValueError("histogram is empty (all counts are 0 after TensorRT's bin[0] = bin[1])")
    if not tensorrt:
        if nlev < 2:
            raise ValueError("the level-aware entropy search needs at least 2 magnitude levels (bits >= 2 signed)")
        return _entropy_levels(bins, edges, cand, nlev)
    C = np.concatenate(([0], np.cumsum(bins)))
    NZ = np.concatenate(([0], np.cumsum(bins != 0)))
    L = np.concatenate(([0.0], np.cumsum(_xlogx(bins))))
    kl = _kl_all(bins, C, NZ, L, cand, nlev, total)

    best = float(np.min(kl))
    if not math.isfinite(best):
        return float(edges[cand[-1]])
    # Rounding differs from TensorRT's per-candidate arithmetic by ~1e-13 at most: re-score the
    # candidates near the minimum literally, so ties resolve exactly as TensorRT's loop does.
    near = np.flatnonzero(kl <= best + _KL_TIE_TOL * max(1.0, abs(best)))
    exact = np.array([_kl_direct(bins, int(cand[j]), nlev) for j in near])
    chosen = near[len(near) - 1 - int(np.argmin(exact[::-1]))]
    return float(edges[cand[chosen]])


def histogram_amax(method: str, counts, edges, spec: QuantSpec,
                   start_bin: int = _START_BIN, stride: int = _STRIDE) -> float:
    """amax of a |x| histogram by `method` (percentile, mse or entropy) with the spec's options."""
    if method == "percentile":
        return amax_percentile(counts, edges, spec.percentile)
    if method == "mse":
        return amax_mse(counts, edges, spec.bits, not spec.signed, start_bin, stride)
    if method == "entropy":
        return amax_entropy(counts, edges, spec.bits, not spec.signed, start_bin, stride)
    raise ValueError(f"histogram method must be one of ['entropy', 'mse', 'percentile'], got {method!r}")


# -- observers --------------------------------------------------------------------
class Observer:
    """Base class: `update(x)` once per calibration batch, then `range()` -> (lo, hi)."""

    method = ""

    def __init__(self, spec: QuantSpec):
        self.spec = _check_spec(spec)
        self.n_batches = 0

    def update(self, x) -> None:
        x = _check_batch(x, self.n_batches)
        self._update(x)
        self.n_batches += 1

    def range(self) -> tuple[float, float]:
        if self.n_batches == 0:
            raise ValueError(f"{type(self).__name__}.range() called before any update(); feed at least one "
                             f"calibration batch first")
        lo, hi = self._range()
        return float(lo), float(hi)

    def _update(self, x: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _range(self) -> tuple[float, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, batches={self.n_batches})"


class MinMaxObserver(Observer):
    """Running min/max over all batches; range widened to include 0."""

    method = "minmax"

    def __init__(self, spec: QuantSpec):
        super().__init__(spec)
        self.min_val = math.inf
        self.max_val = -math.inf

    def _update(self, x):
        self.min_val = min(self.min_val, float(np.min(x)))
        self.max_val = max(self.max_val, float(np.max(x)))

    def _range(self):
        return min(self.min_val, 0.0), max(self.max_val, 0.0)


class MovingAverageObserver(Observer):
    """xmin ← (1-c)·xmin + c·min(X), same for max; the first batch initialises.

    `min_val`/`max_val` hold the raw averages; `range()` widens them to include 0.
    """

    method = "moving_average"

    def __init__(self, spec: QuantSpec, c: float = CALIBRATION_DEFAULTS["c"]):
        super().__init__(spec)
        if not 0.0 < float(c) <= 1.0:
            raise ValueError(f"moving-average constant c must be in (0, 1], got {c!r}")
        self.c = float(c)
        self.min_val = math.nan
        self.max_val = math.nan

    def _update(self, x):
        lo, hi = float(np.min(x)), float(np.max(x))
        if self.n_batches == 0:
            self.min_val, self.max_val = lo, hi
        else:
            c = self.c
            self.min_val = (1.0 - c) * self.min_val + c * lo
            self.max_val = (1.0 - c) * self.max_val + c * hi

    def _range(self):
        return min(self.min_val, 0.0), max(self.max_val, 0.0)


class HistogramObserver(Observer):
    """Histogram of |x| (TensorRT pytorch-quantization), for percentile, mse and entropy.

    The first batch with a non-zero value fixes `bins` bins over [0, max|x|]; a later batch
    with a larger max appends bins of the same width until its max is covered. `counts`
    and `edges` expose the histogram.
    """

    def __init__(self, spec: QuantSpec, method: str | None = None, *, bins: int = CALIBRATION_DEFAULTS["bins"],
                 start_bin: int = CALIBRATION_DEFAULTS["start_bin"], stride: int = CALIBRATION_DEFAULTS["stride"],
                 max_bins: int = CALIBRATION_DEFAULTS["max_bins"]):
        super().__init__(spec)
        method = spec.calibration if method is None else method
        if method not in ("percentile", "mse", "entropy"):
            raise ValueError(f"HistogramObserver method must be one of ['entropy', 'mse', 'percentile'], "
                             f"got {method!r}")
        for name, v, least in (("bins", bins, 2), ("start_bin", start_bin, 1), ("stride", stride, 1)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
        if start_bin >= bins:
            raise ValueError(f"start_bin ({start_bin}) must be smaller than bins ({bins})")
        self.method = method
        self.bins, self.start_bin, self.stride, self.max_bins = int(bins), int(start_bin), int(stride), int(max_bins)
        self.counts: np.ndarray | None = None
        self.edges: np.ndarray | None = None
        self.any_negative = False
        self._zeros = 0          # values of all-zero batches seen before the first non-zero one
        self._cache: tuple[int, float] | None = None

    def _update(self, x):
        if not self.any_negative and np.min(x) < 0:
            self.any_negative = True
        v = np.abs(x.astype(np.float64, copy=False)).reshape(1, -1)
        vmax = float(v.max())
        if self.edges is None:
            if vmax == 0.0:
                self._zeros += v.size
                return
            self.edges = _first_edges(np.float64(vmax), self.bins)
            self.counts = np.zeros(self.bins, dtype=np.int64)
            self.counts[0] += self._zeros
            self._zeros = 0
        elif vmax > self.edges[-1]:
            self._grow(vmax)
        self.counts += _histograms(v, self.edges[None, :])[0]

    def _grow(self, vmax: float) -> None:
        width = self.edges[1] - self.edges[0]
        top = self.edges[-1]
        k = max(1, math.ceil((vmax - top) / width))
        new = top + width * np.arange(1, k + 1)
        while new[-1] < vmax:  # rounding of top + width·k
            new = np.append(new, top + width * (len(new) + 1))
        if len(self.counts) + len(new) > self.max_bins:
            raise ValueError(
                f"calibration batch {self.n_batches} has max |x| = {vmax:g}, {vmax / self.edges[-1]:.3g}x the "
                f"histogram range [0, {self.edges[-1]:g}]; growing it would need {len(self.counts) + len(new)} "
                f"bins (limit {self.max_bins}). Calibrate with a more representative first batch."
            )
        self.edges = np.concatenate((self.edges, new))
        self.counts = np.concatenate((self.counts, np.zeros(len(new), dtype=np.int64)))

    def amax(self) -> float:
        """The method's amax over everything seen so far (0.0 if every value was 0)."""
        if self.n_batches == 0:
            raise ValueError("HistogramObserver.amax() called before any update(); feed at least one batch first")
        if self.edges is None:
            return 0.0
        if self._cache is None or self._cache[0] != self.n_batches:
            a = histogram_amax(self.method, self.counts, self.edges, self.spec, self.start_bin, self.stride)
            self._cache = (self.n_batches, a)
        return self._cache[1]

    def _range(self):
        a = self.amax()
        return (-a if self.any_negative else 0.0), a

    def __repr__(self) -> str:
        n = 0 if self.counts is None else len(self.counts)
        return f"HistogramObserver(method={self.method!r}, batches={self.n_batches}, bins={n})"


def make_observer(spec: QuantSpec) -> Observer:
    """The observer named by `spec.calibration` (uses spec.bits, spec.signed, spec.percentile)."""
    spec = _check_spec(spec)
    if spec.calibration == "minmax":
        return MinMaxObserver(spec)
    if spec.calibration == "moving_average":
        return MovingAverageObserver(spec)
    return HistogramObserver(spec, spec.calibration)


# -- one range per row ------------------------------------------------------------
def range_of_rows(rows, spec: QuantSpec) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per row of a 2-D array, each row calibrated on its own by `spec.calibration`.

    NaN marks padding and is ignored. Row r gives exactly what `make_observer(spec)` fed
    with the row's non-NaN values as one batch gives (moving average = min-max for one
    batch). Returns two float64 arrays of length rows.shape[0].
    """
    spec = _check_spec(spec)
    rows = np.asarray(rows)
    if rows.ndim != 2:
        raise ValueError(f"rows must be a 2-D array (one slice per row), got shape {rows.shape}")
    if rows.dtype.kind not in "fiub":
        raise TypeError(f"rows must hold real numbers, got dtype {rows.dtype}")
    if rows.size == 0:
        raise ValueError(f"rows is empty (shape {rows.shape}); nothing to calibrate")
    rows = rows.astype(np.float64, copy=False)
    pad = np.isnan(rows)
    if np.isinf(rows).any():
        where = [tuple(int(i) for i in idx) for idx in np.argwhere(np.isinf(rows))[:5]]
        raise ValueError(f"rows contain {int(np.isinf(rows).sum())} Inf value(s); first at "
                         f"{', '.join(map(str, where))}")
    empty = pad.all(axis=1)
    if empty.any():
        raise ValueError(f"row(s) {np.flatnonzero(empty)[:8].tolist()} hold only NaN padding; nothing to calibrate")
    if spec.calibration in ("minmax", "moving_average"):
        return np.minimum(np.nanmin(rows, axis=1), 0.0), np.maximum(np.nanmax(rows, axis=1), 0.0)

    n_rows, length = rows.shape
    bins = CALIBRATION_DEFAULTS["bins"]
    amax = np.zeros(n_rows)
    negative = (np.where(pad, 0.0, rows) < 0).any(axis=1)
    chunk = max(1, _CHUNK_ELEMENTS // max(length, bins))
    for s in range(0, n_rows, chunk):
        amax[s:s + chunk] = _amax_rows(rows[s:s + chunk], pad[s:s + chunk], spec, bins)
    return np.where(negative, -amax, 0.0), amax


def _amax_rows(rows: np.ndarray, pad: np.ndarray, spec: QuantSpec, bins: int) -> np.ndarray:
    """amax of each row by a histogram method; rows with max |x| = 0 give 0."""
    v = np.where(pad, 0.0, np.abs(rows))
    vmax = v.max(axis=1)
    out = np.zeros(len(rows))
    live = np.flatnonzero(vmax > 0)
    if live.size == 0:
        return out
    v, pad, vmax = v[live], pad[live], vmax[live]
    edges = _first_edges(vmax, bins)                                   # (R, bins+1)
    counts = _histograms(v, edges, ~pad)

    start, stride = CALIBRATION_DEFAULTS["start_bin"], CALIBRATION_DEFAULTS["stride"]
    if spec.calibration == "percentile":
        cum = np.cumsum(counts, axis=1)
        thr = spec.percentile / 100.0 * cum[:, -1]
        first = (cum < thr[:, None]).sum(axis=1)      # searchsorted(cum, thr, 'left') per row
        out[live] = edges[np.arange(len(live)), first]
    elif spec.calibration == "mse":
        out[live] = _mse_rows(counts, edges, spec.bits, not spec.signed, start, stride)
    else:
        out[live] = [amax_entropy(counts[r], edges[r], spec.bits, not spec.signed, start, stride)
                     for r in range(len(live))]
    return out
