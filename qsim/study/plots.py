"""Study plots (matplotlib, PNG + SVG): Pareto scatters, per-layer breakdown, roofline."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from qsim.study.pareto import pareto_mask  # noqa: E402

COST_AXES = {  # column: (axis label, scale to the unit)
    "energy_j": ("energy per inference [µJ]", 1e6),
    "latency_s": ("latency per inference [µs]", 1e6),
    "memory_bytes": ("weight memory incl. scales [KiB]", 1 / 1024),
}
MARKERS = {"tensor": "o", "channel": "s", "group": "^", "global": "D"}


def _save(fig, path: Path) -> list[Path]:
    fig.savefig(path.with_suffix(".png"), dpi=120, bbox_inches="tight")
    fig.savefig(path.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return [path.with_suffix(".png"), path.with_suffix(".svg")]


def pareto_scatter(table: pd.DataFrame, target: str, profile: str, out: Path) -> list[Path]:
    """Accuracy vs energy, latency and memory; colour = weight bits, marker = granularity, front as a step line."""
    sub = table[(table["target"] == target) & (table["profile"] == profile)]
    has_acc = "accuracy" in sub.columns and sub["accuracy"].notna().any()
    y_col = "accuracy" if has_acc else "latency_s"
    axes_cols = [c for c in COST_AXES if c in sub.columns and c != y_col]
    fig, axes = plt.subplots(1, len(axes_cols), figsize=(5.2 * len(axes_cols), 4.2), squeeze=False)
    bits = sorted(sub["wbits"].unique())
    cmap = plt.get_cmap("viridis", max(len(bits), 2))
    for ax, x_col in zip(axes[0], axes_cols):
        label, unit = COST_AXES[x_col]
        y_scale = 100.0 if has_acc else COST_AXES["latency_s"][1]
        color_of = {b: cmap(i) for i, b in enumerate(bits)}
        for gran, marker in MARKERS.items():
            pts = sub[sub["granularity"] == gran]
            if len(pts):  # one artist per marker kind: fast to draw, small SVGs
                ax.scatter(pts[x_col] * unit, pts[y_col] * y_scale, marker=marker, s=36, alpha=0.85,
                           c=[color_of[b] for b in pts["wbits"]], edgecolor="k", linewidth=0.4)
        front = sub[pareto_mask(sub, {y_col: "max" if has_acc else "min", x_col: "min"})].sort_values(x_col)
        ax.step(front[x_col] * unit, front[y_col] * y_scale, where="post", color="crimson", lw=1.4, label="Pareto front")
        xs = sub[x_col].to_numpy(dtype=float)
        if np.nanmin(xs) > 0 and np.nanmax(xs) / np.nanmin(xs) > 20:  # log only where it spreads the points
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy [%]" if has_acc else "latency [µs]")
        ax.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=cmap(i), marker="o", ls="", label=f"W{b}") for i, b in enumerate(bits)]
    handles += [plt.Line2D([], [], color="gray", marker=m, ls="", label=g) for g, m in MARKERS.items()
                if (sub["granularity"] == g).any()]
    handles.append(plt.Line2D([], [], color="crimson", label="Pareto front"))
    axes[0][-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle(f"{target} on {profile}: accuracy / cost trade-off" if has_acc else f"{target} on {profile}: cost trade-off")
    return _save(fig, out / f"pareto_{target}_{profile}")


def draw_all(out: Path, table: pd.DataFrame, front: pd.DataFrame, spec) -> list[Path]:
    """Every plot of a study; returns the files written."""
    plot_dir = Path(out) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for target in table["target"].unique():
        for profile in table["profile"].unique():
            files += pareto_scatter(table, target, profile, plot_dir)
    try:
        from qsim.study.breakdown import draw_breakdowns

        files += draw_breakdowns(table, spec, plot_dir)
    except ImportError:
        pass
    return files


