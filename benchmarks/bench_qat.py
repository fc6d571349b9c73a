"""QAT benchmark: training time per network on one core, and the PTQ / QAT / QAT+KD accuracy table.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_qat.py --speed            # seconds per QAT run
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_qat.py --diagnose         # mnist1d W4A4, validation split
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_qat.py --table --jobs 2   # README table (3 seeds)
    python benchmarks/bench_qat.py --table --nets mnist1d_cnn --json a.json   # networks apart, then
    python benchmarks/bench_qat.py --rows a.json b.json                       # one table from the rows

Every number is measured: integer-kernel accuracy of the deployed model (`quantized.metric`),
mean over the seeds with the spread (min–max) beside it; the fake-quant agreement is checked.
Trained models are cached ($QSIM_CACHE_DIR/qat), so a rerun only evaluates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

NETS = ("mnist_cnn", "mnist1d_cnn", "mnist_mlp", "fashion_cnn")
CONFIGS = ("W4A4 ch", "W2A8 ch", "W2A8 tensor", "ternary A8", "binary A1", "binary A1, last W8")
TRAININGS = ("ptq", "qat", "qat_kd")


def specs(config: str, net_name: str):
    """(wspec, aspec, overrides) of a table column. Binary nets: 1-bit weights (XNOR-Net α per channel) and
    1-bit activations {0, s} after every ReLU; the network input stays 8-bit (as XNOR-Net keeps the image);
    "binary A1, last W8" also keeps the classifier's weights at 8 bits (its input stays 1-bit)."""
    from qsim.nets import get_network
    from qsim.quant import QuantSpec

    a8 = QuantSpec(bits=8, scheme="affine")
    if config == "W4A4 ch":
        return QuantSpec(bits=4, granularity="channel"), QuantSpec(bits=4, scheme="affine"), None
    if config == "W2A8 ch":
        return QuantSpec(bits=2, granularity="channel"), a8, None
    if config == "W2A8 tensor":
        return QuantSpec(bits=2, granularity="tensor"), a8, None
    if config == "ternary A8":
        return QuantSpec(scheme="ternary", granularity="channel"), a8, None
    if config.startswith("binary A1"):
        macs = get_network(net_name).arch.mac_ops
        overrides = {macs[0].name: {"a": a8}}
        if config.endswith("last W8"):   # XNOR-Net practice: the classifier keeps multi-bit weights
            overrides[macs[-1].name] = {"w": QuantSpec(bits=8, granularity="channel")}
        return QuantSpec(scheme="binary", granularity="channel"), QuantSpec(bits=1, scheme="affine"), overrides
    raise ValueError(config)


def run_one(job):
    from qsim.train.qat import evaluate_trained

    net, config, training, seed = job
    w, a, ovr = specs(config, net)
    t0 = time.perf_counter()
    res = evaluate_trained(net, w, a, training, seed=seed, overrides=ovr)
    q = res["quantized"]
    return {"network": net, "config": config, "training": training, "seed": seed, "fp32": res["float"]["metric"],
            "int": q["metric"], "fake": q["fake_quant_metric"], "agreement": q["agreement"],
            "agreement_fp32": q["fake_quant_fp32_agreement"],
            "train_seconds": (res.get("training") or {}).get("seconds"), "wall": time.perf_counter() - t0}


def table(rows: list[dict], seeds) -> str:
    import numpy as np

    out = ["| network (fp32) | config | PTQ | QAT | QAT+KD | KD − QAT |", "|---|---|---|---|---|---|"]
    for net in [n for n in NETS if any(r["network"] == n for r in rows)]:
        fp = next(r["fp32"] for r in rows if r["network"] == net)
        for c in CONFIGS:
            cells, means = [], {}
            for t in TRAININGS:
                v = np.array([r["int"] for r in rows if (r["network"], r["config"], r["training"]) == (net, c, t)])
                if not len(v):
                    cells.append("–")
                    continue
                means[t] = v.mean()
                cells.append(f"{100 * v.mean():.1f}" if t == "ptq" else
                             f"{100 * v.mean():.1f} ({100 * v.min():.1f}–{100 * v.max():.1f})")
            kd = f"{100 * (means['qat_kd'] - means['qat']):+.1f}" if {"qat", "qat_kd"} <= set(means) else "–"
            out.append(f"| {net} ({100 * fp:.1f}) | {c} | " + " | ".join(cells) + f" | {kd} |")
    return "\n".join(out)


