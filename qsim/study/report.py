"""Reports of a finished study, from its results directory alone (nothing is recomputed).

* `markdown_fronts(dir)`: each profile's Pareto front (and float baselines) as a Markdown table —
  the tables in the README are pasted from `qsim study report results/NAME --markdown`.
* `html_report(dir)`: one self-contained HTML page (no external files or scripts): the fronts,
  the whole results table (sortable by clicking a column), every SVG plot inline, the manifest.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

FRONT_COLUMNS = [  # (column, header, format)
    ("label", "config", "{}"),
    ("accuracy", "accuracy", "{:.2%}"),
    ("energy_j", "energy / inference", "µJ"),
    ("latency_s", "latency", "µs"),
    ("memory_bytes", "weights incl. scales", "KiB"),
    ("numerics", "numerics", "{}"),
]


def load_results(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    out = Path(out)
    for name in ("results.parquet", "pareto.csv", "manifest.json"):
        if not (out / name).exists():
            raise FileNotFoundError(f"{out} is not a study results directory: {name} is missing")
    return (pd.read_parquet(out / "results.parquet"), pd.read_csv(out / "pareto.csv"),
            json.loads((out / "manifest.json").read_text()))


def _fmt(value, how: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if how == "µJ":
        return f"{value * 1e6:.3g} µJ"
    if how == "µs":
        return f"{value * 1e6:.3g} µs"
    if how == "KiB":
        return f"{value / 1024:.2f} KiB"
    return how.format(value)


def front_rows(table: pd.DataFrame, pareto: pd.DataFrame, top: int | None = None) -> list[dict]:
    """Rows of every profile's front, most accurate (or fastest) first, then its float baselines."""
    key = "accuracy" if "accuracy" in pareto.columns and pareto["accuracy"].notna().any() else "latency_s"
    rows = []
    per_profile = pareto[pareto["pareto_scope"] != "overall"]
    baselines = table[table["wfloat"].notna()] if "wfloat" in table.columns else table.iloc[:0]
    for (target, scope), front in per_profile.groupby(["target", "pareto_scope"], sort=False):
        profile = scope.split(":", 1)[1]
        front = front.sort_values(key, ascending=key != "accuracy")
        front = front.head(top) if top else front
        base = baselines[(baselines["target"] == target) & (baselines["profile"] == profile)]
        for r, marked in [(r, False) for _, r in front.iterrows()] + [(r, True) for _, r in base.iterrows()]:
            cells = {"target": target, "profile": profile, "baseline": marked}
            for col, head, how in FRONT_COLUMNS:
                if col in r.index:
                    cells[head] = ("* " if marked and col == "label" else "") + _fmt(r[col], how)
            rows.append(cells)
    return rows


def markdown_fronts(out: Path, top: int | None = None) -> str:
    table, pareto, manifest = load_results(out)
    rows = front_rows(table, pareto, top)
    heads = ["profile"] + [h for _, h, _ in FRONT_COLUMNS if any(h in r for r in rows)]
    multi = len({r["target"] for r in rows}) > 1
    if multi:
        heads = ["target"] + heads
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(h, "")) for h in heads) + " |")
    note = (f"\n*Study `{manifest['study']}`: {manifest['design_points']} design points, qsim "
            f"{manifest['qsim_version']} (source {manifest.get('source_hash', '?')}), "
            f"{manifest.get('host', {}).get('cpu', 'unknown CPU')}; * = float baseline (reference, not on the front).*")
    return "\n".join(lines) + "\n" + note


_GRAN_ORDER = {"global": 0, "tensor": 1, "channel": 2}
_VALUE_FORMAT = {"accuracy": lambda v: f"{v * 100:.1f} %", "memory_bytes": lambda v: f"{v / 1024:.1f}",
                 "energy_j": lambda v: f"{v * 1e6:.3g}", "latency_s": lambda v: f"{v * 1e6:.3g}",
                 "sqnr_db": lambda v: f"{v:.1f}"}


def _column_key(row: pd.Series, col: str):
    if col == "granularity" and row["granularity"] == "group":
        return f"g{int(row['group_size'])}"
    return row[col]


def _column_order(key) -> tuple:
    if isinstance(key, str) and key.startswith("g") and key[1:].isdigit():
        return (3, -int(key[1:]), "")
    return (_GRAN_ORDER.get(key, 4), 0, str(key))


