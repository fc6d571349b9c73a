"""`qsim mixed-precision`, `qsim autoquant`, `qsim layer-config`: the search from the command line.

Thin wrappers over `qsim.search`: argument parsing, text/JSON output, exit codes
(2 with a message for bad input and for an infeasible request, naming the cheapest
assignment that does fit).
"""

from __future__ import annotations

import json
import sys

from qsim.search.spec import _finite


def _common(p, network_required: bool = True) -> None:
    p.add_argument("--network", required=network_required, help="a qsim network (see `qsim nets list`)")
    p.add_argument("--profile", required=network_required, help="hardware profile name or YAML file")
    p.add_argument("--bits", default="2,3,4,6,8", help="candidate weight bits per layer (default 2,3,4,6,8)")
    p.add_argument("--abits", default=None, help="candidate activation bits (default: same as --bits)")
    p.add_argument("--granularity", default="channel",
                   help="weight granularities to choose from, comma-separated: tensor, channel, group16, …")
    p.add_argument("--float", dest="allow_float", action="store_true", help="also allow a layer to stay float")
    p.add_argument("--set", dest="fixed", action="append", default=[], metavar="LAYER=CHOICE",
                   help="pin layers (name or glob) to a choice, e.g. --set 'fc=w8a8' --set 'conv*=float'")
    p.add_argument("--sensitivity", choices=("kl", "hessian"), default="kl",
                   help="solver objective: measured KL (default) or the Hutchinson-Hessian proxy")
    p.add_argument("--budgets", type=int, default=16, help="budget steps of the front sweep (default 16)")
    p.add_argument("--eval-size", type=int, default=None, help="test samples for re-evaluation (default all)")
    p.add_argument("--calib-size", type=int, default=256)
    p.add_argument("--sensitivity-samples", type=int, default=512,
                   help="training samples (not calibration, not test) the sensitivities are measured on")
    p.add_argument("--cache", default="results/.search_cache", help="cache directory (default results/.search_cache)")
    p.add_argument("--no-cache", action="store_true", help="compute everything, read and write no cache")
    p.add_argument("--format", choices=("text", "json"), default="text")


def _fixed(items) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: write LAYER=CHOICE, e.g. fc=w8a8 or 'conv*=float'")
        k, v = item.split("=", 1)
        if k.strip() in out:
            raise ValueError(f"--set: layer/pattern {k.strip()!r} given twice")
        out[k.strip()] = v.strip()
    return out


def _kwargs(args) -> dict:
    from qsim.search.cache import JsonCache, NoCache

    if args.budgets < 2:
        raise ValueError(f"--budgets must be at least 2, got {args.budgets}")
    return dict(bits=args.bits, abits=args.abits, granularity=[g.strip() for g in args.granularity.split(",")],
                allow_float=args.allow_float, fixed=_fixed(args.fixed) or None, method=args.sensitivity,
                n_budgets=args.budgets, eval_size=args.eval_size, calib_size=args.calib_size,
                sens_samples=args.sensitivity_samples,
                cache=NoCache() if args.no_cache else JsonCache(args.cache))


def _validate_fixed(args) -> None:
    """Unknown layers / conflicting pins are reported before any work."""
    from qsim.search.assign import expand

    fixed = _fixed(args.fixed)
    if fixed:
        expand(args.network, fixed)


def _progress(args):
    if args.format == "json" or not sys.stderr.isatty():
        return None
    return lambda i, n: print(f"\rsensitivity {i}/{n}", end="" if i < n else "\n", file=sys.stderr)


def _fmt(col: str, v: float) -> str:
    if col == "latency_s":
        return f"{v * 1e6:.4g} µs"
    if col == "energy_j":
        return f"{v * 1e6:.4g} µJ"
    return f"{v / 1024:.4g} KiB"


def _infeasible(exc, args) -> int:
    print(f"qsim {args.command}: infeasible: {exc}", file=sys.stderr)
    if getattr(exc, "cheapest", None) is not None and args.format == "json":
        print(json.dumps({"error": str(exc), "cheapest": exc.cheapest.compact(), **_finite(exc.detail)}, indent=1))
    return 2


