"""PTQ of transformer linear layers (MiniLM, SmolLM2): calibration statistics per linear input,
then per layer the transform (SmoothQuant / AWQ scaling, rotation) and the codes (RTN or GPTQ).

The executors (`qsim.nets.minilm`, `qsim.nets.smollm2`) share one `Quantizer`: this module fills
its `qweights` (the weight `QTensor` the integer kernels consume, and the effective float weight
of the weight-only path) and its `pre` transforms (what happens to a layer's float input before
the activation quantizer: x/s for SmoothQuant/AWQ, x·Q for a rotation).

GPTQ and AWQ see the float model's inputs of every layer (one calibration pass), not the inputs
of the partly quantized model (AutoGPTQ's sequential mode): one pass is what keeps the whole PTQ
of SmolLM2 within minutes here.
"""

from __future__ import annotations

import time
import zlib

import numpy as np

from qsim.ptq.awq import ErrorFactor, awq_scales, awq_scales_joint, awq_scales_module, clip_search
from qsim.ptq.core import Grid, rtn
from qsim.ptq.gptq import gptq_codes
from qsim.ptq.rotation import rotation_matrix
from qsim.ptq.smoothquant import search_smoothing, smooth_scales

MAX_ROWS = 8192   # calibration rows kept per layer for the error searches
KEEP_ROWS = {"intermediate.dense": 1024}   # layer-name suffix → raw input rows sampled (AWQ's module-output search)
KEEP_SEQUENCES = {"attention.self.query": 256}   # layer-name suffix → whole input sequences sampled (attention output)
# AWQ variants (the defaults are what the calibration-set criterion chose, see the README): clip "group" = one
# ratio per (row, group) as AutoAWQ (then REFINE coordinate sweeps over the full H, qsim.ptq.awq), "row" = one per
# row; clip_qk = also clip the query/key weights (AutoAWQ skips them); ffn_module = score the FFN input layer's α on
# the FFN output (GELU and the second linear, MiniLM) instead of on its own output; attn_module = one α for
# q/k/v together, scored on the attention block's output (softmax, the value average and the float output
# projection, on sampled whole calibration sequences: AutoAWQ's module2inspect=self_attn; MiniLM), "each" = then
# one coordinate sweep giving each of q/k/v its own α on the same objective
# gptq_clip = the clip search of awq+gptq ("row" or "group", no sweeps: GPTQ re-chooses the codes the sweeps fit)
AWQ = {"clip": "group", "clip_qk": True, "ffn_module": True, "attn_module": False, "gptq_clip": "row"}


class Stats:
    """Accumulates, per linear layer, H = XᵀX/n, mean |x|, max |x|, mean x, per-channel min/max of its float input.

    XᵀX is one float32 symmetric rank-k update per batch (BLAS syrk: a quarter of a float64 GEMM's
    time; batches of ≤ a few thousand rows, summed in float64), and layers that read the same array
    (q/k/v, gate/up) reuse the increments of the first one instead of recomputing them."""

    def __init__(self):
        self.sxx, self.n, self.absmax, self.abssum, self.sum = {}, {}, {}, {}, {}
        self.min, self.max = {}, {}
        self.rows, self._keys = {}, {}                   # sampled raw input rows (KEEP_ROWS) and their priorities
        self.seqs = {}                                   # sampled whole input sequences (KEEP_SEQUENCES): [(key, x)]
        self._mask, self._seq_rng = None, np.random.default_rng(0)
        self._last = (None, None)                        # (input array, its increments)

    def _increments(self, x: np.ndarray):
        from scipy.linalg.blas import ssyrk

        if self._last[0] is x:
            return self._last[1]
        flat = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
        ax = np.abs(flat)
        inc = (ssyrk(1.0, flat, trans=1).astype(np.float64), len(flat), ax.max(0).astype(np.float64),
               ax.sum(0, dtype=np.float64), flat.sum(0, dtype=np.float64), flat.min(0).astype(np.float64),
               flat.max(0).astype(np.float64))
        self._last = (x, inc)
        return inc

    def sequence_mask(self, mask: np.ndarray) -> None:
        """The attention mask (B, T) of the batch whose layer inputs follow (called by the executor once per
        batch): layers in KEEP_SEQUENCES then keep whole sequences (their unpadded rows), a seeded priority
        sample of sentences that is the same for every such layer."""
        self._mask = (np.asarray(mask) > 0, self._seq_rng.random(len(mask)))

    def sequences(self, name: str) -> list[np.ndarray]:
        """The sampled input sequences (T_i, K) of a layer, in sampling-key order."""
        return [x for _, x in self.seqs.get(name, [])]

    def _keep_sequences(self, name: str, x: np.ndarray) -> None:
        cap = next((c for suf, c in KEEP_SEQUENCES.items() if name.endswith(suf)), 0)
        if not cap or self._mask is None or np.ndim(x) != 3 or self._mask[0].shape != x.shape[:2]:
            return
        mask, keys = self._mask
        kept = self.seqs.setdefault(name, [])
        kept += [(float(k), np.array(x[b][mask[b]], np.float32)) for b, k in enumerate(keys)]
        kept.sort(key=lambda t: t[0])
        del kept[cap:]

    def __call__(self, name: str, x: np.ndarray) -> None:
        self._keep_sequences(name, x)
        sxx, n, amax, asum, xsum, xmin, xmax = self._increments(x)
        if name not in self.n:
            k = x.shape[-1]
            self.sxx[name], self.n[name] = np.zeros((k, k)), 0
            self.absmax[name], self.abssum[name], self.sum[name] = np.zeros(k), np.zeros(k), np.zeros(k)
            self.min[name], self.max[name] = xmin, xmax
        self.sxx[name] += sxx                            # upper triangle (syrk)
        self.n[name] += n
        self.absmax[name] = np.maximum(self.absmax[name], amax)
        self.abssum[name] += asum
        self.sum[name] += xsum
        self.min[name], self.max[name] = np.minimum(self.min[name], xmin), np.maximum(self.max[name], xmax)
        cap = next((c for suf, c in KEEP_ROWS.items() if name.endswith(suf)), 0)
        if cap:                                          # priority sampling: the `cap` rows of smallest seeded key
            flat = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
            rng = self._keys.setdefault(name + "#rng", np.random.default_rng(zlib.crc32(name.encode())))
            keys = np.concatenate([self._keys.get(name, np.empty(0)), rng.random(len(flat))])
            rows = np.concatenate([self.rows[name], flat]) if name in self.rows else flat
            keep = np.sort(np.argsort(keys, kind="stable")[:cap])
            self.rows[name], self._keys[name] = rows[keep], keys[keep]

    def H(self, name):
        u = np.triu(self.sxx[name])
        return (u + np.triu(u, 1).T) / max(self.n[name], 1)

    def absmean(self, name):
        return self.abssum[name] / max(self.n[name], 1)


