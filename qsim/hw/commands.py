"""`qsim profiles …` and `qsim simulate …`: thin CLI over `qsim.hw`.

JSON output of `simulate` is a promise to scripts:
{"profile": NAME, "layers": [{"name", "macs", "cycles", …}], "total": {"macs", "cycles",
"latency_s", "energy_j", "memory_bytes", …}}.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from qsim.hw.cost import cost_workload, peak_macs_per_cycle, totals
from qsim.hw.profiles import dump_profile_yaml, find_profile, list_profiles, load_profile, read_profile_file
from qsim.hw.quant import FLOAT_FORMATS, GRANULARITIES, SPARSITY_PATTERNS, CostQuant
from qsim.hw.schema import json_schema, validate_profile_dict


# --- profiles -----------------------------------------------------------------------------
def _list(args) -> int:
    names = list_profiles()
    if not args.long:
        print("\n".join(names))
        return 0
    print(f"{'name':18s} {'family':16s} {'clock':>9s} {'node':>6s} {'peak int8 TOPS':>14s}  description")
    for n in names:
        p = load_profile(n)
        try:
            tops = 2 * peak_macs_per_cycle(p, CostQuant(8, 8)) * p.clock / 1e12
            peak = f"{tops:14.2f}"
        except ValueError:
            peak = f"{'-':>14s}"
        print(f"{n:18s} {p.family:16s} {p.clock / 1e6:6.0f}MHz {p.technology_nm:4.0f}nm {peak}  {p.description}")
    return 0


def assumptions(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of every number marked [U] (unconfirmed: an assumption, not a citation)."""
    return [(i, line.strip()) for i, line in enumerate(path.read_text().splitlines(), 1) if "[U]" in line
            and not line.lstrip().startswith("#")]


def _show(args) -> int:
    path = find_profile(args.name)
    if args.assumptions:
        marked = assumptions(path)
        print(f"# {path}: {len(marked)} number(s) marked [U] (unconfirmed assumptions, not from a cited source)")
        for i, line in marked:
            print(f"{i:4d}  {line}")
        return 0
    if args.json:
        print(json.dumps(read_profile_file(path).model_dump(mode="json"), indent=2))
    else:
        print(f"# {path}")
        print(path.read_text(), end="")
    return 0


def _validate(args) -> int:
    p = read_profile_file(Path(args.file)) if Path(args.file).exists() else load_profile(args.file)
    print(f"{args.file}: ok ({p.family} profile {p.name!r})")
    return 0


def _schema(args) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _write_profile(data: dict, out: str, what: str) -> int:
    validate_profile_dict(data, f"<{what}>")  # never write a file qsim cannot load
    Path(out).write_text(f"# Written by `qsim profiles {what}`.\n" + dump_profile_yaml(data))
    print(f"wrote {out}")
    return 0


def _import_scalesim(args) -> int:
    try:
        from qsim.hw.scalesim_import import scalesim_config_to_profile
    except ImportError as exc:
        raise ValueError(f"SCALE-Sim import is not available in this qsim build ({exc})") from None
    return _write_profile(scalesim_config_to_profile(args.config), args.output, "import-scalesim")


def _calibrate(args) -> int:
    try:
        from qsim.hw.calibrate import calibrate_host
    except ImportError as exc:
        raise ValueError(f"host calibration is not available in this qsim build ({exc})") from None
    return _write_profile(calibrate_host(), args.output, "calibrate-host")


# --- simulate -----------------------------------------------------------------------------
def _workload(args):
    if args.model:
        try:
            from qsim.workload.zoo import get_workload, list_workloads
        except ImportError as exc:
            raise ValueError(f"--model needs the layer zoo (qsim.workload.zoo), not available: {exc}") from None
        if args.model in list_workloads():
            return get_workload(args.model, batch=args.batch)
        from qsim.nets import get_network, list_networks  # the runnable networks' real shapes too

        if args.model not in list_networks():
            raise ValueError(f"--model {args.model!r} is unknown; choose one of "
                             f"{', '.join(list_workloads() + list_networks())}")
        net = get_network(args.model)
        return net.arch.to_workload(batch=args.batch) if net.arch is not None else net.workload
    if args.topology:
        from qsim.workload.topology import read_topology

        return read_topology(args.topology)
    from qsim.workload.onnx_import import from_onnx

    if not Path(args.onnx).is_file():
        raise FileNotFoundError(f"--onnx file {args.onnx!r} does not exist")
    return from_onnx(args.onnx)


def _quant(args) -> CostQuant:
    if args.granularity == "group" and args.group_size is None:
        raise ValueError("--granularity group needs --group-size N (elements per scale, e.g. 32 or 128)")
    if args.granularity != "group" and args.group_size is not None:
        raise ValueError(f"--group-size only applies to --granularity group (got --granularity {args.granularity})")
    return CostQuant(
        w_bits=args.wbits, a_bits=args.abits, granularity=args.granularity, group_size=args.group_size,
        scale_bits=args.scale_bits, zero_point=args.zero_point, acc_bits=args.acc_bits,
        w_format=args.wformat, a_format=args.aformat, sparsity=_sparsity(args), sparsity_pattern=args.sparsity_pattern,
        act_sparsity=args.act_sparsity,
    )


def _sparsity(args) -> float:
    """--sparsity, implied by an N:M pattern when not given (2:4 keeps half)."""
    from qsim.hw.quant import nm_pattern

    nm = nm_pattern(args.sparsity_pattern)
    if args.sparsity is None:
        return 1.0 - nm[0] / nm[1] if nm else 0.0
    return args.sparsity


