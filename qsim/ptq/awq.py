"""AWQ (Lin et al. 2023, arXiv:2306.00978): activation-aware weight quantization.

Input channels that see large activations matter more: scale them up before quantizing,
W' = W·diag(s), and divide the activation by s (folded into the op before; in a float
weight-only runtime the effective weight is Q(W·diag(s))·diag(s)⁻¹). s = mean|x_j|^α,
normalised by sqrt(max·min), with α searched on the grid {0, 1/n_grid, …, (n_grid−1)/n_grid}
(AutoAWQ's n_grid = 20) for the smallest layer output error tr(ΔHΔᵀ). Then AutoAWQ's clip
search: each weight group's range (each row's, per channel) is shrunk by a ratio in
{1, 0.95, …, 0.5} where that lowers the error of the group's partial output x_g·Δ_gᵀ (AutoAWQ's
per-group objective: H's diagonal block), followed by `REFINE` coordinate sweeps over the groups
against the full H (the cross-group terms AutoAWQ ignores). No backpropagation; deterministic.
AutoAWQ's module objectives (`awq_scales_module`: one layer's α scored on the output of the module after it, e.g.
MiniLM's FFN; `awq_scales_joint`: one α for the layers reading one input, e.g. q/k/v scored on the attention
block's output) replace the layer-output error where `qsim.ptq.transformer.AWQ` selects them.

Speed: every candidate (α values, clip ratios) is quantized in one stacked call (row-wise
grids stack along the output axis) and scored in one GEMM against a factor of H
(`ErrorFactor`): for wide inputs, the top-r eigen-directions of H (randomized subspace
iteration, seeded) plus the diagonal of the remainder, H ≈ F·Fᵀ + diag(t), so scoring costs
out·K·r instead of out·K². The factor of one input is shared by the layers that read it.
"""

from __future__ import annotations

import numpy as np

from qsim.ptq.core import Grid, layer_error, rtn, weight_axis
from qsim.quant import QuantSpec
from qsim.quant.quantize import observe, uniform_params

REFINE = 2         # coordinate sweeps of the per-group clip search over the full H
RANK = 96          # eigen-directions of H kept exactly when scoring candidates (inputs wider than 2·RANK)


class ErrorFactor:
    """H ≈ F·Fᵀ + diag(t) for scoring the per-row output error diag(Δ H Δᵀ) of many candidates Δ.

    K ≤ 2·rank: F is H's Cholesky factor (exact, t = 0). Wider: F = U·Λ^½ of the top-`rank`
    eigenpairs of H (randomized subspace iteration with `iters` power steps, seeded) and
    t = diag(H − F·Fᵀ) ≥ 0, i.e. the remaining spectrum keeps its per-channel weight but loses its
    cross-channel correlation."""

    def __init__(self, H: np.ndarray, rank: int = RANK, iters: int = 3, seed: int = 0):
        H = np.asarray(H, np.float64)
        K = H.shape[0]
        if rank is None or K <= 2 * rank:
            jitter = 1e-10 * max(float(np.mean(np.diag(H))), 1e-30)
            F = np.linalg.cholesky(H + jitter * np.eye(K))
            t = np.zeros(K)
        else:
            Q = np.linalg.qr(H @ np.random.default_rng(seed).standard_normal((K, rank + 16)))[0]
            for _ in range(iters):
                Q = np.linalg.qr(H @ Q)[0]
            lam, V = np.linalg.eigh(Q.T @ H @ Q)
            top = np.argsort(lam)[::-1][:rank]
            F = (Q @ V[:, top]) * np.sqrt(np.maximum(lam[top], 0.0))
            t = np.maximum(np.diag(H) - np.sum(F * F, axis=1), 0.0)
        self.exact = not t.any()
        dt = np.float64 if self.exact else np.float32      # exact (small K): float64, no near-tie flips
        self.F, self.t = F.astype(dt), t.astype(dt)

    def scaled(self, s: np.ndarray) -> "ErrorFactor":
        """The factor of diag(s)⁻¹·H·diag(s)⁻¹ (the input moment after dividing the input by s)."""
        out = object.__new__(ErrorFactor)
        s = np.asarray(s, np.float64)
        out.F = (self.F / s[:, None]).astype(self.F.dtype)
        out.t = (self.t / (s * s)).astype(self.t.dtype)
        out.exact = self.exact
        return out

    def row_errors(self, D: np.ndarray) -> np.ndarray:
        """diag(D H Dᵀ) (≈, see the class) for candidate differences D (..., K), float64."""
        D = np.asarray(D, self.F.dtype)
        shp = D.shape[:-1]
        D = D.reshape(-1, D.shape[-1])
        P = D @ self.F
        e = np.einsum("ij,ij->i", P, P, dtype=np.float64)
        if not self.exact:
            e += (D * D) @ self.t
        return e.reshape(shp)


