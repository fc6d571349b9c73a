"""`qsim validate`: the published-results table (information; the exit code is 0 even when rows miss).

JSON output is a promise to scripts: a list of {"name", "source", "quantity", "unit", "published", "qsim",
"ratio", "tolerance", "ok"} (plus "note" where a proxy or an expected miss needs explaining).
"""

from __future__ import annotations

import json


def _validate(args) -> int:
    from qsim.validate.table import render_markdown, render_table, validation_table

    rows = validation_table()
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif args.format == "markdown":
        print(render_markdown(rows))
    else:
        print(render_table(rows))
    return 0


def register(sub) -> None:
    p = sub.add_parser("validate", help="qsim's cost model against published chips and simulators (table of ratios)")
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table",
                   help="aligned text table (default), JSON list of rows, or the README's Markdown table")
    p.set_defaults(func=_validate)
