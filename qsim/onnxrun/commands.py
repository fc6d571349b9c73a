"""`qsim run-onnx`: execute an ONNX model on qsim's kernels, optionally against ORT."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np


def _load_npz(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--inputs file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"--inputs {p} is not a NumPy .npz file ({exc})") from None


def run(args) -> int:
    from qsim.onnxrun.executor import OnnxExecutor, compare_outputs, first_divergence, run_ort, run_ort_all

    ex = OnnxExecutor(args.model, acc_bits=args.acc_bits, overflow=args.overflow,
                      pair_saturate16=True if args.pair_saturate16 else None, fuse_qdq=args.fuse_qdq,
                      ort_target=args.ort_target)
    note = " (detected on this host)" if args.ort_target == "host" and not args.pair_saturate16 else ""
    print(f"ORT target: {ex.ort_target}{note}; u8 x s8 int16 pair saturation "
          f"{'on' if ex.options['pair_saturate16'] else 'off'}")
    if args.fuse_qdq:
        print(f"fused {len(ex.fused)} QDQ pattern(s) into integer ops: {', '.join(ex.fused) or '-'}")
    inputs = _load_npz(args.inputs)
    ort_opt = args.ort_opt or ("all" if args.fuse_qdq else "disable")
    per_node = args.compare_ort and ort_opt == "disable" and not args.fuse_qdq
    t0 = time.perf_counter()
    everything = ex.run(inputs, keep_all=per_node)
    elapsed = time.perf_counter() - t0
    outputs = {n: everything[n] for n in ex.output_names}
    for name, y in outputs.items():
        print(f"output {name}: {y.dtype} {list(y.shape)}")
    print(f"qsim run: {elapsed:.3f} s")
    if args.out:
        np.savez(args.out, **outputs)
        print(f"wrote {args.out}")
    custom = args.acc_bits != 32 or args.overflow != "wrap" or ex.options["pair_saturate16"]
    if ex.overflows and (custom or any(c for _, c in ex.overflows.values())):
        print(f"accumulator overflows (acc_bits={args.acc_bits}, overflow={args.overflow}):")
        for node, (op, count) in ex.overflows.items():
            print(f"  {node:30s} {op:16s} {count}")
    if not args.compare_ort:
        return 0
    try:
        theirs = run_ort_all(args.model, inputs) if per_node else run_ort(args.model, inputs, optimization=ort_opt)
    except Exception as exc:  # onnxruntime's own exception types; the message says what it lacks
        raise ValueError(f"onnxruntime could not run the model for --compare-ort: {exc}") from None
    rows = compare_outputs(outputs, {n: theirs[n] for n in outputs})
    print(f"compare with onnxruntime (graph optimization: {ort_opt}; integers must be equal, "
          f"floats within --float-atol {args.float_atol:g}):")
    print(f"  {'output':30s} {'dtype':8s} {'elements':>10s} {'differing':>10s} {'max_abs_diff':>14s}")
    bad = 0
    for r in rows:
        dtype = outputs[r["output"]].dtype
        integer = dtype.kind in "iub"
        ok = r["differing"] == 0 or (not integer and r["max_abs_diff"] <= args.float_atol)
        bad += 0 if ok else r["differing"]
        print(f"  {r['output']:30s} {dtype.name:8s} {r['elements']:10d} {r['differing']:10d} "
              f"{r['max_abs_diff']:14.6g} {'' if ok else 'MISMATCH'} {r['note']}")
    if per_node:
        _print_divergence(first_divergence(ex.model, everything, theirs))
    print("mismatches: 0 (integers bit-exact, floats within tolerance)" if bad == 0
          else f"mismatches: {bad} element(s) differ")
    return 0 if bad == 0 else 1


def _print_divergence(rows: list[dict]) -> None:
    """Where qsim and ORT first part: nodes whose inputs agreed but whose output differs."""
    if not rows:
        print("every node output equals ORT's (all intermediate tensors compared)")
        return
    n_int = sum(r["integer"] for r in rows)
    print(f"{len(rows)} intermediate tensor(s) differ ({n_int} integer); divergence starts at:")
    starts = [r for r in rows if r["starts_here"]]
    for r in starts[:8]:
        kind = "integer" if r["integer"] else "float"
        print(f"  node {r['node']!r} ({r['op']}) -> {r['tensor']!r} [{kind}]: "
              f"{r['differing']}/{r['elements']} differ, max |d| {r['max_abs_diff']:.3g}")
    if len(starts) > 8:
        print(f"  ... and {len(starts) - 8} more starting node(s)")
    first_int = next((r for r in rows if r["integer"]), None)
    if first_int is not None:
        print(f"first integer tensor that differs: {first_int['tensor']!r} from node {first_int['node']!r} "
              f"({first_int['op']})")


def register(sub) -> None:
    # `qsim run-tflite` lives in qsim.tflite; registered from here until qsim/cli.py lists that module.
    from qsim.tflite.commands import register as register_tflite

    register_tflite(sub)
    p = sub.add_parser("run-onnx", help="run a quantized ONNX model on qsim's integer kernels (optionally vs ORT)")
    p.add_argument("model", help="the .onnx model file")
    p.add_argument("--inputs", required=True, help=".npz with one array per graph input, by input name")
    p.add_argument("--out", help=".npz to write, one array per graph output, by output name")
    p.add_argument("--compare-ort", action="store_true",
                   help="also run onnxruntime; print differing elements per output and (graph as written) the "
                        "nodes where qsim and ORT first diverge; exit 1 on any integer mismatch or a float "
                        "output beyond --float-atol")
    p.add_argument("--float-atol", type=float, default=1e-4,
                   help="largest |difference| accepted on float outputs for --compare-ort (default 1e-4; "
                        "integer outputs must always be equal)")
    p.add_argument("--fuse-qdq", action="store_true",
                   help="run DequantizeLinear -> Conv/MatMul [-> Relu] -> QuantizeLinear as QLinearConv/QLinearMatMul, "
                        "as ORT does when it deploys a QDQ model (integer kernels, --acc-bits and pair saturation apply)")
    p.add_argument("--ort-opt", choices=["disable", "basic", "extended", "all"], default=None,
                   help="ORT graph optimization for --compare-ort: 'disable' runs the graph as written (default), "
                        "'all' is what ORT deploys (default with --fuse-qdq)")
    p.add_argument("--pair-saturate16", action="store_true",
                   help="same as --ort-target avx2: emulate ORT's u8 x s8 kernels on AVX2 CPUs without VNNI: "
                        "adjacent product pairs saturate "
                        "to int16 in MatMulInteger, QLinearMatMul and non-depthwise QLinearConv (ORT's ConvInteger "
                        "and depthwise QLinearConv were measured exact and stay exact)")
    p.add_argument("--ort-target", choices=["host", "avx2", "vnni", "arm64", "exact"], default="host",
                   help="which onnxruntime CPU build to reproduce: host (default: what ORT does on this machine), "
                        "avx2 (x86 AVX2 without VNNI: u8 x s8 pairs saturate to int16), vnni (AVX-512 VNNI / "
                        "AVX-VNNI), arm64, or exact integer arithmetic; float ops always follow x86-64 MLAS")
    p.add_argument("--acc-bits", type=int, default=32, help="accumulator width of the integer ops (default 32)")
    p.add_argument("--overflow", choices=["wrap", "saturate"], default="wrap",
                   help="what a narrow accumulator does on overflow (default wrap)")
    p.set_defaults(func=run)
