"""The mixed-precision driver: sweep budgets, solve, re-evaluate end to end, compare to uniform.

Why re-evaluate: the solver adds per-layer sensitivities, but quantization errors of
different layers interact, so a proxy optimum is only a candidate. Every assignment a
solver returns is run through the integer executor on the test split (`evaluate_assignment`,
cached on disk) and costed exactly on the profile; the fronts and the dominance count are
computed from those measured numbers only.

`mixed_precision` traces the whole front: budgets from the cheapest assignment up to the
given budget (geometric steps, plus every uniform configuration's cost), ILP and greedy at
each. `autoquant` returns the cheapest measured assignment (mixed or uniform) whose metric
reaches a floor.
"""

from __future__ import annotations

import re
import time

import numpy as np

from qsim.search import transformer
from qsim.search.assign import FLOAT, Assignment, LayerChoice, executor_args, expand, mac_layers, parse_choice, uniform
from qsim.search.cache import JsonCache, NoCache, code_hash, stable_hash, weights_hash
from qsim.search.costs import METRICS, assignment_cost, float_cost, layer_cost_table, metric_column
from qsim.search.sensitivity import sensitivities
from qsim.search.solver import min_cost_choice, solve_greedy, solve_ilp

UNITS = {"latency_s": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9},
         "energy_j": {"j": 1.0, "mj": 1e-3, "uj": 1e-6, "µj": 1e-6, "nj": 1e-9, "pj": 1e-12},
         "memory_bytes": {"b": 1.0, "kb": 1e3, "kib": 1024.0, "mb": 1e6, "mib": 1024.0 ** 2}}
UNIT_NAMES = {"latency_s": "s", "energy_j": "J", "memory_bytes": "B"}


class Infeasible(ValueError):
    """No assignment meets the request; `cheapest` (an Assignment) and `detail` say what does exist."""

    def __init__(self, message: str, cheapest: Assignment | None = None, detail: dict | None = None):
        super().__init__(message)
        self.cheapest = cheapest
        self.detail = detail or {}


# -- inputs ----------------------------------------------------------------------------
def parse_budget(text: str, reference: dict | None = None) -> tuple[str, float]:
    """'energy=0.4uJ' / 'latency=2e-6' / 'memory=4KiB' / 'energy=0.5x' (× the uniform W8A8 cost)."""
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"--budget must be METRIC=VALUE with METRIC latency, energy or memory, got {text!r}")
    name, value = text.split("=", 1)
    col = metric_column(name.strip())
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([a-zA-Zµ]*)\s*", value)
    if not m:
        raise ValueError(f"--budget {text!r}: {value!r} is not a number with an optional unit")
    try:
        number = float(m.group(1))
    except ValueError:
        raise ValueError(f"--budget {text!r}: {m.group(1)!r} is not a number") from None
    unit = m.group(2).lower()
    if unit == "x":
        if reference is None:
            raise ValueError("a relative budget (…x) needs the uniform W8A8 cost")
        return col, number * reference[col]
    scale = UNITS[col].get(unit) if unit else 1.0
    if scale is None:
        raise ValueError(f"--budget {text!r}: unit {m.group(2)!r} is not one of {sorted(UNITS[col])} or 'x' "
                         f"(a multiple of the uniform W8A8 cost)")
    if not number > 0:
        raise ValueError(f"--budget {text!r}: the budget must be positive")
    return col, number * scale


def candidate_choices(bits=(2, 3, 4, 6, 8), abits=None, granularity=("channel",), scheme="symmetric",
                      allow_float: bool = False) -> list[LayerChoice]:
    """Every (wbits, abits, granularity) the solver may give a layer."""
    abits = bits if abits is None else abits
    out = []
    for g in granularity:
        gran, gs = ("group", int(g[5:])) if str(g).startswith("group") and str(g)[5:].isdigit() else (g, None)
        if gran == "group" and gs is None:
            raise ValueError("granularity group needs its size: write group16, group32, …")
        for w in bits:
            for a in abits:
                out.append(LayerChoice(int(w), int(a), scheme, gran, gs))
    if allow_float:
        out.append(FLOAT)
    return list(dict.fromkeys(out))


def parse_bits(text) -> list[int]:
    if isinstance(text, (list, tuple)):
        return [int(b) for b in text]
    try:
        return [int(b) for b in str(text).split(",") if b.strip()]
    except ValueError:
        raise ValueError(f"bits must be comma-separated integers like 2,3,4,6,8, got {text!r}") from None


