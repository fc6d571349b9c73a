"""`qsim run-onnx`: execute an ONNX model on qsim's kernels, optionally against ORT."""

from __future__ import annotations

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
    from qsim.onnxrun.executor import OnnxExecutor, compare_outputs, run_ort

    ex = OnnxExecutor(args.model, acc_bits=args.acc_bits, overflow=args.overflow,
                      pair_saturate16=args.pair_saturate16, fuse_qdq=args.fuse_qdq)
    if args.fuse_qdq:
        print(f"fused {len(ex.fused)} QDQ pattern(s) into integer ops: {', '.join(ex.fused) or '-'}")
    inputs = _load_npz(args.inputs)
    outputs = ex.run(inputs)
    for name, y in outputs.items():
        print(f"output {name}: {y.dtype} {list(y.shape)}")
    if args.out:
        np.savez(args.out, **outputs)
        print(f"wrote {args.out}")
    custom = args.acc_bits != 32 or args.overflow != "wrap" or args.pair_saturate16
    if ex.overflows and (custom or any(c for _, c in ex.overflows.values())):
        print(f"accumulator overflows (acc_bits={args.acc_bits}, overflow={args.overflow}):")
        for node, (op, count) in ex.overflows.items():
            print(f"  {node:30s} {op:16s} {count}")
    if not args.compare_ort:
        return 0
    ort_opt = args.ort_opt or ("all" if args.fuse_qdq else "disable")
    try:
        theirs = run_ort(args.model, inputs, optimization=ort_opt)
    except Exception as exc:  # onnxruntime's own exception types; the message says what it lacks
        raise ValueError(f"onnxruntime could not run the model for --compare-ort: {exc}") from None
    rows = compare_outputs(outputs, theirs)
    print(f"compare with onnxruntime (graph optimization: {ort_opt}):")
    print(f"  {'output':30s} {'elements':>10s} {'differing':>10s} {'max_abs_diff':>14s}")
    for r in rows:
        print(f"  {r['output']:30s} {r['elements']:10d} {r['differing']:10d} {r['max_abs_diff']:14.6g} {r['note']}")
    bad = sum(r["differing"] for r in rows)
    print("mismatches: 0 (bit-exact)" if bad == 0 else f"mismatches: {bad} element(s) differ")
    return 0 if bad == 0 else 1


def register(sub) -> None:
    p = sub.add_parser("run-onnx", help="run a quantized ONNX model on qsim's integer kernels (optionally vs ORT)")
    p.add_argument("model", help="the .onnx model file")
    p.add_argument("--inputs", required=True, help=".npz with one array per graph input, by input name")
    p.add_argument("--out", help=".npz to write, one array per graph output, by output name")
    p.add_argument("--compare-ort", action="store_true",
                   help="also run onnxruntime; print differing elements per output; exit 1 on any mismatch")
    p.add_argument("--fuse-qdq", action="store_true",
                   help="run DequantizeLinear -> Conv/MatMul [-> Relu] -> QuantizeLinear as QLinearConv/QLinearMatMul, "
                        "as ORT does when it deploys a QDQ model (integer kernels, --acc-bits and pair saturation apply)")
    p.add_argument("--ort-opt", choices=["disable", "basic", "extended", "all"], default=None,
                   help="ORT graph optimization for --compare-ort: 'disable' runs the graph as written (default), "
                        "'all' is what ORT deploys (default with --fuse-qdq)")
    p.add_argument("--pair-saturate16", action="store_true",
                   help="emulate ORT's u8 x s8 kernels on AVX2 CPUs without VNNI: adjacent product pairs saturate "
                        "to int16 in MatMulInteger, QLinearMatMul and non-depthwise QLinearConv (ORT's ConvInteger "
                        "and depthwise QLinearConv were measured exact and stay exact)")
    p.add_argument("--acc-bits", type=int, default=32, help="accumulator width of the integer ops (default 32)")
    p.add_argument("--overflow", choices=["wrap", "saturate"], default="wrap",
                   help="what a narrow accumulator does on overflow (default wrap)")
    p.set_defaults(func=run)
