"""`qsim run-tflite`: run an int8 TFLite model on qsim's kernels, optionally against LiteRT."""

from __future__ import annotations

import numpy as np

from qsim.tflite.ops import PATHS


def _steps(runner, inputs: dict) -> list[dict]:
    """One feed per invocation: an array with one more axis than the model input is a sequence."""
    n = None
    for i in runner.main.inputs:
        t = runner.main.tensors[i]
        if t.name not in inputs:
            raise ValueError(f"input {t.name!r} is missing from --inputs; the model's inputs are {runner.input_names}")
        a = inputs[t.name]
        k = a.shape[0] if a.ndim == len(t.shape) + 1 else None
        if n is not None and k != n:
            raise ValueError("all inputs must have the same number of invocations")
        n = k
    if n is None:
        return [inputs]
    return [{k: v[s] for k, v in inputs.items()} for s in range(n)]


def run(args) -> int:
    from qsim.onnxrun.commands import _load_npz
    from qsim.tflite.runner import TfliteRunner, run_litert

    runner = TfliteRunner(args.model, path=args.path if args.path != "all" else "reference")
    inputs = _load_npz(args.inputs)
    steps = _steps(runner, inputs)
    paths = list(PATHS) if args.path == "all" else [args.path]
    ok = True
    for path in paths:
        runner = TfliteRunner(args.model, path=path)
        outs = [runner.invoke(s) for s in steps]
        stacked = {k: np.stack([o[k] for o in outs]) if len(outs) > 1 else outs[0][k] for k in outs[0]}
        print(f"path {path}: {len(steps)} invocation(s)")
        for k, v in stacked.items():
            print(f"  output {k}: {v.dtype} {list(v.shape)}")
        if args.out and path == paths[0]:
            np.savez(args.out, **stacked)
            print(f"wrote {args.out}")
        if not args.compare_litert:
            continue
        try:
            theirs = run_litert(args.model, steps, path=path)
        except ImportError:
            raise ValueError("--compare-litert needs ai-edge-litert: pip install ai-edge-litert") from None
        bad = 0
        for name in outs[0]:
            a = np.stack([o[name] for o in outs])
            b = np.stack([t[name] for t in theirs])
            d = int((a.astype(np.int64) != b.astype(np.int64)).sum())
            bad += d
            print(f"  vs LiteRT {path}: {name}: {a.size} elements, {d} differ")
        print(f"  mismatches: {bad}" + (" (bit-exact)" if bad == 0 else ""))
        ok = ok and bad == 0
    return 0 if ok else 1


def register(sub) -> None:
    p = sub.add_parser("run-tflite", help="run an int8 TFLite model on qsim's integer kernels (optionally vs LiteRT)")
    p.add_argument("model", help="the .tflite model file")
    p.add_argument("--inputs", required=True,
                   help=".npz with one array per model input, by name; an extra leading axis is a sequence of "
                        "invocations (streaming models keep their variables between them)")
    p.add_argument("--out", help=".npz to write, one array per model output (stacked over invocations)")
    p.add_argument("--path", choices=[*PATHS, "all"], default="reference",
                   help="which LiteRT arithmetic to reproduce: reference (BUILTIN_REF), optimized "
                        "(BUILTIN_WITHOUT_DEFAULT_DELEGATES), xnnpack (the default interpreter), or all three")
    p.add_argument("--compare-litert", action="store_true",
                   help="also run ai-edge-litert's interpreter on the same path(s); exit 1 on any mismatch")
    p.set_defaults(func=run)