# -- measured points ---------------------------------------------------------------------
def evaluate_assignment(network: str, assignment: Assignment, *, calib_size: int = 256, eval_size=None,
                        cache: JsonCache | None = None) -> dict:
    """{"metric", "float_metric", "sqnr_db", "numerics"} of an assignment on the test split, through
    the integer executor (`qsim.nets.evaluate` with per-layer overrides); cached on disk."""
    from qsim.nets import evaluate

    cache = cache or NoCache()
    key = stable_hash({"network": network, "weights": weights_hash(network), "assignment": assignment.hash,
                       "calib_size": calib_size, "eval_size": eval_size, "code": code_hash()})
    rec = cache.get("evaluation", key)
    if rec is None:
        if transformer.is_transformer(network):   # its own evaluator, without the per-block float run in lockstep
            from qsim.nets.minilm import evaluate_minilm

            res = evaluate_minilm(**executor_args(assignment, network), calib_size=calib_size, eval_size=eval_size,
                                  per_layer=False)
        else:
            res = evaluate(network, **executor_args(assignment, network), calib_size=calib_size, eval_size=eval_size)
        q = res["quantized"]
        rec = {"metric": q["metric"], "float_metric": res["float"]["metric"], "sqnr_db": q["sqnr_db"],
               "numerics": q.get("numerics", ""), "metric_name": res.get("metric", "accuracy")}
        cache.put("evaluation", key, rec)
    return rec


def float_metric(network: str, eval_size, cache: JsonCache) -> dict:
    """{"float_metric", "metric_name"} of the fp32 network on the evaluated samples (cached)."""
    from qsim.nets import evaluate

    key = stable_hash({"network": network, "weights": weights_hash(network), "eval_size": eval_size,
                       "code": code_hash(), "float": True})
    rec = cache.get("evaluation", key)
    if rec is None:
        res = evaluate(network, eval_size=eval_size)
        rec = {"float_metric": res["float"]["metric"], "metric_name": res.get("metric", "accuracy")}
        cache.put("evaluation", key, rec)
    return rec


def _point(network, assignment, profile, settings, cache, **extra) -> dict:
    rec = evaluate_assignment(network, assignment, calib_size=settings["calib_size"],
                              eval_size=settings["eval_size"], cache=cache)
    return {"assignment": assignment.compact(), "hash": assignment.hash, "label": assignment.label(),
            "metric": rec["metric"], "sqnr_db": rec["sqnr_db"], **assignment_cost(network, assignment, profile),
            **extra}


def pareto(points: list[dict], cost: str) -> list[dict]:
    """Points not beaten by another with metric ≥ and cost ≤ (one strictly better), cheapest first."""
    pts = sorted(points, key=lambda p: (p[cost], -p["metric"]))
    front, best = [], -np.inf
    for p in pts:
        if p["metric"] > best:
            front.append(p)
            best = p["metric"]
    return front


def dominance(front: list[dict], uniform_pts: list[dict], cost: str) -> dict:
    """Uniform points beaten by a mixed point with equal or better metric at strictly lower cost.

    Also counted over the uniform points that no other uniform point beats (`efficient`): a grid
    point such as W8A2 that W4A4 already beats is easy to beat, so this is the stricter count."""
    beaten = []
    for u in uniform_pts:
        wins = [f for f in front if f["metric"] >= u["metric"] and f[cost] < u[cost] * (1 - 1e-9)]
        if wins:
            w = min(wins, key=lambda f: f[cost])
            beaten.append({"uniform": u["config"], "by": w["hash"], "saving": 1 - w[cost] / u[cost]})
    n = len(uniform_pts)
    savings = [b["saving"] for b in beaten]
    efficient = [u["config"] for u in pareto(uniform_pts, cost)]
    won = {b["uniform"] for b in beaten}
    return {"dominated": len(beaten), "uniform_points": n, "fraction": len(beaten) / n if n else 0.0,
            "efficient_points": len(efficient), "efficient_dominated": sum(c in won for c in efficient),
            "dominates": 2 * len(beaten) >= n,
            "median_saving": float(np.median(savings)) if savings else 0.0,   # a T4's 1e-6 is not a win
            "beaten": beaten}


# -- the driver ----------------------------------------------------------------------------
def _setup(network, profile, choices, fixed, method, settings, cache, progress):
    layers = mac_layers(network)
    if not choices:
        raise ValueError("no candidate choices: give --bits")
    fixed_a = expand(network, fixed) if fixed else None
    fixed_layers = set()
    if fixed:   # layers pinned by overrides: only their own choice is allowed
        import fnmatch

        fixed_layers = {n for n in layers if any(fnmatch.fnmatchcase(n, p) for p in fixed)}
        choices = list(dict.fromkeys(list(choices) + [fixed_a[n] for n in fixed_layers]))
    t0 = time.perf_counter()
    sens = sensitivities(network, choices, method=method, samples=settings["sens_samples"],
                         calib_size=settings["calib_size"], cache=cache, progress=progress)
    t_sens = time.perf_counter() - t0
    costs = layer_cost_table(network, choices, profile)
    allowed = np.ones((len(layers), len(choices)), bool)
    for i, n in enumerate(layers):
        if n in fixed_layers:
            allowed[i] = [c == fixed_a[n] for c in choices]
    return layers, choices, sens, costs, allowed, t_sens