def _clean(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# (column, header, width, format spec)
TABLE_COLS = [("name", "layer", 22, "<22.22s"), ("macs", "macs", 13, ">13d"), ("cycles", "cycles", 12, ">12d"),
              ("latency_s", "latency_s", 11, ">11.3e"), ("utilization", "util", 6, ">6.3f"),
              ("bound", "bound", 14, ">14.14s"), ("energy_j", "energy_j", 10, ">10.3e"),
              ("precision_used", "prec", 8, ">8.8s")]


def _simulate(args) -> int:
    profile = load_profile(args.profile)
    q = _quant(args)
    wl = _workload(args)
    df = cost_workload(wl, q, profile)
    tot = totals(df)
    if args.format == "json":
        layers = [{k: _clean(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
        out = {"profile": profile.name, "workload": getattr(wl, "name", ""), "quant": q.label(),
               "layers": layers, "total": {k: _clean(v) for k, v in tot.items()}}
        json.dump(out, sys.stdout, indent=1)
        print()
    elif args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        print(f"profile {profile.name} ({profile.family}), workload {getattr(wl, 'name', '')}, quant {q.label()}")
        print(" ".join(f"{h:<{w}s}" if c == "name" else f"{h:>{w}s}" for c, h, w, _ in TABLE_COLS))
        for row in df.to_dict(orient="records"):
            print(" ".join(format(int(row[c]) if f.endswith("d") else row[c], f) for c, _, _, f in TABLE_COLS))
        print(f"total: macs={tot['macs']} cycles={tot['cycles']} latency_s={tot['latency_s']:.4e} "
              f"energy_j={tot['energy_j']:.4e} memory_bytes={tot['memory_bytes']:.0f} "
              f"utilization={tot['utilization']:.3f} bound={tot['bound']}")
        notes = sorted({f for f in df["fallback"] if f})
        for n in notes:
            print(f"note: {n}")
    return 0


def _help(parser):
    def run(args) -> int:
        parser.print_help()
        return 0
    return run


def register(sub) -> None:
    prof = sub.add_parser("profiles", help="list, show, validate, import or measure hardware profiles")
    prof.set_defaults(func=_help(prof))
    ps = prof.add_subparsers(dest="profiles_command", metavar="ACTION")
    p = ps.add_parser("list", help="shipped profile names, one per line")
    p.add_argument("--long", action="store_true", help="a table with family, clock, node and int8 peak")
    p.set_defaults(func=_list)
    p = ps.add_parser("show", help="print a profile (its YAML with source comments)")
    p.add_argument("name", help="profile name or YAML path")
    p.add_argument("--json", action="store_true", help="print the validated profile as JSON instead")
    p.add_argument("--assumptions", action="store_true",
                   help="list only the numbers marked [U] (unconfirmed assumptions), with line numbers")
    p.set_defaults(func=_show)
    p = ps.add_parser("validate", help="check a profile file; lists every problem (exit 2 if any)")
    p.add_argument("file", help="YAML file (or shipped name)")
    p.set_defaults(func=_validate)
    p = ps.add_parser("schema", help="JSON Schema of profile files (for editor autocompletion)")
    p.set_defaults(func=_schema)
    p = ps.add_parser("import-scalesim", help="turn a SCALE-Sim .cfg into a qsim systolic_array profile")
    p.add_argument("config", help="SCALE-Sim config file (.cfg)")
    p.add_argument("-o", "--output", required=True, help="YAML file to write")
    p.set_defaults(func=_import_scalesim)
    p = ps.add_parser("calibrate-host", help="measure this machine and write a cpu_simd profile")
    p.add_argument("-o", "--output", required=True, help="YAML file to write")
    p.set_defaults(func=_calibrate)

    s = sub.add_parser("simulate", help="per-layer cycles, latency, traffic and energy of a workload on a profile")
    s.add_argument("--profile", required=True, help="profile name (see `qsim profiles list`) or YAML path")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a zoo workload name (resnet18, bert-base, llama2-7b-decode, …)")
    src.add_argument("--topology", help="SCALE-Sim topology CSV (conv or GEMM format)")
    src.add_argument("--onnx", help="ONNX model file")
    s.add_argument("--wbits", type=int, required=True, help="weight bits")
    s.add_argument("--abits", type=int, required=True, help="activation bits")
    s.add_argument("--granularity", default="channel", choices=GRANULARITIES, help="weight scale granularity")
    s.add_argument("--group-size", type=int, default=None, help="elements per scale for --granularity group")
    s.add_argument("--scale-bits", type=int, default=16, help="bits per stored scale (default 16)")
    s.add_argument("--zero-point", action="store_true", help="weights also store a zero point per scale")
    s.add_argument("--acc-bits", type=int, default=32, help="accumulator bits (default 32)")
    fmts = ["int"] + sorted(FLOAT_FORMATS)
    s.add_argument("--wformat", default="int", choices=fmts, help="weight element format (default int)")
    s.add_argument("--aformat", default="int", choices=fmts, help="activation element format (default int)")
    s.add_argument("--batch", type=int, default=1, help="batch size for --model (default 1)")
    s.add_argument("--sparsity", type=float, default=None,
                   help="fraction of zero weights in [0, 1) (default 0; implied by an N:M --sparsity-pattern)")
    s.add_argument("--sparsity-pattern", default="unstructured", choices=SPARSITY_PATTERNS,
                   help="how the zeros are spread (default unstructured); 2:4 / 4:8 keep N of every M along K")
    s.add_argument("--act-sparsity", type=float, default=0.0,
                   help="fraction of zero activations, for profiles that gate zero operands (default 0)")
    s.add_argument("--format", default="table", choices=("table", "csv", "json"), help="output format")
    s.set_defaults(func=_simulate)