def cmd_mixed(args) -> int:
    from qsim.search.front import Infeasible, mixed_precision

    if args.spec:
        return _run_spec(args)
    if not (args.network and args.profile and args.budget):
        raise ValueError("give --network, --profile and --budget (or --spec FILE)")
    _validate_fixed(args)
    try:
        res = mixed_precision(args.network, args.profile, args.budget, progress=_progress(args), **_kwargs(args))
    except Infeasible as exc:
        return _infeasible(exc, args)
    if args.plot:
        from qsim.search.plot import plot_front

        res["plots"] = [str(p) for p in plot_front(res, args.plot)]
    if args.format == "json":
        print(json.dumps(_finite(res), indent=1))
        return 0
    col = res["objective"]
    print(f"{res['network']} on {res['profile']}: budget {col} <= {_fmt(col, res['budget'])}; "
          f"sensitivity {res['sensitivity']['method']}; {len(res['points'])} assignments re-evaluated")
    print(f"\nmixed front (ILP, re-evaluated {res['metric_name']}):")
    for p in res["front"]:
        print(f"  {p['metric']:.4f}  {_fmt(col, p[col]):>12s}  {p['hash']}  {p['label']}")
    ch = res.get("chosen")
    if ch:
        print(f"\nchosen at the budget: {ch['label']}  ({res['metric_name']} {ch['metric']:.4f}, {_fmt(col, ch[col])})")
    d, g = res["dominance"], res["ilp_vs_greedy"]
    print(f"\nuniform points within the budget dominated by the mixed front: {d['dominated']}/{d['uniform_points']} "
          f"(median cost saving {100 * d.get('median_saving', 0):.2g} %); of the efficient uniform points (no other "
          f"uniform point beats them): {d['efficient_dominated']}/{d['efficient_points']}")
    if g.get("budgets"):
        print(f"ILP vs greedy over {g['budgets']} budgets: proxy better {g['ilp_proxy_better']} / worse "
              f"{g['greedy_proxy_better']}; re-evaluated metric better {g['ilp_metric_better']} / worse "
              f"{g['greedy_metric_better']}")
    fl = res["float"]
    print(f"fp32 baseline: {fl['metric']:.4f}" + (f", {_fmt(col, fl[col])}" if col in fl else f" ({fl.get('note')})"))
    t = res["timings_s"]
    print(f"time: sensitivity {t['sensitivity']} s, solve {t['solve']} s, re-evaluation {t['reevaluate']} s, "
          f"total {t['total']} s")
    return 0


def _run_spec(args) -> int:
    from qsim.search.spec import run_spec

    say = None if args.format == "json" else (lambda s: print(f"running {s} …", file=sys.stderr))
    out = run_spec(args.spec, args.out, cache_dir=None if args.cache == "results/.search_cache" else args.cache,
                   fresh=args.no_cache, progress=say)
    if args.format == "json":
        print(json.dumps(_finite(out), indent=1))
        return 0
    for r in out["summary"]:
        print(f"{r['network']:12s} {r['profile']:10s} {r['objective']:12s} dominated {r['dominated']:2d}/"
              f"{r['uniform_points']} (median saving {100 * r['median_saving']:.2g} %; of the efficient uniform "
              f"points {r['efficient_dominated']}/{r['efficient_points']})  "
              f"ILP proxy better on {r['ilp_proxy_better']}/{r['budgets']} budgets "
              f"(greedy {r['greedy_proxy_better']}), metric better {r['ilp_metric_better']} / worse "
              f"{r['greedy_metric_better']}  {r['seconds']:.1f} s")
    print(f"wrote {out['out_dir']} ({out['manifest']['seconds']} s)")
    return 0


