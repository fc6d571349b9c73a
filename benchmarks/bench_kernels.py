"""Speed of qsim's exact integer kernels vs ONNX Runtime, single-threaded, in one process.

GOPS = 2·M·N·K / s of `matmul_int` (int32 accumulator, bit-exact) vs ORT `MatMulInteger`
(u8 activations with zero point 128, s8 weights as a prepacked constant initializer) on
the same data. Weights stay in [-64, 64] so ORT's AVX2 u8×s8 kernel is exact too
(REFERENCE B1), and every result is checked for equality before it is timed. The first line
names the CPU, its SIMD flags and qsim's kernel backend (`QSIM_KERNEL_BACKEND=avx2` forces
the AVX2 path on a VNNI host, to compare).

Two qsim columns:

- "per call": `matmul_int(a, b)` with the weight as a plain array — every call packs it
  (VNNI panels, or the AVX2 kernels' layouts) and checks its range;
- "prepacked": `matmul_int(a, pack_weights(b))` — the weight packed once outside the timed
  call, as ORT packs its constant initializer once when the session is created. This is the
  like-for-like comparison with ORT; the per-call column is what a caller pays for a weight
  that changes between calls.

All three are timed alternately (best of each), so load from other processes hits them
alike. Then conv2d_int vs ORT `ConvInteger` on ResNet-18 layer shapes (batch 1), the
weight per call and prepacked likewise.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_kernels.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from qsim.kernels import backend, conv2d_int, matmul_int, pack_weights  # noqa: E402
from qsim.kernels.cpu import cpu_model, host_features  # noqa: E402

ZA = 128


def _session(node, inputs, outputs, inits):
    graph = helper.make_graph([node], "bench", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ort_matmul(b: np.ndarray, M: int):
    K, N = b.shape
    node = helper.make_node("MatMulInteger", ["a", "b", "za"], ["y"])
    sess = _session(node, [helper.make_tensor_value_info("a", TensorProto.UINT8, [M, K])],
                    [helper.make_tensor_value_info("y", TensorProto.INT32, [M, N])],
                    [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(ZA, np.uint8), "za")])
    return lambda a: sess.run(None, {"a": a})[0]


def ort_conv(w: np.ndarray, x_shape, stride: int, pad: int):
    node = helper.make_node("ConvInteger", ["x", "w", "zx"], ["y"], strides=[stride] * 2, pads=[pad] * 4)
    sess = _session(node, [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x_shape))],
                    [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                    [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(ZA, np.uint8), "zx")])
    return lambda x: sess.run(None, {"x": x})[0]


def alternating_times(fns, arg, budget: float) -> list[float]:
    """Best time of each function, timed in turn so that load from other processes on a
    shared machine hits all alike (after one warm-up call each)."""
    for fn in fns:
        fn(arg)
    times = [[] for _ in fns]
    t_end = time.perf_counter() + budget
    while len(times[0]) < 3 or (time.perf_counter() < t_end and len(times[0]) < 200):
        for fn, acc in zip(fns, times):
            t0 = time.perf_counter()
            fn(arg)
            acc.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def paired_times(f_q, f_o, arg, budget: float) -> tuple[float, float]:
    """`alternating_times` of two functions."""
    t_q, t_o = alternating_times((f_q, f_o), arg, budget)
    return t_q, t_o


def bench_matmul(shapes, budget):
    """qsim (weight per call, and prepacked) vs ORT; the last column is plain float32 BLAS on
    pre-converted operands (no conversion, no exactness bookkeeping)."""
    rng = np.random.default_rng(0)
    print(f"{'matmul M x N x K':>18} | {'per-call GOPS':>13} | {'prepacked GOPS':>14} | {'ORT GOPS':>8} | "
          f"{'per-call/ORT':>12} | {'prepacked/ORT':>13} | {'f32 BLAS/ORT':>12}")
    rows = []
    for M, N, K in shapes:
        a = rng.integers(0, 256, (M, K), dtype=np.uint8)
        b = rng.integers(-64, 65, (K, N)).astype(np.int8)
        pw = pack_weights(b)
        run_ort = ort_matmul(b, M)
        per_call = lambda x: matmul_int(x, b, ZA)[0]  # noqa: E731
        packed = lambda x: matmul_int(x, pw, ZA)[0]  # noqa: E731
        want = run_ort(a)
        if not (np.array_equal(per_call(a), want) and np.array_equal(packed(a), want)):
            raise SystemExit(f"mismatch vs ORT at {M}x{N}x{K}")
        t_c, t_p, t_o = alternating_times((per_call, packed, run_ort), a, budget)
        af, bf = a.astype(np.float32) - ZA, b.astype(np.float32)
        out = np.empty((M, N), np.float32)
        t_f, t_o2 = paired_times(lambda x: np.matmul(x, bf, out=out), lambda _: run_ort(a), af, budget / 3)
        ops = 2.0 * M * N * K
        rows.append((M, N, K, ops / t_c / 1e9, ops / t_p / 1e9, ops / t_o / 1e9))
        print(f"{f'{M} x {N} x {K}':>18} | {rows[-1][3]:13.1f} | {rows[-1][4]:14.1f} | {rows[-1][5]:8.1f} | "
              f"{t_o / t_c:12.2f} | {t_o / t_p:13.2f} | {t_o2 / t_f:12.2f}", flush=True)
    return rows


# ResNet-18 (224x224) conv layers: (name, C, H, O, k, stride, pad)
RESNET18 = [
    ("conv1 7x7/2", 3, 224, 64, 7, 2, 3),
    ("layer1 3x3", 64, 56, 64, 3, 1, 1),
    ("layer2 3x3/2", 64, 56, 128, 3, 2, 1),
    ("layer2 3x3", 128, 28, 128, 3, 1, 1),
    ("layer3 3x3", 256, 14, 256, 3, 1, 1),
    ("layer4 3x3", 512, 7, 512, 3, 1, 1),
    ("layer4 1x1/2 down", 256, 14, 512, 1, 2, 0),
]


def bench_conv(budget):
    rng = np.random.default_rng(1)
    print(f"\n{'conv (ResNet-18, N=1)':>22} | {'per-call GOPS':>13} | {'prepacked GOPS':>14} | {'ORT GOPS':>8} | "
          f"{'per-call/ORT':>12} | {'prepacked/ORT':>13}")
    for name, C, H, O, k, s, p in RESNET18:
        x = rng.integers(0, 256, (1, C, H, H), dtype=np.uint8)
        w = rng.integers(-64, 65, (O, C, k, k)).astype(np.int8)
        pw = pack_weights(w)
        run_ort = ort_conv(w, x.shape, s, p)
        per_call = lambda v: conv2d_int(v, w, ZA, stride=(s, s), padding=(p,) * 4)[0]  # noqa: E731
        packed = lambda v: conv2d_int(v, pw, ZA, stride=(s, s), padding=(p,) * 4)[0]  # noqa: E731
        ref = run_ort(x)
        if not (np.array_equal(per_call(x), ref) and np.array_equal(packed(x), ref)):
            raise SystemExit(f"conv mismatch vs ORT at {name}")
        t_c, t_p, t_o = alternating_times((per_call, packed, run_ort), x, budget)
        ops = 2.0 * ref.size * C * k * k
        print(f"{name:>22} | {ops / t_c / 1e9:13.1f} | {ops / t_p / 1e9:14.1f} | {ops / t_o / 1e9:8.1f} | "
              f"{t_o / t_c:12.2f} | {t_o / t_p:13.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timing budget per case")
    parser.add_argument("--no-conv", action="store_true", help="skip the conv2d table")
    args = parser.parse_args()
    budget = 0.5 if args.quick else 3.0
    shapes = [(n, n, n) for n in (256, 512, 1024, 2048)] + [(m, 4096, 4096) for m in (1, 2, 4, 8)]
    flags = [f for f, on in host_features().items() if on]
    print(f"CPU: {cpu_model()}; flags: {', '.join(flags) or 'none'}; qsim kernel backend: {backend()}; "
          f"onnxruntime {ort.__version__}", flush=True)
    with threadpool_limits(limits=1):
        bench_matmul(shapes, budget)
        if not args.no_conv:
            bench_conv(budget)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