def _assignment(layers, choices, sol) -> Assignment:
    return Assignment((n, choices[k]) for n, k in zip(layers, sol.choice))


def mixed_precision(network: str, profile: str, budget: str | tuple | None = None, *, objective: str = "energy",
                    bits=(2, 3, 4, 6, 8),
                    abits=None, granularity=("channel",), allow_float: bool = False, fixed: dict | None = None,
                    method: str = "kl", n_budgets: int = 16, eval_size=None, calib_size: int = 256,
                    sens_samples: int = 512, cache: JsonCache | None = None, progress=None,
                    uniform_choices=None) -> dict:
    """The mixed Pareto front of `network` on `profile` up to `budget` ("energy=0.4uJ", (column,
    value), or None: the whole range of `objective`), beside every uniform configuration and the
    fp32 baseline; every metric re-evaluated through the integer kernels."""
    from qsim.hw import load_profile

    t_start = time.perf_counter()
    load_profile(profile)   # an unknown profile fails before any work
    cache = cache if cache is not None else NoCache()
    settings = {"eval_size": eval_size, "calib_size": calib_size, "sens_samples": sens_samples}
    if abits is None and transformer.is_transformer(network):
        abits = list(transformer.DEFAULT_ABITS)   # below A4 its per-tensor activations collapse the metric
    choices = candidate_choices(parse_bits(bits), None if abits is None else parse_bits(abits), granularity,
                                allow_float=allow_float)
    w8 = assignment_cost(network, uniform(network, LayerChoice()), profile)
    if budget is None:
        col, limit = metric_column(objective), None
    elif isinstance(budget, tuple):
        col, limit = metric_column(budget[0]), float(budget[1])
    else:
        col, limit = parse_budget(budget, w8)
    layers, choices, sens, costs, allowed, t_sens = _setup(network, profile, choices, fixed, method, settings,
                                                           cache, progress)
    S = np.where(allowed, sens.objective, np.nan)
    C = np.where(allowed, costs[col], np.nan)
    cheapest = _assignment(layers, choices, type("S", (), {"choice": min_cost_choice(C)}))
    lo = float(np.nansum(np.nanmin(C, axis=1)))
    hi = float(np.nansum(np.nanmax(C, axis=1)))
    if limit is not None and limit < lo * (1 - 1e-12):
        cost = assignment_cost(network, cheapest, profile)
        raise Infeasible(f"budget {col}={limit:.4g} {UNIT_NAMES[col]} is below the cheapest feasible assignment "
                         f"({cheapest.label()}: {col}={cost[col]:.4g} {UNIT_NAMES[col]}); raise the budget to at "
                         f"least that", cheapest, {"cheapest_cost": cost, "budget": limit, "objective": col})
    top = hi if limit is None else min(limit, hi)
    uni_choices = list(uniform_choices) if uniform_choices is not None else [c for c in choices if not c.is_float]
    uni_costs = sorted({assignment_cost(network, uniform(network, c), profile)[col] for c in uni_choices})
    budgets = sorted(set(np.geomspace(lo, top, max(n_budgets, 2)).tolist()) |
                     {b for b in uni_costs if lo <= b <= top} | {top})
    t0 = time.perf_counter()
    solved = {"ilp": [], "greedy": []}
    for b in budgets:
        for name, fn in (("ilp", solve_ilp), ("greedy", solve_greedy)):
            sol = fn(S, C, b)
            solved[name].append((b, sol))
    t_solve = time.perf_counter() - t0
    t0 = time.perf_counter()
    points: dict[str, dict] = {}
    per_budget = []
    for (b, si), (_, sg) in zip(solved["ilp"], solved["greedy"]):
        row = {"budget": b}
        for name, sol in (("ilp", si), ("greedy", sg)):
            if not sol.feasible:
                row[name] = None
                continue
            a = _assignment(layers, choices, sol)
            if a.hash not in points:
                points[a.hash] = _point(network, a, profile, settings, cache, proxy=sol.objective, solvers=[])
            if name not in points[a.hash]["solvers"]:
                points[a.hash]["solvers"].append(name)
            row[name] = {"hash": a.hash, "proxy": sol.objective, "metric": points[a.hash]["metric"],
                         col: points[a.hash][col]}
        per_budget.append(row)
    uni = []
    for c in uni_choices:
        p = _point(network, uniform(network, c), profile, settings, cache)
        uni.append({"config": c.label(), "metric": p["metric"], **{m: p[m] for m in METRICS},
                    "choice": c.compact()})
    t_eval = time.perf_counter() - t0
    ilp_pts = [p for p in points.values() if "ilp" in p["solvers"]]
    greedy_pts = [p for p in points.values() if "greedy" in p["solvers"]]
    front = pareto(ilp_pts, col)
    fp = float_metric(network, eval_size, cache)
    result = {
        "network": network, "profile": profile, "objective": col,
        "uniform": uni,
        "front": [_entry(p) for p in front],
        "budget": limit, "budget_range": [lo, hi],
        "float": {"metric": fp["float_metric"], **float_cost(network, profile)},
        "metric_name": fp["metric_name"],
        "sensitivity": {"method": sens.method, "description": sens.describe(), **sens.info},
        "choices": [c.label() for c in choices],
        "greedy_front": [_entry(p) for p in pareto(greedy_pts, col)],
        "points": [_entry(p) for p in points.values()],
        "per_budget": per_budget,
        "dominance": dominance(front, [u for u in uni if limit is None or u[col] <= limit] or uni, col),
        "ilp_vs_greedy": compare_solvers(per_budget, col),
        "timings_s": {"sensitivity": round(t_sens, 3), "solve": round(t_solve, 3),
                      "reevaluate": round(t_eval, 3), "total": round(time.perf_counter() - t_start, 3)},
        "settings": {**settings, "bits": parse_bits(bits), "granularity": list(granularity),
                     "n_budgets": len(budgets), "cache_hits": cache.hits},
    }
    if limit is not None:
        within = [p for p in front if p[col] <= limit]
        result["chosen"] = _entry(max(within, key=lambda p: (p["metric"], -p[col]))) if within else None
    return result


