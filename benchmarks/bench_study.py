"""Study-driver speed: cost-only design points per second, a 1M-point sweep, and quickstart wall time.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_study.py            # points/s + quickstart
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_study.py --million  # + the 1M-point sweep

The baseline, measured in the same run, is a per-point Python loop over `cost_workload`
(what a user would write without the vectorised batch path).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from qsim.hw import cost_workload, list_profiles, load_profile  # noqa: E402
from qsim.study.cache import ResultCache  # noqa: E402
from qsim.study.runner import cost_quant, run_cost, workload_of  # noqa: E402
from qsim.study.spec import parse_study  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def cost_only_spec(workloads, group_sizes, acc_bits):
    return parse_study({
        "name": "bench", "workload": workloads, "profiles": list_profiles(),
        "grid": {"wbits": {"range": [1, 16]}, "abits": {"range": [2, 16]}, "granularity": ["tensor", "channel", "group"],
                 "group_size": group_sizes, "acc_bits": acc_bits, "scale_dtype": ["fp32", "fp16", "pow2"]},
    })


def sweep(spec) -> tuple[int, float]:
    t0 = time.perf_counter()
    configs = spec.configs()
    with tempfile.TemporaryDirectory() as d:
        table, _ = run_cost(spec, configs, ResultCache(Path(d)), progress=False)
        points = len(table)
    return points, time.perf_counter() - t0


def baseline(spec, n: int = 60) -> float:
    """Points/s of a plain loop: one cost_workload call per (config, profile)."""
    configs = spec.configs()[:n]
    profiles = [load_profile(p) for p in spec.profiles[:3]]
    wl = workload_of(spec.targets[0], False)
    t0 = time.perf_counter()
    for cfg in configs:
        q = cost_quant(cfg)
        for prof in profiles:
            cost_workload(wl, q, prof)
    return len(configs) * len(profiles) / (time.perf_counter() - t0)


def quickstart_times() -> tuple[float, float]:
    """Cold (fresh results dir and empty Numba cache: JIT compile included) and cached re-run."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(d) / "numba"), OPENBLAS_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "qsim", "study", "run", str(ROOT / "studies" / "quickstart.yaml"),
               "--out", str(Path(d) / "quickstart"), "--quiet"]
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--million", action="store_true", help="also run the ~1.1M-point cost-only sweep")
    ap.add_argument("--no-quickstart", action="store_true", help="skip the quickstart wall-time measurement")
    args = ap.parse_args()
    spec = cost_only_spec(["llama2-7b-decode"], [16, 32, 64, 128, 256], [16, 24, 32])
    sweep(cost_only_spec(["llama2-7b-decode"], [32], [32]))  # warm-up: imports, profile loading
    base = baseline(spec)
    points, secs = sweep(spec)
    print(f"cost-only sweep, Llama-2-7B decode block ({len(workload_of('llama2-7b-decode', False))} layers), "
          f"{len(spec.profiles)} profiles")
    print(f"  batched runner : {points:>9,} points in {secs:6.2f} s = {points / secs:>9,.0f} points/s")
    print(f"  per-point loop : {base:>9,.0f} points/s (baseline, same run)")
    print(f"  ratio          : {points / secs / base:9.1f}x")
    if args.million:
        big = cost_only_spec(["llama2-7b-decode", "llama2-7b-prefill"], [8, 16, 32, 48, 64, 96, 128, 192, 256, 512],
                             [16, 20, 24, 28, 32])
        points, secs = sweep(big)
        print(f"  1M-point sweep : {points:>9,} points in {secs:6.2f} s = {points / secs:>9,.0f} points/s")
    if not args.no_quickstart:
        cold, warm = quickstart_times()
        print(f"quickstart study: cold {cold:.1f} s (JIT compile included), cached re-run {warm:.1f} s")


if __name__ == "__main__":
    main()