def _stackable(spec: QuantSpec) -> bool:
    """Row-wise grids (per channel, per group along K): candidates stack along the output axis."""
    return spec.granularity in ("channel", "group")


def _quant_dequant(Ws: np.ndarray, spec: QuantSpec, value_range=None) -> np.ndarray:
    """Dequantized RTN of a stack (n, out, K) of candidate weights (each on its own grid): `rtn`'s
    scales (`uniform_params` of the same ranges) and its codes for round-to-nearest-even, computed
    in place on the stack (the general `quantize` path for other roundings / ragged groups)."""
    n, out, K = Ws.shape
    if not _stackable(spec):
        return np.stack([rtn(Ws[i], spec, None if value_range is None else (value_range[0][i], value_range[1][i]))
                         .dequantize(np.float64) for i in range(n)])
    flat = Ws.reshape(n * out, K)
    vr = None if value_range is None else tuple(np.concatenate(list(v)) for v in value_range)
    g = spec.group_size if spec.granularity == "group" else K
    if spec.rounding != "nearest_even" or K % g:
        return rtn(flat, spec, vr).dequantize(np.float64).reshape(n, out, K)
    if vr is not None:
        lo, hi = vr
    elif spec.calibration in ("minmax", "moving_average"):
        blocks = flat.reshape(n * out, K // g, g)
        lo, hi = blocks.min(-1), blocks.max(-1)
        if spec.granularity == "channel":
            lo, hi = lo.reshape(-1), hi.reshape(-1)
    else:
        lo, hi = observe(flat, spec, weight_axis(spec))
    scale, zp = uniform_params(lo, hi, spec)
    qmin, qmax = spec.qrange
    S = np.asarray(scale, np.float64).reshape(n * out, K // g, 1)
    Z = np.asarray(zp, np.float64).reshape(n * out, K // g, 1)
    v = flat.reshape(n * out, K // g, g) / S
    np.rint(v, out=v)
    if spec.scheme == "affine":
        v += Z
        np.clip(v, qmin, qmax, out=v)
        v -= Z
    else:
        np.clip(v, qmin, qmax, out=v)
    v *= S
    return v.reshape(n, out, K)


def _row_errors(n: int, W: np.ndarray, spec: QuantSpec, diff, factor: ErrorFactor, budget: int = 1 << 17):
    """(n, out) row output errors of n candidates; `diff(rows)` gives their differences D (n, rows, K) to W.
    Row-wise grids are processed a few rows at a time (≈ `budget` elements per array: cache-sized,
    no large allocations); a per-tensor grid needs all rows at once."""
    out, K = W.shape
    step = max(1, budget // max(n * K, 1)) if _stackable(spec) else out
    e = np.empty((n, out))
    for r0 in range(0, out, step):
        rows = slice(r0, min(r0 + step, out))
        e[:, rows] = factor.row_errors(diff(rows))
    return e


def awq_scales(w: np.ndarray, H: np.ndarray, x_absmean: np.ndarray, spec: QuantSpec, n_grid: int = 20,
               factor: ErrorFactor | None = None):
    """(s (K,), α, error) minimising the output error of Q(W·diag(s))·diag(s)⁻¹, scored through `factor`
    (built from H when not given; then the returned error is the exact tr(ΔHΔᵀ)/out, else the factor's)."""
    W = np.asarray(w, np.float64)
    given = factor is not None
    factor = factor or ErrorFactor(H)
    xm = np.maximum(np.asarray(x_absmean, np.float64), 1e-8)
    alphas = np.arange(n_grid) / n_grid
    S = xm[None, :] ** alphas[:, None]
    S = S / np.sqrt(S.max(1, keepdims=True) * S.min(1, keepdims=True))
    S3 = S[:, None, :]
    errs = _row_errors(n_grid, W, spec, lambda r: _quant_dequant(W[None, r] * S3, spec) / S3 - W[None, r],
                       factor).sum(1)
    i = int(np.argmin(errs))
    if given:
        return S[i], float(alphas[i]), float(errs[i]) / W.shape[0]
    return S[i], float(alphas[i]), layer_error(W, rtn(W * S[i], spec).dequantize(np.float64) / S[i], H)


def clip_search(w: np.ndarray, H: np.ndarray, spec: QuantSpec, ratios=np.arange(1.0, 0.49, -0.05),
                factor: ErrorFactor | None = None, per_group: bool = False, refine: int | None = None) -> Grid:
    """Grid of `w` whose per-row range is shrunk by the ratio with the smallest row output error
    (per-tensor grids: one ratio for the whole tensor)."""
    W = np.asarray(w, np.float64)
    factor = factor or ErrorFactor(H)
    axis = weight_axis(spec)
    lo, hi = observe(W, spec, axis)
    ratios = np.asarray(ratios, np.float64)
    n = len(ratios)
    rs = ratios.reshape((-1,) + (1,) * np.ndim(lo))
    if spec.granularity == "tensor":
        diff = lambda r: _quant_dequant(np.broadcast_to(W, (n,) + W.shape), spec, (lo * rs, hi * rs)) - W[None]  # noqa: E731
    else:
        diff = lambda r: _quant_dequant(np.broadcast_to(W[r], (n,) + W[r].shape), spec,  # noqa: E731
                                        (lo[r] * rs, hi[r] * rs)) - W[None, r]
    if per_group and spec.granularity == "group" and H is not None:
        return _clip_per_group(W, H, spec, lo, hi, ratios, REFINE if refine is None else refine)
    e = _row_errors(n, W, spec, diff, factor)                # (ratios, out)
    if spec.granularity == "tensor":
        r = ratios[int(np.argmin(e.sum(1)))]
    else:
        r = ratios[np.argmin(e, axis=0)]                     # first (largest) ratio among ties
        r = r if np.ndim(lo) == 1 else r[:, None]
    return Grid.of(W, spec, value_range=(lo * r, hi * r))


def _clip_per_group(W, H, spec: QuantSpec, lo, hi, ratios, refine: int, budget: int = 1 << 19) -> Grid:
    """AutoAWQ's clip search: one ratio per (row, group), the one with the smallest error of that group's
    partial output x_g·(w_g − ŵ_g)ᵀ, i.e. d_g·H_gg·d_gᵀ with H_gg the group's diagonal block of H
    (cross-group terms ignored, as AutoAWQ does), then `refine` coordinate sweeps over the groups, each
    group's ratio re-chosen against the full H with the other groups' choices fixed."""
    out, K = W.shape
    g = spec.group_size
    G = -(-K // g)                                                                       # a ragged last group
    Kp, n = G * g, len(ratios)
    H = np.pad(np.asarray(H, np.float64), (0, Kp - K))                                   # zero rows/cols
    Hb = np.stack([H[i * g:(i + 1) * g, i * g:(i + 1) * g] for i in range(G)])          # (G, g, g)
    rs = ratios.reshape(-1, 1, 1)
    step = max(1, budget // max(n * K, 1))
    best = np.empty((out, G))
    for r0 in range(0, out, step):
        r = slice(r0, min(r0 + step, out))
        D = _quant_dequant(np.broadcast_to(W[r], (n,) + W[r].shape), spec, (lo[r] * rs, hi[r] * rs)) - W[None, r]
        D = np.pad(D, ((0, 0), (0, 0), (0, Kp - K))).reshape(n, -1, G, g)
        e = np.einsum("nrGi,Gij,nrGj->nrG", D, Hb, D, optimize=True)                    # (ratios, rows, groups)
        pick = np.argmin(e, axis=0)                                                       # (rows, groups)
        for _ in range(refine):                  # coordinate sweeps over the groups with the full H (cross terms)
            rows_i = np.arange(pick.shape[0])
            cur = np.stack([D[pick[:, j], rows_i, j] for j in range(G)], 1)               # (rows, G, g)
            HD = cur.reshape(len(rows_i), Kp) @ H                                          # (rows, K)
            for j in range(G):
                cj = slice(j * g, (j + 1) * g)
                other = HD[:, cj] - cur[:, j] @ Hb[j]                                     # H·d of the other groups
                ej = 2 * np.einsum("nri,ri->nr", D[:, :, j], other) + \
                    np.einsum("nri,ij,nrj->nr", D[:, :, j], Hb[j], D[:, :, j], optimize=True)
                pick[:, j] = np.argmin(ej, axis=0)
                new = D[pick[:, j], rows_i, j]
                HD += (new - cur[:, j]) @ H[cj]
                cur[:, j] = new
        best[r] = ratios[pick]
    return Grid.of(W, spec, value_range=(lo * best, hi * best))


def awq_scales_module(w: np.ndarray, x_absmean: np.ndarray, spec: QuantSpec, forward, n_grid: int = 20):
    """(s, α, error) as `awq_scales`, but each α scored as AutoAWQ does: the squared error of the output of the
    whole module after the layer (`forward(effective weight)`, e.g. the FFN's GELU and second linear on sampled
    calibration rows) against its output with the float weight."""
    W = np.asarray(w, np.float64)
    xm = np.maximum(np.asarray(x_absmean, np.float64), 1e-8)
    alphas = np.arange(n_grid) / n_grid
    S = xm[None, :] ** alphas[:, None]
    S = S / np.sqrt(S.max(1, keepdims=True) * S.min(1, keepdims=True))
    ref = forward(W)
    errs = np.empty(n_grid)
    for i in range(n_grid):
        eff = _quant_dequant(W[None] * S[i][None, None], spec)[0] / S[i]
        errs[i] = float(np.sum((forward(eff) - ref) ** 2))
    i = int(np.argmin(errs))
    return S[i], float(alphas[i]), float(errs[i]) / max(ref.size, 1)


def awq_scales_joint(ws, x_absmean: np.ndarray, spec: QuantSpec, forward, n_grid: int = 20, sweeps: int = 0):
    """([s per layer], [α per layer], error): one scaling s = mean|x|^α (normalised as in `awq_scales`) for several
    layers that read the same input (MiniLM's query/key/value), each α scored as AutoAWQ's `module2inspect` does:
    the squared error of `forward([effective weight of each layer])` (e.g. the attention block's output through
    softmax and the output projection, on sampled calibration sequences) against its output with the float
    weights. `sweeps` > 0: then coordinate sweeps over the layers, each layer's own α re-chosen on the same
    objective with the others fixed. α = 0 is the identity scaling (plain RTN) and every step keeps the current
    choice among its candidates, so the result never scores worse than RTN on this objective."""
    Ws = [np.asarray(w, np.float64) for w in ws]
    xm = np.maximum(np.asarray(x_absmean, np.float64), 1e-8)
    alphas = np.arange(n_grid) / n_grid
    S = xm[None, :] ** alphas[:, None]
    S = S / np.sqrt(S.max(1, keepdims=True) * S.min(1, keepdims=True))
    ref = forward(Ws)
    # every layer's effective weight at every α: (n_grid, out, K) per layer, quantized in one stacked call
    effs = [_quant_dequant(w[None] * S[:, None, :], spec) / S[:, None, :] for w in Ws]
    score = lambda pick: float(np.sum((forward([e[i] for e, i in zip(effs, pick)]) - ref) ** 2))  # noqa: E731
    errs = [score([i] * len(Ws)) for i in range(n_grid)]
    best = int(np.argmin(errs))
    pick, err = [best] * len(Ws), errs[best]
    for _ in range(sweeps):
        for j in range(len(Ws)):
            for i in range(n_grid):
                if i != pick[j]:
                    e = score(pick[:j] + [i] + pick[j + 1:])
                    if e < err:
                        pick, err = pick[:j] + [i] + pick[j + 1:], e
    return [S[i] for i in pick], [float(alphas[i]) for i in pick], err / max(ref.size, 1)