def _entry(p: dict) -> dict:
    keep = ("assignment", "metric", "latency_s", "energy_j", "memory_bytes", "hash", "label", "sqnr_db",
            "proxy", "solvers")
    return {k: p[k] for k in keep if k in p}


def compare_solvers(per_budget: list[dict], col: str) -> dict:
    """Per budget: ILP vs greedy proxy objective and re-evaluated metric (ILP proxy is never worse)."""
    rows = [r for r in per_budget if r.get("ilp") and r.get("greedy")]
    if not rows:
        return {"budgets": 0}
    d_proxy = [r["greedy"]["proxy"] - r["ilp"]["proxy"] for r in rows]
    d_metric = [r["ilp"]["metric"] - r["greedy"]["metric"] for r in rows]
    return {"budgets": len(rows),
            "same_assignment": sum(r["ilp"]["hash"] == r["greedy"]["hash"] for r in rows),
            "ilp_proxy_better": sum(d > 1e-12 for d in d_proxy),
            "greedy_proxy_better": sum(d < -1e-9 for d in d_proxy),
            "ilp_metric_better": sum(d > 0 for d in d_metric),
            "greedy_metric_better": sum(d < 0 for d in d_metric),
            "mean_metric_gain": float(np.mean(d_metric))}


def autoquant(network: str, profile: str, min_metric: float, minimize: str = "energy", **kwargs) -> dict:
    """The cheapest measured assignment (a mixed front point or a uniform one) with metric ≥ min_metric.

    Traces the whole front for `minimize` (every budget from the cheapest assignment to the
    most expensive), so the answer is the cheapest of all re-evaluated candidates."""
    if isinstance(min_metric, bool) or not isinstance(min_metric, (int, float)) or not -1 <= min_metric <= 1:
        raise ValueError(f"--min-metric is a fraction like 0.95 (accuracy) or a correlation, got {min_metric!r}")
    col = metric_column(minimize)
    res = mixed_precision(network, profile, None, objective=col, **kwargs)
    cands = res["points"] + [{"assignment": uniform(network, parse_choice(u["choice"])).compact(),
                              "hash": uniform(network, parse_choice(u["choice"])).hash,
                              "label": f"uniform {u['config']}", **u} for u in res["uniform"]]
    ok = [p for p in cands if p["metric"] >= min_metric]
    if not ok:
        best = max(cands, key=lambda p: p["metric"])
        cheapest = min(cands, key=lambda p: p[col])
        raise Infeasible(f"no assignment reaches {res['metric_name']} >= {min_metric}: the most accurate one found "
                         f"({best['label']}) reaches {best['metric']:.4f} (fp32: {res['float']['metric']:.4f}); "
                         f"the cheapest feasible assignment (for a floor <= {cheapest['metric']:.4f}) is "
                         f"{cheapest['label']}", None, {"best": best, "cheapest": cheapest})
    best = min(ok, key=lambda p: (p[col], -p["metric"]))
    out = _entry(best)
    out.update(network=network, profile=profile, objective=col, min_metric=min_metric,
               metric_name=res["metric_name"], float_metric=res["float"]["metric"], candidates=len(cands),
               sensitivity=res["sensitivity"]["method"], timings_s=res["timings_s"])
    return out
