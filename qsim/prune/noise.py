"""Measured quantization noise against the uniform-noise model Δ²/12, per bit width.

For a uniform quantizer of step Δ whose input is spread smoothly over many steps, the
rounding error is ≈ uniform on [−Δ/2, Δ/2], so its mean square is Δ²/12. This module measures
the real mean-square error of every MAC layer's weight (symmetric, one scale per tensor) and
input activation (affine, min-max on the calibration set, as the executor calibrates them) at
each bit width, on the dense network and on a pruned one, and compares it with Δ²/12.

    python -m qsim.prune.noise [--network mnist_cnn] [--sparsity 0.8] [--out docs/images/noise_vs_delta2_12.png]

prints a Markdown table (measured / model per layer and bit width) and draws the plot.
Exact zeros (pruned weights, ReLU outputs at the zero point) quantize without error, so the
measured noise of a tensor with a fraction z of exact zeros is ≈ (1 − z)·Δ²/12; at 2–3 bits
weights concentrate in the zero bin and the model no longer holds.
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def _mse(x: np.ndarray, xq: np.ndarray) -> float:
    d = np.asarray(x, np.float64) - np.asarray(xq, np.float64)
    return float(np.mean(d * d))


def noise_rows(name: str = "mnist_cnn", bits=range(2, 9), sparsity: float = 0.0, pattern: str = "unstructured",
               seed: int = 0, fine_tune_epochs: int = 0, calib_size: int = 256) -> list[dict]:
    """One row per (tensor, bit width): measured MSE, Δ²/12, their ratio, the zero fraction."""
    from qsim.nets import get_network
    from qsim.nets import float_exec
    from qsim.nets.data import load_dataset
    from qsim.prune.pipeline import prune_for_config
    from qsim.quant import QuantSpec, quantize

    net = get_network(name)
    params = net.weights() if sparsity == 0 else prune_for_config(net, sparsity, pattern, seed, fine_tune_epochs)
    x = load_dataset(net.dataset).calibration(calib_size)
    _, trace = float_exec.forward(net.arch, params, x, record=True)
    rows = []
    for op in net.arch.mac_ops:
        w = np.asarray(params[f"{op.name}.w"], np.float32)
        act = np.asarray(trace[op.name][0], np.float32)
        for kind, t, spec_kw in (("weight", w, dict(scheme="symmetric", restricted=True)),
                                 ("activation", act, dict(scheme="affine"))):
            for b in bits:
                spec = QuantSpec(bits=int(b), granularity="tensor", **spec_kw)
                qt = quantize(t, spec)
                delta = float(qt.scale)
                rows.append({"network": name, "sparsity": float(sparsity), "layer": op.name, "tensor": kind,
                             "bits": int(b), "delta": delta, "measured_mse": _mse(t, qt.dequantize()),
                             "model_mse": delta * delta / 12.0, "zero_fraction": float(np.mean(t == 0))})
    for r in rows:
        r["ratio"] = r["measured_mse"] / r["model_mse"]
    return rows


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    groups = {}
    for r in rows:
        groups.setdefault((r["sparsity"], r["tensor"], r["layer"]), []).append(r)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    layers = sorted({r["layer"] for r in rows}, key=[r["layer"] for r in rows].index)
    for (sp, kind, layer), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["bits"])
        b = [r["bits"] for r in rs]
        c = colors[layers.index(layer) % len(colors)]
        style = {"weight": "-", "activation": ":"}[kind]
        marker = "o" if sp == 0 else "s"
        label = f"{layer} {kind}" + (f", {100 * sp:.0f} % pruned" if sp else "")
        if kind == "weight":
            axes[0].semilogy(b, [r["measured_mse"] for r in rs], style, marker=marker, color=c, label=label,
                             fillstyle="full" if sp == 0 else "none")
            if sp == 0:
                axes[0].semilogy(b, [r["model_mse"] for r in rs], "--", color=c, alpha=0.5)
        axes[1].plot(b, [r["ratio"] for r in rs], style, marker=marker, color=c, label=label,
                     fillstyle="full" if sp == 0 else "none")
    axes[0].set(xlabel="weight bits (symmetric, per tensor)", ylabel="mean-square error",
                title="weight noise: measured (markers) vs Δ²/12 (dashed)")
    axes[1].axhline(1.0, color="k", lw=0.8)
    for sp in sorted({r["sparsity"] for r in rows} - {0.0}):
        axes[1].axhline(1.0 - sp, color="gray", lw=0.8, ls="--")
        axes[1].annotate(f"1 − {100 * sp:.0f} % zeros", (min(r["bits"] for r in rows), 1.0 - sp), fontsize=7,
                         color="gray", xytext=(0, 3), textcoords="offset points")
    axes[1].set(xlabel="bits", ylabel="measured / (Δ²/12)", title="ratio to the uniform-noise model")
    axes[1].legend(fontsize=6.5, ncol=2)
    axes[0].legend(fontsize=6.5)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: list[dict]) -> str:
    bits = sorted({r["bits"] for r in rows})
    keys = []
    for r in rows:
        k = (r["sparsity"], r["layer"], r["tensor"])
        if k not in keys:
            keys.append(k)
    lines = ["| tensor | pruned | zeros | " + " | ".join(f"{b} bits" for b in bits) + " |",
             "|---|---|---|" + "---|" * len(bits)]
    for sp, layer, kind in keys:
        rs = {r["bits"]: r for r in rows if (r["sparsity"], r["layer"], r["tensor"]) == (sp, layer, kind)}
        z = next(iter(rs.values()))["zero_fraction"]
        lines.append(f"| {layer} {kind} | {100 * sp:.0f} % | {100 * z:.0f} % | "
                     + " | ".join(f"{rs[b]['ratio']:.2f}" for b in bits) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", default="mnist_cnn")
    ap.add_argument("--sparsity", type=float, default=0.8, help="also measure the network pruned this much")
    ap.add_argument("--pattern", default="unstructured")
    ap.add_argument("--out", default="docs/images/noise_vs_delta2_12.png")
    args = ap.parse_args(argv)
    rows = noise_rows(args.network)
    if args.sparsity:
        rows += [r for r in noise_rows(args.network, sparsity=args.sparsity, pattern=args.pattern)
                 if r["tensor"] == "weight"]
    print("measured MSE / (Δ²/12):\n")
    print(markdown(rows))
    plot(rows, args.out)
    print(f"\nplot written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