def diagnose(seeds) -> str:
    """Where mnist1d W4A4 (per channel) QAT loses accuracy, measured on a VALIDATION split of the training data:
    an fp32 teacher trained by the registry recipe on the first 3,200 training samples, QAT on those, accuracy
    (fake-quant forward) on the last 800; the test split is never looked at."""
    import numpy as np

    from qsim.nets import registry
    from qsim.nets.data import load_dataset
    from qsim.nets.registry import Network, get_network
    from qsim.quant import QuantSpec
    from qsim.train.core import train
    from qsim.train.qat import QATConfig, forward_backward, train_qat

    base = get_network("mnist1d_cnn")
    ds = load_dataset(base.dataset)
    n_fit = 3200
    xf, yf, xv, yv = ds.x_train[:n_fit], ds.y_train[:n_fit], ds.x_train[n_fit:], ds.y_train[n_fit:]
    net = Network("mnist1d_cnn_val", base.dataset, base.arch, None,
                  params=train(base.arch, xf, yf, base.train_config))
    registry._NETWORKS[net.name] = net        # calibration (act_params) looks networks up by name

    def acc(params, quantizers):
        return float((forward_backward(net.arch, params, quantizers, xv, None)[2].argmax(1) == yv).mean())

    w4, a4 = QuantSpec(bits=4, granularity="channel"), QuantSpec(bits=4, scheme="affine")
    w8, a8 = QuantSpec(bits=8, granularity="channel"), QuantSpec(bits=8, scheme="affine")
    first = net.arch.mac_ops[0].name
    recipe = dict(base.qat_recipe)
    wd = recipe.pop("weight_decay")
    variants = [("W4A4, no weight decay", w4, a4, None, 0.0, seeds),
                ("W4A4, weight decay %g (recipe)" % wd, w4, a4, None, wd, seeds),
                ("W4A8, no weight decay", w4, a8, None, 0.0, seeds[:1]),
                ("W8A4, no weight decay", w8, a4, None, 0.0, seeds[:1]),
                ("W4A8 + 4-bit network input only, no weight decay", w4, a8, {first: {"a": a4}}, 0.0, seeds[:1]),
                ("W4A4 but 8-bit network input, no weight decay", w4, a4, {first: {"a": a8}}, 0.0, seeds[:1])]
    out = [f"fp32 teacher (first {n_fit} training samples): validation accuracy {100 * acc(net.params, {}):.2f} % "
           f"on the last {len(xv)}", "", "| variant | validation accuracy (%) per seed | mean | final training loss |",
           "|---|---|---|---|"]
    try:
        for label, w, a, ovr, decay, sds in variants:
            accs, losses = [], []
            for seed in sds:
                st = train_qat(net, w, a, QATConfig(seed=seed, weight_decay=decay, **recipe), x=xf, y=yf,
                               overrides=ovr)
                accs.append(acc(st.params, st.quantizers))
                losses.append(st.history[-1])
            out.append(f"| {label} | {', '.join(f'{100 * v:.2f}' for v in accs)} | {100 * np.mean(accs):.2f} | "
                       f"{np.mean(losses):.4f} |")
            print(out[-1], file=sys.stderr, flush=True)
    finally:
        registry._NETWORKS.pop(net.name, None)
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speed", action="store_true", help="time one QAT run (W4A4 per channel) per network")
    p.add_argument("--table", action="store_true", help="the PTQ / QAT / QAT+KD table over --seeds")
    p.add_argument("--diagnose", action="store_true",
                   help="mnist1d W4A4: which quantizer loses accuracy and what the weight decay does, on a "
                        "validation split of the training data")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--rows", nargs="+", default=None,
                   help="print the table from rows saved by --json (several files: e.g. networks run apart)")
    args = p.parse_args(argv)
    nets = args.nets.split(",")
    if args.speed:
        from qsim.quant import QuantSpec
        from qsim.train.qat import evaluate_trained

        for net in nets:
            res = evaluate_trained(net, QuantSpec(bits=4, granularity="channel"), QuantSpec(bits=4, scheme="affine"),
                                   "qat_kd", cache=False)
            cfg = res["config"]["training_config"]
            print(f"{net:12s} QAT+KD W4A4 {cfg['epochs']} epochs: {res['training']['seconds']:.1f} s on one core "
                  f"(target 120 s)", flush=True)
    if args.diagnose:
        print(diagnose([int(s) for s in args.seeds.split(",")]))
    if args.rows:
        rows = [r for path in args.rows for r in json.load(open(path))]
        print(report(rows))
    elif args.table:
        seeds = [int(s) for s in args.seeds.split(",")]
        # seed-major order: a run cut short still has whole seeds
        jobs = [(n, c, t, s) for s in seeds for n in nets for c in CONFIGS for t in TRAININGS
                if t != "ptq" or s == seeds[0]]
        rows = []
        with ProcessPoolExecutor(args.jobs) as ex:
            futures = [ex.submit(run_one, job) for job in jobs]
            for fut in as_completed(futures):
                rows.append(fut.result())
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        print(report(rows))
    return 0


def report(rows: list[dict]) -> str:
    """The table and the lowest agreements (every trained model and PTQ point of `rows`)."""
    worst = min(rows, key=lambda r: r["agreement"])
    worst32 = min(rows, key=lambda r: r.get("agreement_fp32", 1.0))
    return (table(rows, None) +
            f"\n\nlowest fake-quant vs integer-kernel top-1 agreement: {100 * worst['agreement']:.2f} % "
            f"({len(rows)} models)\n"
            f"lowest float32 training-forward vs integer-kernel top-1 agreement: "
            f"{100 * worst32.get('agreement_fp32', 1.0):.2f} % ({worst32['network']} {worst32['config']} "
            f"{worst32['training']} seed {worst32['seed']})")


if __name__ == "__main__":
    sys.exit(main())
