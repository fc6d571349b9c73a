"""Does the calibrated host profile predict real int8 GEMM latency? (target: within ±30%)

Calibrates this machine (`qsim.hw.calibrate.calibrate_host`), then for square int8
GEMMs of 256…2048 compares the cost model's latency (`cost_layer` on
`Dense(batch=M, in=K, out=N)` with `CostQuant(w_bits=8, a_bits=8)`) with onnxruntime
MatMulInteger timed in the same run. Single-threaded throughout (OPENBLAS_NUM_THREADS=1,
ORT intra_op_num_threads=1, profile cores=1) so the shared cores of a busy machine
disturb it least.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_host_calibration.py [--quick] [--sizes 256 512 ...]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from qsim.hw import CostQuant, cost_layer, validate_profile_dict  # noqa: E402
from qsim.hw.calibrate import calibrate_host, ort_int8_gemm_session  # noqa: E402
from qsim.workload import Dense  # noqa: E402


def measure(n: int, reps: int) -> tuple[float, float, float]:
    """(best CPU, median CPU, best wall) seconds of an n×n×n int8 GEMM through onnxruntime, one thread.

    With one intra-op thread ORT computes on the calling thread, so its CPU time is the
    latency on a core of its own; wall time also counts waiting for a shared core.
    """
    sess, feed = ort_int8_gemm_session(n, n, n, threads=1)
    sess.run(None, feed)
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.thread_time(), time.perf_counter()
        sess.run(None, feed)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), statistics.median(cpu), min(wall)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="quick calibration (rough; for smoke runs)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()

    t0 = time.perf_counter()
    data = calibrate_host(quick=args.quick)
    data["cpu_simd"]["cores"] = 1  # the comparison is single-threaded
    profile = validate_profile_dict(data, source="calibrate_host")
    v, i8 = data["validation"], data["validation"]["int8_gemm"]
    print(f"calibrated in {time.perf_counter() - t0:.1f} s: {v['host']['cpu']}, clock {data['clock'] / 1e9:.3f} GHz "
          f"({v['host']['clock_source']}), int8 {i8['single_thread_macs_per_s'] / 1e9:.1f} GMAC/s (minimax over "
          f"{i8['square_sizes']}^3), flags {', '.join(v['host']['simd_flags'])}")
    q = CostQuant(w_bits=8, a_bits=8)
    print(f"{'size':>6} {'predicted ms':>13} {'measured ms':>12} {'median ms':>10} {'wall ms':>9} {'pred/meas':>10} "
          f"{'pred/wall':>10} {'bound':>8} {'within 30%':>10}")
    ok = True
    for n in args.sizes:
        rec = cost_layer(Dense(name=f"gemm{n}", batch=n, in_features=n, out_features=n, bias=False), q, profile)
        best, median, wall = measure(n, args.reps if n < 2048 else max(3, args.reps // 2))
        ratio = rec["latency_s"] / best
        inside = abs(ratio - 1.0) <= 0.30
        ok &= inside
        print(f"{n:>6} {rec['latency_s'] * 1e3:>13.3f} {best * 1e3:>12.3f} {median * 1e3:>10.3f} {wall * 1e3:>9.3f} "
              f"{ratio:>10.3f} {rec['latency_s'] / wall:>10.3f} {rec['bound']:>8} {'yes' if inside else 'NO':>10}")
    print("measured = best CPU time of the calling thread (pred/meas); pred/wall uses best wall time")
    print("all within ±30%" if ok else "some sizes outside ±30%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
