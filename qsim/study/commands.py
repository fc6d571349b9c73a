"""`qsim study run SPEC`, `qsim study plot DIR`, `qsim study report DIR`, `qsim study clean NAME|DIR`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def _run(args) -> int:
    from qsim.study import run_study

    res = run_study(args.spec, args.out, jobs=args.jobs, dask=args.dask, progress=not args.quiet,
                    plots=not args.no_plots, fresh=args.fresh)
    print(summary_line(res.manifest))
    table = res.table
    baselines = table[table["wfloat"].notna()] if "wfloat" in table.columns else table.iloc[:0]
    print(format_fronts(res.pareto, args.top, baselines))
    for note in res.manifest.get("notes", []):
        print(f"note: {note}")
    print(f"\nResults: {res.out_dir}/results.parquet, results.csv, pareto.csv, manifest.json, plots/")
    return 0


def summary_line(m: dict) -> str:
    """'300 design points (75 quant configs; accuracy: 75 computed, 0 from cache; cost: …) in 11.2 s'."""
    parts = []
    n_acc, n_acc_new = m.get("accuracy_evaluations", 0), m.get("accuracy_evaluations_computed", 0)
    if n_acc:
        parts.append(f"accuracy: {n_acc_new} computed, {n_acc - n_acc_new} from cache")
    n_cost, n_cost_new = m.get("cost_batches", 0), m.get("cost_batches_computed", 0)
    parts.append(f"cost (per target × profile): {n_cost_new} computed, {n_cost - n_cost_new} from cache")
    return (f"{m['design_points']} design points ({m['configs']} quant configs; {'; '.join(parts)}) "
            f"in {m['timings_s']['total']:.1f} s")


def _clean(args) -> int:
    import shutil

    target = Path(args.target)
    if not target.is_dir():
        target = Path("results") / args.target
    if not target.is_dir():
        raise FileNotFoundError(f"{args.target!r} is neither a results directory nor a study name with "
                                f"results/{args.target}/")
    if not ((target / "manifest.json").exists() or (target / "cache").is_dir()):
        raise ValueError(f"{target} does not look like a study results directory (no manifest.json, no cache/); "
                         f"nothing removed")
    removed = target if args.all else target / "cache"
    if removed.exists():
        shutil.rmtree(removed)
        print(f"removed {removed}")
    else:
        print(f"{removed} does not exist; nothing to remove")
    return 0


UNITS = {"energy_j": ("energy µJ", 1e6), "latency_s": ("latency µs", 1e6), "memory_bytes": ("memory KiB", 1 / 1024)}


def _readable(rows, key: str):
    table = rows[["label"]].copy()
    if key == "accuracy":
        table["accuracy %"] = (rows["accuracy"] * 100).round(2)
    for col, (name, unit) in UNITS.items():
        if col in rows.columns:
            table[name] = (rows[col] * unit).map(lambda v: f"{v:.4g}")
    return table


def format_fronts(pareto, top: int, baselines=None) -> str:
    """Each profile's Pareto front, most accurate (or fastest, cost-only) first, in readable units,
    followed by the float baselines on that profile (marked '*', not part of the front)."""
    lines = []
    key = "accuracy" if "accuracy" in pareto.columns and pareto["accuracy"].notna().any() else "latency_s"
    for (target, scope), front in pareto[pareto["pareto_scope"] != "overall"].groupby(["target", "pareto_scope"],
                                                                                     sort=False):
        front = front.sort_values(key, ascending=key != "accuracy")
        profile = scope.split(":", 1)[1]
        table = _readable(front, key).head(top)
        if baselines is not None and len(baselines):
            base = baselines[(baselines["target"] == target) & (baselines["profile"] == profile)]
            if len(base):
                marked = _readable(base, key)
                marked["label"] = "* " + marked["label"]
                table = pd.concat([table, marked], ignore_index=True)
        lines.append(f"\n{target} on {profile}: Pareto front has {len(front)} points"
                     + (f", showing {top}" if len(front) > top else "")
                     + ("; * = float baseline, for reference" if table["label"].str.startswith("* ").any() else ""))
        lines.append(table.to_string(index=False))
    return "\n".join(lines)


def _plot(args) -> int:
    import pandas as pd

    from qsim.study.plots import draw_all
    from qsim.study.spec import parse_study

    out = Path(args.dir)
    for name in ("results.parquet", "pareto.csv", "manifest.json"):
        if not (out / name).exists():
            raise FileNotFoundError(f"{out} is not a study results directory: {name} is missing")
    manifest = json.loads((out / "manifest.json").read_text())
    files = draw_all(out, pd.read_parquet(out / "results.parquet"), pd.read_csv(out / "pareto.csv"),
                     parse_study(manifest["spec"]), progress=True)
    for f in files:
        print(f)
    return 0


def _report(args) -> int:
    from qsim.study.report import html_report, markdown_fronts

    if args.pivot:
        from qsim.study.report import markdown_pivot

        parts = args.pivot.split(",")
        if len(parts) != 2:
            raise ValueError(f"--pivot takes ROWS,COLUMNS (e.g. wbits,granularity), got {args.pivot!r}")
        where = {}
        for w in args.where:
            if "=" not in w:
                raise ValueError(f"--where takes COLUMN=VALUE (e.g. abits=8), got {w!r}")
            k, v = w.split("=", 1)
            where[k] = v
        print(markdown_pivot(Path(args.dir), parts[0], parts[1], args.values.split(","), where))
        return 0
    if args.markdown:
        print(markdown_fronts(Path(args.dir), args.top))
        return 0
    print(html_report(Path(args.dir), Path(args.output) if args.output else None))
    return 0


def register(sub) -> None:
    p = sub.add_parser("study", help="run design-space studies and draw their plots")
    ssub = p.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)
    r = ssub.add_parser("run", help="run (or resume) a study spec, e.g. studies/quickstart.yaml")
    r.add_argument("spec", help="study YAML file")
    r.add_argument("--out", default=None, help="output directory (default results/<study name>)")
    r.add_argument("--jobs", type=int, default=1, help="local worker processes for accuracy evaluations (default 1)")
    r.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run accuracy evaluations on a Dask cluster at ADDRESS ('local' starts a LocalCluster)")
    r.add_argument("--no-plots", action="store_true", help="skip the plots")
    r.add_argument("--fresh", action="store_true",
                   help="recompute every design point, ignoring (and rewriting) the cache")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--top", type=int, default=5, help="rows of each profile's Pareto front to print (default 5)")
    r.set_defaults(func=_run)
    pl = ssub.add_parser("plot", help="redraw the plots of a results directory without recomputing")
    pl.add_argument("dir", help="results directory, e.g. results/quickstart")
    pl.set_defaults(func=_plot)
    rp = ssub.add_parser("report", help="one self-contained HTML page of a results directory (or Markdown tables)")
    rp.add_argument("dir", help="results directory, e.g. results/quickstart")
    rp.add_argument("--markdown", action="store_true", help="print each profile's front as a Markdown table instead")
    rp.add_argument("--top", type=int, default=None, help="with --markdown: rows of each front (default all)")
    rp.add_argument("-o", "--output", default=None, help="HTML file to write (default DIR/report.html)")
    rp.add_argument("--pivot", default=None, metavar="ROWS,COLUMNS",
                    help="print one Markdown table of ROWS × COLUMNS instead (e.g. wbits,granularity)")
    rp.add_argument("--values", default="accuracy,memory_bytes",
                    help="with --pivot: the columns in each cell, joined by ' / ' (default accuracy,memory_bytes)")
    rp.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                    help="with --pivot: keep rows where COLUMN equals VALUE (repeatable; e.g. profile=zen3-avx2)")
    rp.set_defaults(func=_report)
    c = ssub.add_parser("clean", help="delete a study's cache (or, with --all, its whole results directory)")
    c.add_argument("target", metavar="NAME|DIR", help="study name (results/NAME) or results directory")
    c.add_argument("--all", action="store_true", help="remove the whole results directory, not only cache/")
    c.set_defaults(func=_clean)
