"""Speed of quantized inference vs the float NumPy forward of the same net, same run.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_nets.py [--repeats 10]

Reports images/s of the MNIST CNN on its 2,000 test images and of the digits CNN on its
test split: float32 NumPy forward (im2col + BLAS) and the W8A8 integer pipeline (input
quantization, `conv2d_int` / `matmul_int` on an emulated 32-bit accumulator, `requantize`
fp32_rne), end to end; target ratio quantized/float >= 1.0. Also the wall time of one
`evaluate()` call of the digits CNN (what a sweep pays per config). Single-threaded: BLAS
is pinned to one thread. The report names the CPU and qsim's kernel backend
(`QSIM_KERNEL_BACKEND=avx2` forces the AVX2 kernels on a VNNI host, to compare).
`packed_over_raw_weights` times the same quantized forward with each layer's weight packed
once into the VNNI panels (`PreparedWeight.kernel_weight`, the executor's default) against
passing the raw code arrays (re-packed by every kernel call), alternately in the same run
(1.0 where the backend packs nothing).
With `--minilm` (needs the MiniLM package) also the wall time of one quantized MiniLM
evaluation (W8A8 per-channel, SICK-R 1,000-pair subset) and of its float evaluation, and
the quantized one again on the raw weight codes (`minilm_w8a8_sick_raw_weights_s`, run second).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402


def paired_best(f_a, f_b, repeats: int) -> tuple[float, float]:
    """Best time of each of two functions, called alternately so that load from other
    processes on a shared machine hits both alike."""
    ta, tb = [], []
    for _ in range(repeats):
        for fn, acc in ((f_a, ta), (f_b, tb)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return min(ta), min(tb)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _raw_weights(quantized_forward, net, cfg, x, batch):
    """The quantized forward with the raw code arrays in the kernel calls (no prepacked weights)."""
    from qsim.nets.quant_exec import PreparedWeight

    packed = PreparedWeight.kernel_weight
    PreparedWeight.kernel_weight = lambda self, groups=1: self.q
    try:
        return quantized_forward(net, cfg, x, batch_size=batch)
    finally:
        PreparedWeight.kernel_weight = packed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed repeats, float and quantized alternately; the best is reported (default 10)")
    parser.add_argument("--batch", type=int, default=256, help="images per chunk for both executors (default 256)")
    parser.add_argument("--minilm", action="store_true", help="also time one quantized MiniLM evaluation on SICK")
    args = parser.parse_args(argv)

    from qsim.kernels import backend
    from qsim.kernels.cpu import cpu_model
    from qsim.nets import evaluate, get_network
    from qsim.nets.data import load_dataset
    from qsim.nets.float_exec import forward
    from qsim.nets.quant_exec import QuantConfig, one_blas_thread, quantized_forward
    from qsim.quant import QuantSpec

    wspec, aspec = QuantSpec(bits=8, granularity="channel"), QuantSpec(bits=8, scheme="affine")
    report = {"cpu": cpu_model(), "kernel_backend": backend(), "batch": args.batch,
              "config": "W8 per-channel symmetric, A8 affine, fp32_rne, acc32", "target_ratio": 1.0}
    for name in ("mnist_cnn", "digits_cnn"):
        net = get_network(name)
        x = load_dataset(net.dataset).x_test
        params = net.weights()
        cfg = QuantConfig.build(net, wspec, aspec)
        with one_blas_thread():
            quantized_forward(net, cfg, x[:64])                 # warm-up: JIT, calibration, weight caches
            forward(net.arch, params, x[:64])
            # Both run in chunks of the same size (cache-friendly for both).
            t_float, t_quant = paired_best(lambda: forward(net.arch, params, x, batch_size=args.batch),
                                           lambda: quantized_forward(net, cfg, x, batch_size=args.batch), args.repeats)
            t_raw, t_packed = paired_best(lambda: _raw_weights(quantized_forward, net, cfg, x, args.batch),
                                          lambda: quantized_forward(net, cfg, x, batch_size=args.batch), args.repeats)
        n = len(x)
        report[name] = {"images": n, "float_images_per_s": round(n / t_float, 1),
                        "quantized_images_per_s": round(n / t_quant, 1),
                        "ratio_quantized_over_float": round(t_float / t_quant, 3),
                        "packed_over_raw_weights": round(t_raw / t_packed, 3)}
    evaluate("digits_cnn", wspec, aspec)                    # warm-up of the digits caches
    report["digits_cnn_evaluate_s"] = round(best_of(lambda: evaluate("digits_cnn", wspec, aspec), args.repeats), 4)
    if args.minilm:
        from qsim.nets import minilm

        t0 = time.perf_counter()
        minilm.float_result("sick")
        report["minilm_float_sick_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        res = minilm.evaluate_minilm(wspec, aspec, task="sick", per_layer=False)
        report["minilm_w8a8_sick_s"] = round(time.perf_counter() - t0, 2)
        report["minilm_spearman_float_w8a8"] = [round(res["float"]["metric"], 4), round(res["quantized"]["metric"], 4)]
        packed = minilm.Quantizer.kernel_weight          # the same evaluation on the raw (unpacked) weight codes
        minilm.Quantizer.kernel_weight = lambda self, name, qw: qw.q.T
        try:
            t0 = time.perf_counter()
            minilm.evaluate_minilm(wspec, aspec, task="sick", per_layer=False)
            report["minilm_w8a8_sick_raw_weights_s"] = round(time.perf_counter() - t0, 2)
        finally:
            minilm.Quantizer.kernel_weight = packed
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
