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
    for w in (QuantSpec(bits=3, granularity="group", group_size=128), QuantSpec(bits=4, granularity="channel")):
        for m in ("rtn", "gptq", "awq"):
            rows.append(cell("smollm2", w, None, m, eval_size=windows))
    w8 = QuantSpec(bits=8, granularity="tensor")
    for m in ("rtn", "smoothquant"):
        rows.append(cell("smollm2", w8, A8, m, eval_size=windows))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("cnn", "minilm", "smollm2"), default="cnn")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=300, help="MiniLM: SICK-R pairs")
    ap.add_argument("--windows", type=int, default=2, help="SmolLM2: 256-token windows")
    args = ap.parse_args()
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
