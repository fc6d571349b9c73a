"""Mixed-vs-uniform Pareto plot (PNG + SVG) from a `mixed_precision` result dict.

DESIGN.md keeps plots out of the solver; this module only draws the numbers it is handed
(the result of `qsim.search.front.mixed_precision`) and never recomputes anything.
"""

from __future__ import annotations

from pathlib import Path

SCALE = {"latency_s": (1e6, "latency per inference (µs)"), "energy_j": (1e6, "energy per inference (µJ)"),
         "memory_bytes": (1 / 1024, "weights incl. scales (KiB)")}


def plot_front(result: dict, out_stem, title: str | None = None) -> list[Path]:
    """Draw `result`'s mixed ILP front, greedy front, uniform points and fp32 baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    col = result["objective"]
    k, xlabel = SCALE[col]
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    uni = result["uniform"]
    ax.scatter([u[col] * k for u in uni], [u["metric"] for u in uni], s=22, c="0.55", marker="o",
               label="uniform W/A configs", zorder=2)
    shown = []   # label the most accurate uniform points, skipping ones that would overlap
    for u in sorted(uni, key=lambda u: -u["metric"]):
        if len(shown) == 4:
            break
        if all(abs(u[col] - v[col]) > 0.04 * max(v[col], 1e-300) for v in shown):
            shown.append(u)
    for u in shown:
        ax.annotate(u["config"].replace("-channel", ""), (u[col] * k, u["metric"]), fontsize=6, color="0.35",
                    xytext=(3, -8), textcoords="offset points")
    g = result.get("greedy_front") or []
    if g:
        ax.plot([p[col] * k for p in g], [p["metric"] for p in g], "x--", color="tab:blue", ms=5, lw=0.8,
                label="mixed, greedy", zorder=3)
    f = result["front"]
    ax.plot([p[col] * k for p in f], [p["metric"] for p in f], "o-", color="tab:red", ms=4, lw=1.4,
            label="mixed, ILP (re-evaluated)", zorder=4)
    fl = result.get("float") or {}
    if col in fl:
        ax.scatter([fl[col] * k], [fl["metric"]], marker="*", s=120, c="k", label="fp32 baseline", zorder=5)
    else:
        ax.axhline(fl.get("metric", float("nan")), color="k", lw=0.8, ls=":",
                   label=f"fp32 {result.get('metric_name', 'accuracy')} (no fp32 unit)")
    lo = min([p["metric"] for p in f] + [fl.get("metric", 1.0)])
    ax.set_ylim(max(lo - 0.05, min(u["metric"] for u in uni) - 0.02), None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(result.get("metric_name", "metric") + " (test split)")
    d = result.get("dominance", {})
    ax.set_title(title or f"{result['network']} on {result['profile']}: mixed front dominates "
                          f"{d.get('dominated')}/{d.get('uniform_points')} uniform points", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = out_stem.with_suffix(f".{ext}")
        fig.savefig(p, dpi=130)
        paths.append(p)
    plt.close(fig)
    return paths
