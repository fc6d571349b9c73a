"""PTQ methods vs round-to-nearest: the README's table (`python benchmarks/bench_ptq.py [--part cnn|minilm|smollm2]`).

Every cell is `qsim.ptq.evaluate_ptq` (the integer pipeline of `qsim nets eval --ptq`); CNN cells are the mean
and min–max over calibration seeds 0..4 (seed 0 = the study's calibration set). Prints Markdown rows and
writes results/ptq/ptq_<part>.json. One BLAS thread.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from qsim.ptq import evaluate_ptq  # noqa: E402
from qsim.quant import QuantSpec  # noqa: E402

OUT = Path("results") / "ptq"
A8 = QuantSpec(bits=8, scheme="affine")


def cell(net, w, a, ptq, seeds=(0,), **kw):
    vals, secs, fl = [], [], None
    for s in seeds:
        t0 = time.perf_counter()
        r = evaluate_ptq(net, w, a, ptq=ptq, seed=s, **kw)
        vals.append(r["quantized"]["metric"])
        secs.append(r["config"].get("ptq_seconds", 0.0))
        fl = r["float"]["metric"]
        print(f"  {net} {w.label()} {'A' + str(a.bits) if a else 'w-only'} {ptq} seed {s}: {vals[-1]:.4f} "
              f"(ptq {secs[-1]:.1f} s, wall {time.perf_counter() - t0:.1f} s)", flush=True)
    return {"network": net, "w": w.label(), "a": a.label() if a else None, "ptq": ptq, "float": fl,
            "mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals)),
            "values": vals, "ptq_seconds": float(np.mean(secs))}


def cnn(seeds):
    rows = []
    for net in ("mnist1d_cnn", "mnist_cnn"):
        for bits in (3, 2):
            w = QuantSpec(bits=bits, granularity="channel")
            for m in ("rtn", "bias_correction", "adaround", "adaround+bias_correction", "gptq"):
                rows.append(cell(net, w, A8, m, seeds))
    for bits in (4, 3):
        w = QuantSpec(bits=bits, granularity="tensor")
        for m in ("rtn", "bias_correction", "cle", "cle+bias_correction", "cle+adaround+bias_correction"):
            rows.append(cell("mnist_dwsep", w, A8, m, seeds))
    return rows


def minilm(pairs):
    rows = []
    for w in (QuantSpec(bits=3, granularity="group", group_size=128), QuantSpec(bits=4, granularity="channel")):
        for m in ("rtn", "gptq", "awq"):
            rows.append(cell("minilm", w, None, m, eval_size=pairs))
    w8 = QuantSpec(bits=8, granularity="tensor")
    for m in ("rtn", "smoothquant"):
        rows.append(cell("minilm", w8, A8, m, eval_size=pairs))
    return rows


def smollm2(windows):
    rows = []
    w3, w4 = QuantSpec(bits=3, granularity="group", group_size=128), QuantSpec(bits=4, granularity="channel")
    w8 = QuantSpec(bits=8, granularity="tensor")
    for w, a, m in ((w3, None, "rtn"), (w3, None, "gptq"), (w3, None, "awq"), (w8, A8, "rtn"), (w8, A8, "smoothquant"),
                    (w4, None, "rtn"), (w4, None, "gptq"), (w4, None, "awq")):
        rows.append(cell("smollm2", w, a, m, eval_size=windows))
        _save("smollm2", rows)
    return rows


def _save(part, rows):
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"ptq_{part}.json").write_text(json.dumps(rows, indent=1))


def plot(path="docs/images/ptq_methods.png"):
    """One figure from results/ptq/ptq_cnn.json (and the transformer parts if present): each method's metric
    relative to RTN's gap to float (0 = RTN, 1 = float), mean and min–max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for part in ("cnn", "minilm", "smollm2"):
        f = OUT / f"ptq_{part}.json"
        if f.exists():
            rows += json.loads(f.read_text())
    groups = {}
    for r in rows:
        groups.setdefault((r["network"], r["w"], r["a"]), []).append(r)
    fig, ax = plt.subplots(figsize=(14, 4.6))
    x, labels, colors = 0, [], {}
    palette = plt.get_cmap("tab10")
    for (net, w, a), rs in groups.items():
        base = next((r for r in rs if r["ptq"] == "rtn"), None)
        if base is None:
            continue
        gap = base["float"] - base["mean"]
        if not [r for r in rs if r["ptq"] != "rtn"]:
            continue
        for r in rs:
            if r["ptq"] == "rtn" or abs(gap) < 1e-12:
                continue
            c = colors.setdefault(r["ptq"], palette(len(colors) % 10))
            f = lambda v: (v - base["mean"]) / gap  # noqa: E731
            ax.bar(x, f(r["mean"]), color=c, label=r["ptq"] if r["ptq"] not in labels else None)
            if len(r["values"]) > 1:
                lo, hi = sorted((f(r["min"]), f(r["max"])))
                ax.errorbar(x, f(r["mean"]), yerr=[[max(f(r["mean"]) - lo, 0)], [max(hi - f(r["mean"]), 0)]],
                            color="k", capsize=2, lw=0.8)
            labels.append(r["ptq"])
            x += 1
        short = w.replace("int", "W").replace("-symmetric-", " ").replace("channel", "ch").replace("tensor", "t") \
            .replace("group", "g")
        ax.text(x - 0.5 * (len(rs) - 1) - 0.5, -0.04, f"{net}\n{short}{' A8' if a else ''}", ha="center", va="top",
                fontsize=6.5, rotation=30 if len(rs) < 3 else 0, transform=ax.get_xaxis_transform())
        x += 1
    ax.axhline(0, color="k", lw=0.8)
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    ax.set_xticks([])
    ax.set_ylim(-1.05, 1.1)
    ax.set_ylabel("fraction of RTN's gap to float closed")
    ax.set_title("PTQ methods vs round-to-nearest (same format; 1 = float, 0 = RTN, < 0 = worse than RTN)")
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    fig.subplots_adjust(bottom=0.22, right=0.83, left=0.06)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot", action="store_true", help="draw docs/images/ptq_methods.png from results/ptq/")
    ap.add_argument("--part", choices=("cnn", "minilm", "smollm2"), default="cnn")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=300, help="MiniLM: SICK-R pairs")
    ap.add_argument("--windows", type=int, default=2, help="SmolLM2: 256-token windows")
    args = ap.parse_args()
    if args.plot:
        return plot()
    rows = {"cnn": lambda: cnn(tuple(range(args.seeds))), "minilm": lambda: minilm(args.pairs),
            "smollm2": lambda: smollm2(args.windows)}[args.part]()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"ptq_{args.part}.json").write_text(json.dumps(rows, indent=1))
    for r in rows:
        spread = f" [{r['min']:.4f}–{r['max']:.4f}]" if len(r["values"]) > 1 else ""
        print(f"| {r['network']} | {r['w']} | {r['a'] or 'weight-only'} | {r['ptq']} | {r['float']:.4f} | "
              f"{r['mean']:.4f}{spread} | {r['ptq_seconds']:.1f} s |")


if __name__ == "__main__":
    main()
