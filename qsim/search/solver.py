"""Choose one option per layer under a cost budget: an exact ILP, a greedy baseline, brute force.

The problem (HAWQ-V3's): minimise Σ_l S[l, c_l] subject to Σ_l C[l, c_l] ≤ budget, one choice
c_l per layer. `solve_ilp` writes it as a 0/1 integer linear programme — one binary x[l, c] per
(layer, choice), Σ_c x[l, c] = 1 per layer, Σ C·x ≤ budget — and hands it to HiGHS through
`scipy.optimize.milp`, which proves optimality. `solve_greedy` is the usual baseline: start
from each layer's least sensitive choice and repeatedly take the cheapening step with the
smallest sensitivity increase per unit of cost saved, then spend any budget left on the
upgrades with the largest sensitivity decrease per unit of cost. `solve_brute` enumerates every
assignment (tests only). Disallowed entries are NaN (e.g. a choice a profile cannot run).

Exactness: optimal to HiGHS's tolerances after rescaling (see `solve_ilp`); ties between
assignments of equal objective are broken by the solver, not by cost.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Solution:
    choice: tuple[int, ...] | None   # choice index per layer, None if infeasible
    objective: float
    cost: float
    solver: str

    @property
    def feasible(self) -> bool:
        return self.choice is not None


def _check(S, C):
    S, C = np.asarray(S, float), np.asarray(C, float)
    if S.shape != C.shape or S.ndim != 2 or 0 in S.shape:
        raise ValueError(f"sensitivity and cost tables must be equal non-empty (layers × choices), got "
                         f"{S.shape} and {C.shape}")
    allowed = np.isfinite(S) & np.isfinite(C)
    if not allowed.any(axis=1).all():
        raise ValueError(f"layers {np.flatnonzero(~allowed.any(axis=1)).tolist()} have no allowed choice")
    return S, C, allowed


def _result(S, C, choice, solver) -> Solution:
    if choice is None:
        return Solution(None, float("inf"), float("inf"), solver)
    idx = np.arange(len(choice))
    ch = np.asarray(choice)
    return Solution(tuple(int(c) for c in choice), float(S[idx, ch].sum()), float(C[idx, ch].sum()), solver)


def min_cost_choice(C) -> tuple[int, ...]:
    """The cheapest assignment (cheapest allowed choice of every layer)."""
    C = np.where(np.isfinite(C), C, np.inf)
    return tuple(int(i) for i in np.argmin(C, axis=1))


@contextlib.contextmanager
def _quiet_stdout():
    """HiGHS's C++ core sometimes prints debug lines straight to file descriptor 1, which would corrupt
    `--format json` output: point fd 1 at /dev/null for the duration of a solve."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):   # captured / replaced stdout: nothing to protect
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def solve_ilp(S, C, budget: float, *, time_limit: float = 30.0) -> Solution:
    """Exact: min Σ S·x s.t. Σ C·x ≤ budget, one choice per layer (scipy.optimize.milp / HiGHS)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    S, C, allowed = _check(S, C)
    L, K = S.shape
    if budget < np.where(allowed, C, np.inf).min(axis=1).sum() * (1 - 1e-12):
        return _result(S, C, None, "ilp")
    # HiGHS works to absolute tolerances (constraints ~1e-7, MIP gap 1e-6, not settable through
    # scipy): costs are divided by the budget (joules and seconds are ~1e-7) and the sensitivities,
    # less each layer's minimum (a constant), are scaled to a maximum of 1e4, so that the gap is
    # ~1e-10 of the objective's range; the relative gap is closed and the answer is checked
    # against the unscaled budget.
    c_scale = float(budget) if budget > 0 else 1.0
    S0 = np.where(allowed, S - np.nanmin(np.where(allowed, S, np.nan), axis=1, keepdims=True), 0.0)
    s = S0.ravel() * (1e4 / max(float(S0.max()), 1e-300))
    c = np.where(allowed, C, 0.0).ravel() / c_scale
    one_per_layer = np.kron(np.eye(L), np.ones(K))
    # HiGHS accepts a constraint violated by up to its feasibility tolerance (~1e-6 relative here): an
    # answer over the true budget is re-solved against a budget shrunk by 1e-6, 1e-5, 1e-4 of itself.
    for shrink in (0.0, 1e-6, 1e-5, 1e-4):
        constraints = [LinearConstraint(one_per_layer, 1, 1), LinearConstraint(c[None, :], -np.inf, 1.0 - shrink)]
        with _quiet_stdout():
            res = milp(s, integrality=np.ones(L * K), bounds=Bounds(0, allowed.ravel().astype(float)),
                       constraints=constraints, options={"time_limit": time_limit, "mip_rel_gap": 0.0})
        if res.status != 0 or res.x is None:
            if res.status == 2 and shrink == 0.0:   # proven infeasible
                return _result(S, C, None, "ilp")
            if res.status == 2:   # only assignments within `shrink` of the budget fit: greedy finds one
                g = solve_greedy(S, C, budget)
                return Solution(g.choice, g.objective, g.cost, "ilp (greedy within 1e-6 of the budget)")
            raise RuntimeError(f"milp did not prove an optimum (status {res.status}: {res.message})")
        x = np.rint(res.x).reshape(L, K)
        sol = _result(S, C, tuple(int(i) for i in x.argmax(axis=1)), "ilp")
        if sol.cost <= budget * (1 + 1e-12):
            return sol
    raise RuntimeError(f"milp keeps returning an assignment over the budget ({sol.cost} > {budget})")


def solve_greedy(S, C, budget: float) -> Solution:
    """Baseline: from the least sensitive choices, cheapen step by step (least ΔS per ΔC first),
    then upgrade with the budget left (most −ΔS per ΔC first)."""
    S, C, allowed = _check(S, C)
    Sm, Cm = np.where(allowed, S, np.inf), np.where(allowed, C, np.inf)
    cur = np.array([min(np.flatnonzero(allowed[l]), key=lambda k: (Sm[l, k], Cm[l, k])) for l in range(len(S))])
    rows = np.arange(len(S))
    while Cm[rows, cur].sum() > budget:
        best, step = None, None
        for l in rows:
            d_cost = Cm[l, cur[l]] - Cm[l]                 # cost saved by moving layer l to each choice
            d_sens = Sm[l] - Sm[l, cur[l]]
            ok = allowed[l] & (d_cost > 0)
            for k in np.flatnonzero(ok):
                ratio = max(d_sens[k], 0.0) / d_cost[k]
                key = (ratio, d_sens[k], -d_cost[k], l, k)
                if best is None or key < best:
                    best, step = key, (l, k)
        if step is None:
            return _result(S, C, None, "greedy")
        cur[step[0]] = step[1]
    # Refill: spend what the budget has left on the upgrades that buy the most sensitivity per cost.
    while True:
        left = budget - Cm[rows, cur].sum()
        best, step = None, None
        for l in rows:
            d_cost = Cm[l] - Cm[l, cur[l]]
            gain = Sm[l, cur[l]] - Sm[l]
            for k in np.flatnonzero(allowed[l] & (gain > 0) & (d_cost <= left)):
                key = (-gain[k] / max(d_cost[k], 1e-300), -gain[k], l, k)
                if best is None or key < best:
                    best, step = key, (l, k)
        if step is None:
            break
        cur[step[0]] = step[1]
    return _result(S, C, tuple(int(k) for k in cur), "greedy")


def solve_brute(S, C, budget: float) -> Solution:
    """Every assignment (K^L of them): the ground truth for small instances."""
    S, C, allowed = _check(S, C)
    L = len(S)
    best = None
    for choice in itertools.product(*(np.flatnonzero(allowed[l]) for l in range(L))):
        idx = np.arange(L)
        cost, obj = C[idx, choice].sum(), S[idx, choice].sum()
        if cost <= budget and (best is None or (obj, cost) < best[:2]):
            best = (obj, cost, choice)
    return _result(S, C, None if best is None else best[2], "brute")


SOLVERS = {"ilp": solve_ilp, "greedy": solve_greedy, "brute": solve_brute}