def prepare_linears(q, weights: dict, stats: Stats, methods: tuple, *, share: list[list[str]] = (),
                    seed: int = 0, alpha: float | str = "search") -> dict:
    """Fill `q.qweights` / `q.pre` for every layer in `weights` ({name: (out, K) float weight}).

    `share`: groups of layers that read the same input (SmoothQuant uses one scale per group,
    as when it is folded into the norm before them). `alpha`: SmoothQuant's migration strength, a number
    or "search" (per group, on calibration statistics: `qsim.ptq.smoothquant.search_smoothing`).
    Returns notes for the result's config."""
    t0, c0 = time.perf_counter(), time.process_time()
    group_of = {n: g for g in share for n in g}
    notes, factors, joint = {}, {}, {}
    for name, w in weights.items():
        W = np.asarray(w, np.float64)
        H = stats.H(name)
        pre = None
        if "smoothquant" in methods:
            grp = group_of.get(name, [name])
            key = ("sq",) + tuple(grp)
            if key not in factors:
                factors.clear()
                if alpha == "search":
                    factors[key] = search_smoothing(stats.absmax[name], stats.min[name], stats.max[name], H,
                                                    [weights[n] for n in grp], q.wspec, q.aspec,
                                                    factor=ErrorFactor(H, seed=seed))
                else:
                    factors[key] = (smooth_scales(stats.absmax[name], [weights[n] for n in grp], alpha), alpha)
            s, a = factors[key]
            notes.setdefault("smoothquant_alpha", {})[name] = "none" if a is None else a
            W, H, pre = W * s, H / np.outer(s, s), ("div", s)
        elif "rotation" in methods:
            R = rotation_matrix(W.shape[1], seed)
            W, H, pre = W @ R, R.T @ H @ R, ("mat", R)
        elif "awq" in methods:
            key = tuple(group_of.get(name, [name]))          # layers reading one input share H's factor
            if key not in factors:
                factors.clear()
                factors[key] = ErrorFactor(H, seed=seed)
            factor = factors[key]
            fwd = _module_forward(name, weights, stats) if AWQ["ffn_module"] else None
            if AWQ["attn_module"] and key not in joint:
                att = _attention_forward(key, weights, stats)
                if att is not None:                          # q/k/v: one α, scored on the attention output
                    joint.clear()
                    joint[key] = awq_scales_joint([weights[n] for n in key], stats.absmean(name), q.wspec, att,
                                                  sweeps=1 if AWQ["attn_module"] == "each" else 0)
            if key in joint:
                s, a = joint[key][0][key.index(name)], joint[key][1][key.index(name)]
            elif fwd is not None:
                s, a, _ = awq_scales_module(W, stats.absmean(name), q.wspec, fwd)
            else:
                s, a, _ = awq_scales(W, H, stats.absmean(name), q.wspec, factor=factor)
            W, H, pre = W * s, H / np.outer(s, s), ("div", s)
            factor = factor.scaled(s)
            notes.setdefault("awq_alpha", {})[name] = a
        if "awq" in methods and (AWQ["clip_qk"] or not _is_qk(name)):
            # the full-H sweeps fit the clip to RTN's codes; GPTQ re-chooses the codes: awq+gptq takes its own
            # clip mode (AWQ["gptq_clip"], chosen on MiniLM's calibration criterion, see the README), never swept
            gptq = "gptq" in methods
            grid = clip_search(W, H, q.wspec, factor=factor,
                               per_group=(AWQ["gptq_clip"] if gptq else AWQ["clip"]) == "group",
                               refine=0 if gptq else None)
        else:
            grid = Grid.of(W, q.wspec)
        if "gptq" in methods:
            qt = grid.qtensor(gptq_codes(W, H, grid))
        elif "awq" in methods:
            qt = grid.qtensor(grid.codes(W))
        else:
            qt = rtn(W, q.wspec)
        eff = qt.dequantize(np.float64)
        if pre is not None:
            eff = eff / pre[1] if pre[0] == "div" else eff @ pre[1].T
            if q.aspec is not None:
                q.pre[name] = pre
        q.qweights[name] = qt
        q.qweights[name + ".dequantized_t"] = np.ascontiguousarray(eff.T.astype(np.float32))
    notes["ptq_seconds"] = round(time.perf_counter() - t0, 3)
    notes["ptq_cpu_seconds"] = round(time.process_time() - c0, 3)     # one BLAS thread: the one-core time
    return notes


