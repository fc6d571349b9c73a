"""GPTQ (Frantar et al. 2022, arXiv:2210.17323): column-by-column quantization with
second-order error feedback.

`H = 2XᵀX/n` is damped by `damp`·mean(diag H), inverted through its Cholesky factor
(the upper Cholesky factor of H⁻¹ is what the update uses), and the columns are
quantized in lazy blocks of `block` columns; each column's error, divided by the
diagonal of the factor, is spread over the not-yet-quantized columns. `act_order`
processes the columns by decreasing diag(H). Group-wise (and per-channel/per-tensor)
scales are fixed up front from the original weight ("static groups"), so act-order and
groups combine and the result lies on an ordinary RTN-shaped grid.
"""

from __future__ import annotations

import numpy as np

from qsim.ptq.core import Grid


def gptq_codes(w: np.ndarray, H: np.ndarray, grid: Grid, *, act_order: bool = True, block: int = 128,
               damp: float = 0.01) -> np.ndarray:
    """Integer codes (out, K) of `w` on `grid` chosen by GPTQ for input moment `H` (K, K)."""
    W = np.array(w, np.float64)
    H = np.array(H, np.float64) * 2.0
    K = W.shape[1]
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(K)
    W, H = W[:, perm], H[np.ix_(perm, perm)]
    S, Z = grid.S[:, perm], grid.Z[:, perm]
    H[np.diag_indices(K)] += damp * float(np.mean(np.diag(H)))
    L = np.linalg.cholesky(H)
    Linv = np.linalg.inv(L)
    Hinv = np.linalg.cholesky(Linv.T @ Linv).T           # upper Cholesky factor of H⁻¹
    Q = np.zeros_like(W)
    for i1 in range(0, K, block):
        i2 = min(i1 + block, K)
        W1 = W[:, i1:i2].copy()
        Err = np.zeros_like(W1)
        Hb = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            col = W1[:, i]
            q = np.clip(np.rint(col / S[:, c]) + Z[:, c], grid.qmin, grid.qmax)
            Q[:, c] = q
            err = (col - (q - Z[:, c]) * S[:, c]) / Hb[i, i]
            W1[:, i:] -= np.outer(err, Hb[i, i:])
            Err[:, i] = err
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    out = np.empty_like(Q)
    out[:, perm] = Q
    return out
