"""`qsim run-tflite` per-invocation time on the four int8 wake-word models of pymicro-wakeword 2.5.0,
per LiteRT path: qsim's reference op-by-op runner (`prepared=False`, "before"), the prepared runner
(the default, "after") and ai-edge-litert's interpreter on the same path, one thread, measured
interleaved in the same run. Prints the CPU model, the load and, per model and path, the median
ms per invocation over the repeats (each repeat: a 100-invocation stream, variables persisting).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_tflite.py [--steps 100] [--repeats 3]
"""
import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

import numpy as np

from qsim.kernels.cpu import cpu_model
from qsim.tflite.ops import PATHS
from qsim.tflite.runner import TfliteRunner

WAKE_WORDS = ("alexa", "hey_jarvis", "hey_mycroft", "okay_nabu")


def models_dir() -> Path:
    spec = importlib.util.find_spec("pymicro_wakeword")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps pymicro-wakeword==2.5.0 provides the models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def time_qsim(runner, steps) -> float:
    runner.reset()
    t0 = time.perf_counter()
    for s in steps:
        runner.invoke(s)
    return (time.perf_counter() - t0) / len(steps) * 1e3


def time_litert(it, index, steps, name) -> float:
    t0 = time.perf_counter()
    for s in steps:
        it.set_tensor(index, s[name])
        it.invoke()
        it.get_tensor(it.get_output_details()[0]["index"])
    return (time.perf_counter() - t0) / len(steps) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolvers = {"reference": OpResolverType.BUILTIN_REF,
                 "optimized": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, "xnnpack": OpResolverType.AUTO}
    print(f"CPU: {cpu_model()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"median ms per invocation over {args.repeats} repeats of {args.steps} invocations")
    print(f"{'model':12s} {'path':10s} {'before':>8s} {'after':>8s} {'LiteRT':>8s} {'speedup':>8s} "
          f"{'after/LiteRT':>13s}")
    rows = []
    for name in WAKE_WORDS:
        p = models_dir() / f"{name}.tflite"
        for path in PATHS:
            before = TfliteRunner(p, path=path, prepared=False)
            after = TfliteRunner(p, path=path)
            t = before.main.tensors[before.main.inputs[0]]
            rng = np.random.default_rng(0)
            steps = [{t.name: rng.integers(-128, 128, t.shape).astype(np.int8)} for _ in range(args.steps)]
            it = Interpreter(model_path=str(p), experimental_op_resolver_type=resolvers[path], num_threads=1)
            it.allocate_tensors()
            index = it.get_input_details()[0]["index"]
            time_qsim(after, steps[:5])
            time_litert(it, index, steps[:5], t.name)
            tb, ta, tl = [], [], []
            for _ in range(args.repeats):
                tb.append(time_qsim(before, steps))
                ta.append(time_qsim(after, steps))
                tl.append(time_litert(it, index, steps, t.name))
            b, a, lt = statistics.median(tb), statistics.median(ta), statistics.median(tl)
            rows.append((b, a, lt))
            print(f"{name:12s} {path:10s} {b:8.3f} {a:8.3f} {lt:8.4f} {b / a:7.1f}x {a / lt:12.0f}x")
    bs, as_, ls = zip(*rows)
    print(f"range: before {min(bs):.2f}-{max(bs):.2f} ms, after {min(as_):.2f}-{max(as_):.2f} ms, "
          f"LiteRT {min(ls):.3f}-{max(ls):.3f} ms; speedup {min(b / a for b, a, _ in rows):.1f}-"
          f"{max(b / a for b, a, _ in rows):.1f}x")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