def _is_qk(name: str) -> bool:
    return name.endswith(("attention.self.query", "attention.self.key", "attn_q", "attn_k"))


def _module_forward(name: str, weights: dict, stats: Stats):
    """AWQ's module-output objective for a MiniLM FFN input layer: eff ↦ GELU(x·effᵀ + b1)·W2ᵀ on the sampled
    calibration rows x of its input (None for other layers)."""
    if not name.endswith("intermediate.dense") or name not in stats.rows:
        return None
    nxt = name[: -len("intermediate.dense")] + "output.dense"
    if nxt not in weights:
        return None
    from qsim.nets.minilm import _gelu, load_weights

    b1 = load_weights()[name + ".bias"].astype(np.float64)
    W2t = np.asarray(weights[nxt], np.float64).T
    X = stats.rows[name].astype(np.float64)
    return lambda eff: _gelu(X @ eff.T + b1) @ W2t



def _attention_forward(names: tuple, weights: dict, stats: Stats, batch: int = 64):
    """AWQ's attention-output objective for MiniLM's query/key/value (`names`, the layers reading one input):
    [eff_q, eff_k, eff_v] ↦ the attention block's output before the residual — softmax(q·kᵀ/√d)·v through the
    float output projection — at the unpadded tokens of the sampled calibration sequences (float32; None when the
    layers are not a MiniLM q/k/v triple or no sequences were kept)."""
    suffixes = ("attention.self.query", "attention.self.key", "attention.self.value")
    if len(names) != 3 or not all(n.endswith(sf) for n, sf in zip(names, suffixes)):
        return None
    seqs = stats.sequences(names[0])
    out_name = names[0][: -len(suffixes[0])] + "attention.output.dense"
    if not seqs or out_name not in weights:
        return None
    from qsim.nets.minilm import HEAD_DIM, HEADS, _softmax, load_weights

    Wall = load_weights()
    bq, bk, bv = (Wall[n + ".bias"].astype(np.float32) for n in names)
    Wo_t = np.ascontiguousarray(np.asarray(weights[out_name], np.float32).T)
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    groups = []
    for b0 in range(0, len(order), batch):                # pad sequences of similar length together
        idx = order[b0:b0 + batch]
        T = max(len(seqs[i]) for i in idx)
        X = np.zeros((len(idx), T, seqs[idx[0]].shape[1]), np.float32)
        mask = np.zeros((len(idx), T), bool)
        for r, i in enumerate(idx):
            X[r, :len(seqs[i])], mask[r, :len(seqs[i])] = seqs[i], True
        groups.append((X, mask, np.where(mask[:, None, None, :], 0.0, -1e9).astype(np.float32)))

    def forward(effs):
        wq, wk, wv = (np.ascontiguousarray(np.asarray(e, np.float32).T) for e in effs)
        outs = []
        for X, mask, bias in groups:
            B, T, _ = X.shape
            heads = lambda t: t.reshape(B, T, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)  # noqa: E731
            qh, kh, vh = heads(X @ wq + bq), heads(X @ wk + bk), heads(X @ wv + bv)
            p = _softmax(qh @ kh.transpose(0, 1, 3, 2) / np.float32(np.sqrt(HEAD_DIM)) + bias)
            ctx = (p @ vh).transpose(0, 2, 1, 3).reshape(B, T, -1)
            outs.append((ctx[mask] @ Wo_t).astype(np.float64))
        return np.concatenate(outs)

    return forward
