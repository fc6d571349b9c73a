"""Study plots (matplotlib, PNG + SVG): Pareto scatters, per-layer breakdown, roofline."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.fonttype"] = "none"  # SVG text stays text: searchable, smaller, crisp in the HTML report
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

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


def _abits_label(row_abits, afloat) -> str:
    return f"A{int(row_abits)}" if row_abits == row_abits and row_abits is not None else f"A{afloat or 'fp16'} (float)"


def pareto_scatter(table: pd.DataFrame, target: str, profile: str, out: Path) -> list[Path]:
    """Accuracy vs energy, latency and memory.

    One row of panels per activation width (A8, A4, float, …); colour = weight bits, marker =
    granularity; the red step line is the front over all rows; float baselines are black stars."""
    sub = table[(table["target"] == target) & (table["profile"] == profile)]
    base = sub[sub["wfloat"].notna()] if "wfloat" in sub.columns else sub.iloc[:0]
    quant = sub.drop(base.index)
    has_acc = "accuracy" in sub.columns and sub["accuracy"].notna().any()
    y_col = "accuracy" if has_acc else "latency_s"
    y_scale = 100.0 if has_acc else COST_AXES["latency_s"][1]
    axes_cols = [c for c in COST_AXES if c in sub.columns and c != y_col]
    afloat = quant["afloat"] if "afloat" in quant.columns else pd.Series(None, index=quant.index, dtype=object)
    a_keys = [_abits_label(a, f) for a, f in zip(quant["abits"], afloat)]
    rows = sorted(set(a_keys), key=lambda k: (k.endswith("(float)"), -int(k[1:]) if k[1:].isdigit() else 0, k))
    rows = rows or ["A"]
    fig, axes = plt.subplots(len(rows), len(axes_cols), figsize=(5.2 * len(axes_cols), 3.9 * len(rows)),
                             squeeze=False)
    bits = sorted(quant["wbits"].unique())
    cmap = plt.get_cmap("viridis", max(len(bits), 2))
    color_of = {b: cmap(i) for i, b in enumerate(bits)}
    notes = []
    for j, x_col in enumerate(axes_cols):
        label, unit = COST_AXES[x_col]
        front = quant[pareto_mask(quant, {y_col: "max" if has_acc else "min", x_col: "min"})].sort_values(x_col)
        xs = sub[x_col].to_numpy(dtype=float)
        finite = xs[np.isfinite(xs)]
        q_xs = quant[x_col].to_numpy(dtype=float)
        q_xs = q_xs[np.isfinite(q_xs)]
        flat = q_xs.size > 1 and np.max(q_xs) == np.min(q_xs)  # every quantized config costs the same
        for i, key in enumerate(rows):
            ax = axes[i][j]
            pts_row = quant[[k == key for k in a_keys]]
            for gran, marker in MARKERS.items():
                pts = pts_row[pts_row["granularity"] == gran]
                if len(pts):  # one artist per marker kind: fast to draw, small SVGs
                    ax.scatter(pts[x_col] * unit, pts[y_col] * y_scale, marker=marker, s=36, alpha=0.85,
                               c=[color_of[b] for b in pts["wbits"]], edgecolor="k", linewidth=0.4)
            ax.step(front[x_col] * unit, front[y_col] * y_scale, where="post", color="crimson", lw=1.4)
            for _, b in base.iterrows():
                ax.scatter([b[x_col] * unit], [b[y_col] * y_scale], marker="*", s=160, color="k", zorder=4)
                ax.annotate(str(b["wfloat"]), (b[x_col] * unit, b[y_col] * y_scale), fontsize=8,
                            xytext=(5, -9), textcoords="offset points")
            if finite.size and np.nanmin(finite) > 0 and np.nanmax(finite) / np.nanmin(finite) > 20:
                ax.set_xscale("log")  # log only where it spreads the points
                ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            if flat:
                ax.text(0.5, 0.04, "flat: every quantized config costs the same here", transform=ax.transAxes,
                        ha="center", fontsize=7, color="dimgray")
            ax.set_xlabel(label if i == len(rows) - 1 else "")
            ax.set_ylabel(f"{key}: " + ("accuracy [%]" if has_acc else "latency [µs]"))
            ax.grid(True, which="both", alpha=0.3)
        if flat:
            used = sorted(str(v) for v in quant.get("precision_used", pd.Series(dtype=object)).dropna().unique())
            notes.append(f"{label.split(' [')[0]} is the same for every quantized config on {profile}"
                         + (f" (it runs them all at {', '.join(used)})" if used else ""))
    handles = [plt.Line2D([], [], color=cmap(i), marker="o", ls="", label=f"W{b}") for i, b in enumerate(bits)]
    handles += [plt.Line2D([], [], color="gray", marker=m, ls="", label=g) for g, m in MARKERS.items()
                if (quant["granularity"] == g).any()]
    handles.append(plt.Line2D([], [], color="crimson", label="Pareto front (all A widths)"))
    if len(base):
        handles.append(plt.Line2D([], [], color="k", marker="*", ms=10, ls="", label="float baseline"))
    axes[0][-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    title = f"{target} on {profile}: accuracy / cost trade-off" if has_acc else f"{target} on {profile}: cost trade-off"
    fig.suptitle(title + ("\nnote: " + "; ".join(notes) if notes else ""), fontsize=10 if notes else 12)
    return _save(fig, out / f"pareto_{target}_{profile}")


def _draw_one(job) -> list[Path]:
    kind, args = job
    if kind == "pareto":
        return pareto_scatter(*args)
    from qsim.study.breakdown import draw_breakdown_of

    return draw_breakdown_of(*args)


def draw_all(out: Path, table: pd.DataFrame, front: pd.DataFrame, spec, progress: bool = False,
             jobs: int | None = None) -> list[Path]:
    """Every plot of a study, drawn in parallel worker processes; returns the files written."""
    from qsim.study.breakdown import breakdown_jobs

    plot_dir = Path(out) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    work = [("pareto", (table, target, profile, plot_dir))
            for target in table["target"].unique() for profile in table["profile"].unique()]
    work += [("breakdown", args) for args in breakdown_jobs(table, spec, plot_dir)]
    jobs = jobs or min(len(work), os.cpu_count() or 1, 4)
    files: list[Path] = []
    bar = tqdm(total=len(work), desc="plots", unit="figure", disable=not progress)
    if jobs <= 1 or len(work) <= 1:
        for job in work:
            files += _draw_one(job)
            bar.update()
    else:
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            for result in pool.map(_draw_one, work):
                files += result
                bar.update()
    bar.close()
    return files
