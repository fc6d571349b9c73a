"""`qsim demo`: quantize a weight matrix every way qsim knows and show error vs storage."""

from __future__ import annotations

import numpy as np

from qsim.quant import QuantSpec, quantize

DEMO_SPECS = [
    QuantSpec(bits=8, scheme="symmetric", granularity="tensor"),
    QuantSpec(bits=8, scheme="symmetric", granularity="channel"),
    QuantSpec(bits=4, scheme="symmetric", granularity="channel"),
    QuantSpec(bits=4, scheme="affine", granularity="group", group_size=32, scale_dtype="fp16"),
    QuantSpec(bits=4, scheme="pow2", granularity="channel"),
    QuantSpec(bits=4, scheme="kmeans"),
    QuantSpec(scheme="ternary", granularity="channel"),
    QuantSpec(scheme="binary", granularity="channel"),
]


def sqnr_db(x: np.ndarray, x_hat: np.ndarray) -> float:
    noise = float(np.sum((x - x_hat) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(float(np.sum(x**2)) / noise)


def demo_rows(seed: int = 0):
    rng = np.random.default_rng(seed)
    # Heavy-tailed, per-row scaled weights: where granularity and scheme matter.
    w = (rng.standard_t(df=4, size=(64, 256)) * rng.uniform(0.2, 2.0, size=(64, 1))).astype(np.float32)
    specs = list(DEMO_SPECS)
    try:
        from qsim.quant.formats import quantize_block  # noqa: F401

        specs += [QuantSpec(scheme="mxfp8_e4m3"), QuantSpec(scheme="mxfp4"), QuantSpec(scheme="nvfp4")]
    except ImportError:
        pass
    for spec in specs:
        qt = quantize(w, spec)
        yield spec.label(), qt.bits_per_element, sqnr_db(w, qt.dequantize())


def run(args) -> int:
    print(f"{'format':32s} {'bits/elem':>9s} {'SQNR dB':>8s}")
    for label, bpe, sqnr in demo_rows(args.seed):
        print(f"{label:32s} {bpe:9.3f} {sqnr:8.2f}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="quantize a weight matrix in every scheme: storage vs SQNR")
    p.add_argument("--seed", type=int, default=0, help="random seed of the demo tensor (default 0)")
    p.set_defaults(func=run)