def markdown_pivot(out: Path, rows: str, cols: str, values: list[str], where: dict[str, str]) -> str:
    """One Markdown table: `rows` down, `cols` across (granularity splits groups into gN), each cell
    the `values` joined by ' / ' (accuracy in %, memory in KiB, energy µJ, latency µs), over the
    results rows matching every `where` column=value (compared as text)."""
    table, _, manifest = load_results(out)
    for col in [rows, cols, *values, *where]:
        if col not in table.columns:
            raise ValueError(f"{col!r} is not a column of {out}/results.parquet; columns: {sorted(table.columns)}")
    sub = table
    for col, want in where.items():
        sub = sub[sub[col].astype(str).str.removesuffix(".0") == str(want)]
    if "wfloat" in sub.columns:
        sub = sub[sub["wfloat"].isna()]
    if sub.empty:
        raise ValueError(f"no results row matches {where}")
    sub = sub.assign(_col=[_column_key(r, cols) for _, r in sub.iterrows()])
    if sub.duplicated([rows, "_col"]).any():
        raise ValueError(f"several results per ({rows}, {cols}) cell; narrow them with --where (e.g. profile=NAME, "
                         f"abits=8)")
    col_keys = sorted(sub["_col"].unique(), key=_column_order)
    head = [str(rows)] + [str(c) for c in col_keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r_key, block in sub.groupby(rows, sort=True):
        cells = {c: " / ".join(_VALUE_FORMAT.get(v, lambda x: f"{x:.4g}")(row[v]) for v in values)
                 for c, (_, row) in zip(block["_col"], block.iterrows())}
        lines.append("| " + " | ".join([str(r_key)] + [cells.get(c, "—") for c in col_keys]) + " |")
    note = (f"\n*Study `{manifest['study']}`, {', '.join(f'{k} = {v}' for k, v in where.items()) or 'all rows'}; "
            f"cells: {' / '.join(values)}.*")
    return "\n".join(lines) + "\n" + note


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1600px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f0f0f0;cursor:pointer;position:sticky;top:0}
td[data-v]{text-align:right;font-variant-numeric:tabular-nums}
tr.baseline td{font-weight:bold;background:#fff8dc}
.scroll{max-height:600px;overflow:auto;border:1px solid #ddd}
figure{margin:1em 0}figure svg{max-width:100%;height:auto}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, i){
  th.title = 'click to sort';
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.from(body.rows), asc = th.dataset.asc !== '1';
    rows.sort(function(a, b){
      var x = a.cells[i].dataset.v !== undefined ? a.cells[i].dataset.v : a.cells[i].textContent;
      var y = b.cells[i].dataset.v !== undefined ? b.cells[i].dataset.v : b.cells[i].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
    table.querySelectorAll('th').forEach(function(h){ delete h.dataset.asc; });
    th.dataset.asc = asc ? '1' : '0';
  });
});
"""


def _cell(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return '<td data-v="">—</td>'
        return f'<td data-v="{v!r}">{v:.4g}</td>'
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f'<td data-v="{v}">{v}</td>'
    return f"<td>{html.escape(str(v))}</td>"


def _results_table(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, r in table.iterrows():
        cls = ' class="baseline"' if "wfloat" in r.index and isinstance(r["wfloat"], str) else ""
        vals = [r[c].item() if hasattr(r[c], "item") else r[c] for c in cols]
        body.append(f"<tr{cls}>" + "".join(_cell(v) for v in vals) + "</tr>")
    return (f'<div class="scroll"><table class="sortable" id="results"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _svg(path: Path) -> str:
    text = path.read_text()
    start = text.find("<svg")
    return text[start:] if start >= 0 else ""


def html_report(out: Path, dest: Path | None = None) -> Path:
    """Write `out/report.html` (or `dest`): fronts, sortable results, inline SVG plots, manifest."""
    out = Path(out)
    table, pareto, manifest = load_results(out)
    rows = front_rows(table, pareto)
    heads = ["target", "profile"] + [h for _, h, _ in FRONT_COLUMNS if any(h in r for r in rows)]
    fronts = "".join(
        f'<tr{" class=baseline" if r["baseline"] else ""}>' + "".join(f"<td>{html.escape(str(r.get(h, '')))}</td>"
                                                                      for h in heads) + "</tr>" for r in rows)
    svgs = sorted((out / "plots").glob("*.svg")) if (out / "plots").is_dir() else []
    figures = "".join(f"<figure>{_svg(p)}<figcaption>{html.escape(p.name)}</figcaption></figure>" for p in svgs)
    name = html.escape(str(manifest.get("study", out.name)))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>qsim study {name}</title><style>{_STYLE}</style></head>
<body>
<h1>qsim study <code>{name}</code></h1>
<p>{manifest.get('design_points', len(table))} design points, {manifest.get('configs', '?')} quant configs;
qsim {html.escape(str(manifest.get('qsim_version', '?')))} (source {html.escape(str(manifest.get('source_hash', '?')))}),
computed on {html.escape(str(manifest.get('host', {}).get('cpu', 'an unknown CPU')))}.
Bold rows (*) are float baselines: reference points, not part of any front.</p>
<h2>Pareto fronts per profile</h2>
<table class="sortable" id="fronts"><thead><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in heads)}</tr></thead>
<tbody>{fronts}</tbody></table>
<h2>Plots</h2>
{figures or '<p>No plots in this results directory (run <code>qsim study plot</code>).</p>'}
<h2>All results (click a column to sort)</h2>
{_results_table(table)}
<h2>Manifest</h2>
<pre>{html.escape(json.dumps(manifest, indent=2, default=str))}</pre>
<script>{_SORT_JS}</script>
</body></html>
"""
    dest = Path(dest) if dest is not None else out / "report.html"
    dest.write_text(page, encoding="utf-8")
    return dest
