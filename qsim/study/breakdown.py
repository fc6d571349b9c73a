"""Per-layer plots of one design point: latency/energy breakdown and the roofline.

The design point is the spec's `breakdown` (a partial config, e.g. {wbits: 4,
granularity: group}) or, by default, the most accurate point on each profile's front
with the least energy. Its per-layer cost is recomputed with `cost_workload` — one
cheap cost evaluation, no accuracy work.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from qsim.study.plots import _save  # noqa: E402
from qsim.study.spec import DesignConfig  # noqa: E402


def chosen_point(table: pd.DataFrame, breakdown: dict | None) -> pd.Series:
    """Row of the design point to break down (for one target × profile slice)."""
    rows = table
    for key, value in (breakdown or {}).items():
        if key in rows.columns:
            rows = rows[rows[key] == value]
    if rows.empty:
        raise ValueError(f"breakdown {breakdown!r} matches no design point of the study")
    if "accuracy" in rows.columns and rows["accuracy"].notna().any():
        return rows.sort_values(["accuracy", "energy_j"], ascending=[False, True]).iloc[0]
    return rows.sort_values("energy_j").iloc[0]


def _config_of(row: pd.Series) -> DesignConfig:
    fields = DesignConfig.__dataclass_fields__
    vals = {k: (None if isinstance(row[k], float) and np.isnan(row[k]) else row[k]) for k in fields}
    for k in ("wbits", "acc_bits"):
        vals[k] = int(vals[k])
    for k in ("abits", "group_size"):
        vals[k] = None if vals[k] is None else int(vals[k])
    return DesignConfig(**vals)


def layer_costs(row: pd.Series, spec) -> tuple[pd.DataFrame, object]:
    from qsim.hw import cost_workload, load_profile
    from qsim.study.runner import cost_quant, workload_of

    profile = load_profile(row.get("profile_source", row["profile"]))
    workload = workload_of(row["target"], bool(spec.networks))
    return cost_workload(workload, cost_quant(_config_of(row)), profile), profile


def breakdown_plot(row: pd.Series, layers: pd.DataFrame, out: Path) -> list[Path]:
    """Stacked bars per layer: latency (compute vs stall) and energy by component."""
    layers = layers[layers["cycles"] > 0]
    period = float((layers["latency_s"] / layers["cycles"]).iloc[0])
    names = layers["name"].tolist()
    x = np.arange(len(names))
    fig, (ax_t, ax_e) = plt.subplots(2, 1, figsize=(max(6, 0.45 * len(names) + 2), 7), sharex=True)
    compute = np.minimum(layers["compute_cycles"], layers["cycles"]) * period * 1e6
    stall = layers["latency_s"] * 1e6 - compute
    ax_t.bar(x, compute, label="compute", color="#4c72b0")
    ax_t.bar(x, stall, bottom=compute, label="memory stall", color="#dd8452")
    ax_t.set_ylabel("latency [µs]")
    ax_t.legend(fontsize=8)
    bottom = np.zeros(len(names))
    parts = [c for c in layers.columns if c.startswith("energy_") and c.endswith("_j") and c != "energy_j"]
    cmap = plt.get_cmap("tab10")
    for i, col in enumerate(parts):
        vals = layers[col].to_numpy(dtype=float) * 1e6
        ax_e.bar(x, vals, bottom=bottom, label=col[len("energy_"):-2], color=cmap(i % 10))
        bottom += vals
    ax_e.set_ylabel("energy [µJ]")
    ax_e.legend(fontsize=8, ncol=min(len(parts), 4))
    ax_e.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    fig.suptitle(f"{row['target']} on {row['profile']}: per-layer breakdown of {row['label']}")
    return _save(fig, out / f"breakdown_{row['target']}_{row['profile']}")


def roofline_plot(row: pd.Series, layers: pd.DataFrame, profile, out: Path) -> list[Path]:
    """Attained MAC/s of each MAC layer against the compute roof and the DRAM bandwidth roof."""
    mac = layers[(layers["macs"] > 0) & (layers["latency_s"] > 0)]
    clock = float(profile.clock)
    peak = float(mac["peak_macs_per_cycle"].max()) * clock
    bw = float(profile.dram.bandwidth)
    intensity = mac["intensity_macs_per_dram_byte"].to_numpy(dtype=float)
    attained = mac["macs"].to_numpy(dtype=float) / mac["latency_s"].to_numpy(dtype=float)
    finite = intensity[np.isfinite(intensity) & (intensity > 0)]
    lo = min(finite.min() if finite.size else 1.0, peak / bw) / 4
    hi = max(finite.max() if finite.size else 1.0, peak / bw) * 4
    xs = np.geomspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.plot(xs, np.minimum(peak, bw * xs), color="k", lw=1.5, label=f"roof: {peak / 1e9:.3g} GMAC/s, {bw / 1e9:.3g} GB/s")
    shown = np.where(np.isfinite(intensity) & (intensity > 0), intensity, hi)  # all-on-chip layers: right edge
    ax.scatter(shown, attained, c=np.arange(len(mac)), cmap="viridis", edgecolor="k", zorder=3)
    for xi, yi, name in zip(shown, attained, mac["name"]):
        ax.annotate(name, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity [MAC / DRAM byte]")
    ax.set_ylabel("attained throughput [MAC/s]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Roofline of {row['profile']}: {row['target']} layers at {row['label']}")
    return _save(fig, out / f"roofline_{row['target']}_{row['profile']}")


def breakdown_jobs(table: pd.DataFrame, spec, out: Path) -> list[tuple]:
    """(row, spec, out) per target × profile: the design point each breakdown/roofline figure shows."""
    jobs = []
    breakdown = spec.raw.get("breakdown") if hasattr(spec, "raw") else None
    for (target, profile), sub in table.groupby(["target", "profile"], sort=True):
        if "wfloat" in sub.columns and sub["wfloat"].isna().any():
            sub = sub[sub["wfloat"].isna()]  # break down a quantized design, not the float baseline
        jobs.append((chosen_point(sub, breakdown), spec, out))
    return jobs


def draw_breakdown_of(row: pd.Series, spec, out: Path) -> list[Path]:
    layers, prof = layer_costs(row, spec)
    return breakdown_plot(row, layers, out) + roofline_plot(row, layers, prof, out)


def draw_breakdowns(table: pd.DataFrame, spec, out: Path) -> list[Path]:
    files: list[Path] = []
    for args in breakdown_jobs(table, spec, out):
        files += draw_breakdown_of(*args)
    return files