def cmd_autoquant(args) -> int:
    from qsim.search.front import Infeasible, autoquant

    _validate_fixed(args)
    try:
        res = autoquant(args.network, args.profile, args.min_metric, args.minimize, progress=_progress(args),
                        **_kwargs(args))
    except Infeasible as exc:
        print(f"qsim autoquant: infeasible: {exc}", file=sys.stderr)
        if args.format == "json":
            print(json.dumps(_finite({"error": str(exc), **exc.detail}), indent=1))
        return 2
    if args.format == "json":
        print(json.dumps(_finite(res), indent=1))
        return 0
    col = res["objective"]
    print(f"{res['network']} on {res['profile']}: cheapest in {col} with {res['metric_name']} >= {res['min_metric']}")
    print(f"  {res['label']}")
    print(f"  {res['metric_name']} {res['metric']:.4f} (fp32 {res['float_metric']:.4f}); latency "
          f"{_fmt('latency_s', res['latency_s'])}, energy {_fmt('energy_j', res['energy_j'])}, weights "
          f"{_fmt('memory_bytes', res['memory_bytes'])}; hash {res['hash']} ({res['candidates']} candidates)")
    return 0


def cmd_layer_config(args) -> int:
    """Evaluate (and cost) one per-layer assignment."""
    from qsim.search.assign import expand
    from qsim.search.cache import JsonCache, NoCache
    from qsim.search.costs import assignment_cost
    from qsim.search.front import evaluate_assignment

    a = expand(args.network, _fixed(args.set), default=args.default)
    cache = NoCache() if args.no_cache else JsonCache(args.cache)
    rec = evaluate_assignment(args.network, a, calib_size=args.calib_size, eval_size=args.eval_size, cache=cache)
    out = {"network": args.network, "hash": a.hash, "assignment": a.compact(), "label": a.label(), **rec}
    for prof in args.profile or []:
        out.setdefault("cost", {})[prof] = assignment_cost(args.network, a, prof)
    if args.format == "json":
        print(json.dumps(_finite(out), indent=1))
        return 0
    print(f"{args.network} [{a.hash}]: {a.label()}")
    print(f"  {rec['metric_name']} {rec['metric']:.4f} (fp32 {rec['float_metric']:.4f}), SQNR {rec['sqnr_db']:.2f} dB")
    for prof, c in out.get("cost", {}).items():
        print(f"  {prof}: latency {_fmt('latency_s', c['latency_s'])}, energy {_fmt('energy_j', c['energy_j'])}, "
              f"weights {_fmt('memory_bytes', c['memory_bytes'])}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("mixed-precision", help="per-layer bit widths under a cost budget (exact ILP, mixed front)",
                       description="Trace the mixed-precision Pareto front of a network on a profile: per-layer "
                                   "sensitivities, an exact ILP per budget, every choice re-evaluated.")
    _common(p, network_required=False)
    p.add_argument("--budget", help="latency=2us | energy=0.3uJ | memory=4KiB | energy=0.5x (× uniform W8A8)")
    p.add_argument("--plot", metavar="STEM", help="also draw STEM.png and STEM.svg (mixed vs uniform)")
    p.add_argument("--spec", help="run a mixed-precision study spec (YAML, e.g. studies/mixed_precision.yaml)")
    p.add_argument("--out", help="results directory of --spec (default results/<name>)")
    p.set_defaults(func=cmd_mixed)

    p = sub.add_parser("autoquant", help="the cheapest per-layer assignment that keeps a metric",
                       description="Cheapest (in energy, latency or memory) measured assignment, mixed or uniform, "
                                   "whose re-evaluated metric is at least --min-metric.")
    _common(p)
    p.add_argument("--min-metric", type=float, required=True, help="floor of the metric, e.g. 0.95")
    p.add_argument("--minimize", choices=("energy", "latency", "memory"), default="energy")
    p.set_defaults(func=cmd_autoquant)

    p = sub.add_parser("layer-config", help="evaluate and cost one per-layer assignment",
                       description="Per-layer overrides by name or glob, e.g. --set 'conv*=w4a8' --set fc=float.")
    p.add_argument("--network", required=True)
    p.add_argument("--set", action="append", default=[], metavar="LAYER=CHOICE",
                   help="w4a8, w4a8:tensor, w2a8:group16, w4a8:channel:affine or float; names or globs")
    p.add_argument("--default", default="w8a8", help="choice of the layers no --set names (default w8a8)")
    p.add_argument("--profile", action="append", help="also cost it on this profile (repeatable)")
    p.add_argument("--eval-size", type=int, default=None)
    p.add_argument("--calib-size", type=int, default=256)
    p.add_argument("--cache", default="results/.search_cache")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_layer_config)
