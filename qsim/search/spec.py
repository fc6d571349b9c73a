"""The mixed-precision study type: a YAML spec run by `qsim mixed-precision --spec FILE`.

Why here and not in `qsim/study`: the study runner is a grid of uniform configs joined with
costs; a mixed-precision study is a search per (network, profile, cost objective) whose
points come out of a solver. It reuses the study's conventions (YAML, every problem reported
at once before any work, `results/<name>/`, cached entries) without changing that package.

    name: mixed_precision
    networks: [mnist_dwsep, mnist1d_cnn]
    profiles: [bitfusion, zcu104]
    objectives: [energy, latency]       # each traced as a whole front (budget sweep)
    bits: [2, 3, 4, 6, 8]               # abits: defaults to bits
    granularity: [channel]              # tensor, channel, group16, …
    sensitivity: kl                     # or hessian
    budgets: 16                         # geometric budget steps (+ every uniform config's cost)
    overrides: {fc: w8a8}               # layers pinned to a choice (names or globs)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

KEYS = {"name", "description", "network", "networks", "profiles", "objectives", "bits", "abits", "granularity",
        "sensitivity", "budgets", "calibration_size", "eval_size", "sensitivity_samples", "overrides", "float"}


def parse_spec(source) -> dict:
    """Validate a spec (path or dict); a ValueError lists every problem, each naming its key."""
    from qsim.hw import list_profiles
    from qsim.nets import list_networks
    from qsim.search.assign import expand, mac_layers
    from qsim.search.costs import metric_column
    from qsim.search.front import candidate_choices

    label = "mixed-precision spec"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"spec {str(path)!r} does not exist")
        label = str(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"{label}: not valid YAML: {exc}") from None
    else:
        raw = source
    if not isinstance(raw, dict):
        raise ValueError(f"{label}: the spec must be a mapping of keys")
    problems = [f"unknown key {k!r}; allowed keys are {sorted(KEYS)}" for k in sorted(set(raw) - KEYS)]
    name = raw.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        problems.append(f"name: a non-empty name without spaces or slashes is required, got {name!r}")
    nets = raw.get("networks", [raw["network"]] if "network" in raw else [])
    nets = nets if isinstance(nets, list) else [nets]
    if not nets:
        problems.append("networks: name at least one network")
    for n in nets:
        if n not in list_networks():
            problems.append(f"networks: {n!r} is not a qsim network; known: {list_networks()}")
        else:
            try:
                mac_layers(n)
            except ValueError as exc:
                problems.append(f"networks: {exc}")
    profiles = raw.get("profiles", [])
    profiles = profiles if isinstance(profiles, list) else [profiles]
    if not profiles:
        problems.append("profiles: name at least one hardware profile")
    for p in profiles:
        if p not in list_profiles() and not Path(str(p)).is_file():
            problems.append(f"profiles: {p!r} is neither a shipped profile nor a file; shipped: {list_profiles()}")
    objectives = raw.get("objectives", ["energy"])
    objectives = objectives if isinstance(objectives, list) else [objectives]
    cols = []
    for o in objectives:
        try:
            cols.append(metric_column(str(o)))
        except ValueError as exc:
            problems.append(f"objectives: {exc}")
    bits, abits = raw.get("bits", [2, 3, 4, 6, 8]), raw.get("abits")
    gran = raw.get("granularity", ["channel"])
    gran = gran if isinstance(gran, list) else [gran]
    try:
        candidate_choices(bits, abits, gran)
    except (ValueError, TypeError) as exc:
        problems.append(f"bits/abits/granularity: {exc}")
    method = raw.get("sensitivity", "kl")
    if method not in ("kl", "hessian"):
        problems.append(f"sensitivity: {method!r} is not one of ['kl', 'hessian']")
    for key, default in (("budgets", 16), ("calibration_size", 256), ("sensitivity_samples", 512)):
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            problems.append(f"{key} must be a positive integer, got {v!r}")
    ev = raw.get("eval_size")
    if ev is not None and (isinstance(ev, bool) or not isinstance(ev, int) or ev < 1):
        problems.append(f"eval_size must be a positive integer or absent (whole test split), got {ev!r}")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        problems.append(f"overrides: a mapping of layer name or pattern to a choice, got {overrides!r}")
        overrides = {}
    for n in nets:
        if overrides and n in list_networks():
            try:
                expand(n, overrides)
            except ValueError as exc:
                problems.append(f"overrides ({n}): {exc}")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ValueError(f"{label}: {len(problems)} problem(s) in the spec:\n{lines}")
    return {"name": name, "description": raw.get("description", ""), "networks": nets, "profiles": profiles,
            "objectives": cols, "bits": bits, "abits": abits, "granularity": gran, "sensitivity": method,
            "budgets": raw.get("budgets", 16), "calibration_size": raw.get("calibration_size", 256),
            "eval_size": ev, "sensitivity_samples": raw.get("sensitivity_samples", 512),
            "overrides": overrides, "float": bool(raw.get("float", False)), "raw": raw}


def run_spec(source, out_dir=None, *, cache_dir=None, fresh: bool = False, progress=None) -> dict:
    """Run every (network, profile, objective) of a spec; writes results/<name>/ and returns a summary."""
    from qsim.search.cache import JsonCache
    from qsim.search.front import mixed_precision
    from qsim.search.plot import plot_front

    spec = parse_spec(source)
    out = Path(out_dir) if out_dir else Path("results") / spec["name"]
    out.mkdir(parents=True, exist_ok=True)
    cache = JsonCache(Path(cache_dir) if cache_dir else out / "cache", read=not fresh)
    t0 = time.perf_counter()
    results, rows, front_rows = [], [], []
    for net in spec["networks"]:
        for prof in spec["profiles"]:
            for col in spec["objectives"]:
                if progress:
                    progress(f"{net} on {prof}, {col}")
                res = mixed_precision(net, prof, None, objective=col, bits=spec["bits"], abits=spec["abits"],
                                      granularity=spec["granularity"], allow_float=spec["float"],
                                      fixed=spec["overrides"] or None, method=spec["sensitivity"],
                                      n_budgets=spec["budgets"], eval_size=spec["eval_size"],
                                      calib_size=spec["calibration_size"],
                                      sens_samples=spec["sensitivity_samples"], cache=cache)
                stem = out / "plots" / f"mixed_{net}_{prof}_{col.split('_')[0]}"
                res["plots"] = [str(p.relative_to(out)) for p in plot_front(res, stem)]
                results.append(res)
                rows.append(summary_row(res))
                front_rows += [{"network": net, "profile": prof, "objective": col, "metric": p["metric"],
                                "latency_s": p["latency_s"], "energy_j": p["energy_j"],
                                "memory_bytes": p["memory_bytes"], "hash": p["hash"],
                                "assignment": json.dumps(p["assignment"], sort_keys=True)} for p in res["front"]]
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    pd.DataFrame(front_rows).to_csv(out / "front.csv", index=False)
    (out / "results.json").write_text(json.dumps(_finite(results), indent=1))
    manifest = {"study": spec["name"], "spec": spec["raw"], "runs": len(results),
                "seconds": round(time.perf_counter() - t0, 2), "cache_hits": cache.hits}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return {"out_dir": str(out), "summary": rows, "manifest": manifest}


def summary_row(res: dict) -> dict:
    d, g = res["dominance"], res["ilp_vs_greedy"]
    return {"network": res["network"], "profile": res["profile"], "objective": res["objective"],
            "sensitivity": res["sensitivity"]["method"], "uniform_points": d["uniform_points"],
            "dominated": d["dominated"], "dominates": d["dominates"],
            "efficient_points": d.get("efficient_points"), "efficient_dominated": d.get("efficient_dominated"),
            "median_saving": round(d.get("median_saving", 0.0), 6), "front_points": len(res["front"]),
            "budgets": g.get("budgets", 0), "ilp_proxy_better": g.get("ilp_proxy_better", 0),
            "greedy_proxy_better": g.get("greedy_proxy_better", 0),
            "ilp_metric_better": g.get("ilp_metric_better", 0),
            "greedy_metric_better": g.get("greedy_metric_better", 0),
            "seconds": res["timings_s"]["total"], "sensitivity_s": res["timings_s"]["sensitivity"]}


def _finite(obj):
    """JSON-safe copy: ±inf/NaN become null (the nets commands' rule)."""
    from qsim.nets.commands import json_safe

    return json_safe(obj)
