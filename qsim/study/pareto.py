"""Pareto fronts of result tables (any number of objectives, min or max each)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_mask(df: pd.DataFrame, objectives: dict[str, str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows; rows with a NaN objective are never on the front.

    Sweep in lexicographic order: a point can only be dominated by points before it,
    and only front points need checking, so the cost is O(n · |front|).
    """
    cols = [c for c in objectives if c in df.columns]
    if not cols or df.empty:
        return np.zeros(len(df), dtype=bool)
    costs = np.column_stack([
        -df[c].to_numpy(dtype=float) if objectives[c] == "max" else df[c].to_numpy(dtype=float) for c in cols
    ])
    valid = ~np.isnan(costs).any(axis=1)
    idx = np.flatnonzero(valid)
    order = idx[np.lexsort(costs[idx].T[::-1])]
    front: list[int] = []
    front_costs = np.empty((0, len(cols)))
    for i in order:
        c = costs[i]
        if front and np.any(np.all(front_costs <= c, axis=1) & np.any(front_costs < c, axis=1)):
            continue
        if front and np.any(np.all(front_costs == c, axis=1)):
            front.append(i)  # ties with a front point are equally good: keep them
            front_costs = np.vstack([front_costs, c])
            continue
        front.append(i)
        front_costs = np.vstack([front_costs, c])
    mask = np.zeros(len(df), dtype=bool)
    mask[front] = True
    return mask


def pareto_table(df: pd.DataFrame, objectives: dict[str, str], group: str = "profile",
                 within: str | None = None) -> pd.DataFrame:
    """Non-dominated rows per `group` value and overall, with a `pareto_scope` column.

    `within` (e.g. "target") keeps fronts apart per value of that column: designs for
    different networks or workloads never dominate each other.
    """
    parts = []
    blocks = df.groupby(within, sort=False) if within and within in df.columns else [(None, df)]
    for _, block in blocks:
        for value, sub in block.groupby(group, sort=True):
            front = sub[pareto_mask(sub, objectives)].copy()
            front.insert(0, "pareto_scope", f"{group}:{value}")
            parts.append(front)
        overall = block[pareto_mask(block, objectives)].copy()
        overall.insert(0, "pareto_scope", "overall")
        parts.append(overall)
    return pd.concat(parts, ignore_index=True)
