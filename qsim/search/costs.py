"""Per-layer cost tables for the solver, and the exact cost of a whole assignment.

The solver needs an additive cost: cost(assignment) = Σ_layers cost(layer, its choice).
qsim's cost model runs layers one after another, so a layer's latency / energy / memory
depends only on its own operands: costing the network once per candidate choice (every
layer at that choice) and summing each MAC layer's rows with the ReLU / pooling rows that
follow it (`assign.owners`) gives that table. `assignment_cost` re-costs a chosen
assignment with a per-layer `CostQuant` dict; the tests check the two agree.
"""

from __future__ import annotations

import numpy as np

from qsim.search.assign import Assignment, LayerChoice, cost_dict, mac_layers, owners, uniform

METRICS = ("latency_s", "energy_j", "memory_bytes")
ALIASES = {"latency": "latency_s", "energy": "energy_j", "memory": "memory_bytes"}


def metric_column(name: str) -> str:
    """'latency' / 'latency_s' → 'latency_s' (and so on); anything else lists the options."""
    col = ALIASES.get(name, name)
    if col not in METRICS:
        raise ValueError(f"cost metric {name!r} is not one of {sorted(ALIASES)}")
    return col


def layer_cost_table(network, choices: list[LayerChoice], profile) -> dict[str, np.ndarray]:
    """{metric: array (layers × choices)} of each MAC layer's cost (with its ReLU/pool rows);
    NaN for a choice the profile cannot run."""
    from qsim.hw import cost_workload, load_profile
    from qsim.nets import get_network

    profile = load_profile(profile)
    wl = get_network(network).workload
    layers = mac_layers(network)
    own = owners(network)
    row = {n: i for i, n in enumerate(layers)}
    out = {m: np.zeros((len(layers), len(choices))) for m in METRICS}
    for k, choice in enumerate(choices):
        try:
            df = cost_workload(wl, cost_dict(network, uniform(network, choice)), profile)
        except ValueError:   # a choice this chip cannot run (e.g. fp32 on Bit Fusion): not allowed
            for m in METRICS:
                out[m][:, k] = np.nan
            continue
        for name, *vals in df[["name", *METRICS]].itertuples(index=False):
            r = row[own[name]] if own[name] else 0     # fixed-cost layers: a constant, booked on the first row
            for m, v in zip(METRICS, vals):
                out[m][r, k] += float(v)
    return out


def assignment_cost(network, assignment: Assignment, profile) -> dict:
    """Whole-network totals of one assignment on one profile (the cost model's own `totals`)."""
    from qsim.hw import cost_workload, load_profile, totals

    t = totals(cost_workload(get_network_workload(network), cost_dict(network, assignment), load_profile(profile)))
    return {m: float(t[m]) for m in METRICS}


def float_cost(network, profile) -> dict:
    """The fp32 network's cost (the study's float baseline: fp32 operands, no scales), or
    {"note": why} where the profile has no fp32 unit (e.g. Bit Fusion: integers only)."""
    from qsim.search.assign import FLOAT

    try:
        return assignment_cost(network, uniform(network, FLOAT), profile)
    except ValueError as exc:
        return {"note": str(exc)}


def get_network_workload(network):
    from qsim.nets import get_network

    return get_network(network).workload
