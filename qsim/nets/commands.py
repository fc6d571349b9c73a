"""`qsim nets list | eval | train`: the networks from the command line."""

from __future__ import annotations

import json
import math

from qsim.nets.data import MissingDependency


def json_safe(obj):
    """JSON-safe copy: ±inf/NaN (e.g. the SQNR of an exact layer) become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj




def _specs(args):
    from qsim.quant import QuantSpec

    if args.float_only:
        return None, None
    wspec = QuantSpec(bits=args.wbits, scheme=args.scheme, granularity=args.granularity, group_size=args.group_size)
    aspec = QuantSpec(bits=args.abits, scheme=args.ascheme, calibration=args.calibration)
    return wspec, aspec


def cmd_list(args) -> int:
    from qsim.nets import get_network, list_networks

    rows = []
    for name in list_networks():
        net = get_network(name)
        meta = net.weights_meta() if net.weights_path.exists() else {}
        rows.append({"network": name, "dataset": net.dataset, "metric": net.metric,
                     "macs": net.workload.total_macs, "weights": net.workload.total_weights,
                     "fp32_metric": meta.get("test_accuracy"), "description": net.description})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'network':12s} {'data':8s} {'MACs':>9s} {'weights':>8s} {'fp32':>7s}  description")
    for r in rows:
        acc = f"{100 * r['fp32_metric']:6.2f}%" if r["fp32_metric"] is not None else "   n/a "
        print(f"{r['network']:12s} {r['dataset']:8s} {r['macs']:9d} {r['weights']:8d} {acc}  {r['description']}")
    return 0


def _fmt_db(v) -> str:
    if v is None:
        return "     n/a"
    return "     inf" if v == float("inf") else f"{v:8.2f}"


def with_provenance(res: dict) -> dict:
    """The result with `numerics` per config and per layer; overflow counts null where not tracked
    (layers that ran in float count no overflows, so 0 would be a claim, not a measurement)."""
    from qsim.nets.quant_exec import summarize_numerics

    q = res.get("quantized")
    if not q:
        return res
    layers = [dict(p) for p in q.get("per_layer", [])]
    for p in layers:
        if p.get("numerics", "integer").startswith("float"):
            p["overflows"] = None
    numerics, overflows = summarize_numerics(q.get("per_layer", []), q.get("overflows"))
    return {**res, "quantized": {**q, "numerics": numerics,
                                 "overflows": None if overflows != overflows else int(overflows),
                                 "per_layer": layers}}


def cmd_eval(args) -> int:
    from qsim.nets import evaluate

    wspec, aspec = _specs(args)
    from qsim.ptq.commands import evaluator

    evaluate = evaluator(args, evaluate)   # --ptq / --act-mode (qsim.ptq)
    from qsim.train.commands import evaluator as training_evaluator

    evaluate = training_evaluator(args, evaluate)   # --training (qsim.train)
    try:
        res = evaluate(args.network, wspec, aspec, calib_size=args.calib_size, policy=args.policy,
                       acc_bits=args.acc_bits, overflow=args.overflow, eval_size=args.eval_size,
                       sparsity=args.sparsity, sparsity_pattern=args.sparsity_pattern,
                       fine_tune_epochs=args.fine_tune_epochs, compress=args.compress)
    except MissingDependency as exc:
        raise ValueError(str(exc)) from None
    if args.format == "json":
        print(json.dumps(json_safe(with_provenance(res)), indent=2))
        return 0
    cfg = res["config"]
    samples = cfg.get("eval_size", cfg.get("pairs", "?"))
    print(f"network {res['network']} ({cfg.get('dataset', '?')}, {samples} test samples), metric {res['metric']}")
    print(f"  float      {_metric_text(res['metric'], res['float']['metric'])}")
    q = res["quantized"]
    if q is None:
        return 0
    print(f"  quantized  {_metric_text(res['metric'], q['metric'])}   output SQNR {_fmt_db(q.get('sqnr_db'))} dB   "
          f"overflows {q.get('overflows')}")
    if "fake_quant_metric" in q:
        trained = f", trained {res['training']['seconds']} s{' (cached)' if res['training']['cached'] else ''}" \
            if res.get("training") else ""
        print(f"  training {cfg['training']}{trained}: fake-quant {100 * q['fake_quant_metric']:6.2f} %, "
              f"top-1 agreement with the integer kernels {100 * q['agreement']:6.2f} %")
    if "compression_ratio" in q:
        print(f"  pruned     sparsity {100 * q['sparsity']:.1f} % ({q['pruning']['pattern']}), weights "
              f"{q['weight_bytes']:.0f} bytes, compression {q['compression_ratio']:.1f}x vs fp32")
        if q["pruning"].get("compress") == "deep":
            print(f"  Deep Compression: {2 ** q['pruning']['index_bits']} shared weights per layer (the W bits below "
                  f"are the index width), run as int{q['pruning']['codebook_bits']} levels; Huffman-coded CSR")
    a_text = f"A {aspec.label()} ({aspec.calibration}, " if aspec is not None else "A float (weight-only, "
    print(f"  W {wspec.label()}  {a_text}{cfg.get('calib_size')} calibration samples)  "
          f"requant {cfg.get('policy')}  accumulator {cfg.get('acc_bits')}-bit {cfg.get('overflow', '')}")
    for p in with_provenance(res)["quantized"].get("per_layer", []):
        ovf = "n/a (float)" if p["overflows"] is None else p["overflows"]
        why = f"  [{p['numerics']}]" if p.get("numerics", "").startswith("float") else ""
        print(f"    {p['layer']:10s} {p.get('path', ''):12s} SQNR {_fmt_db(p['sqnr_db'])} dB  overflows {ovf}{why}")
    return 0


def _metric_text(metric: str, value) -> str:
    """Accuracy as a percentage; correlations and perplexity as the numbers they are."""
    if value is None:
        return "n/a"
    if metric == "accuracy":
        return f"{100 * value:6.2f} %"
    return f"{value:.4f} ({metric})" if metric != "perplexity" else f"{value:.2f} (perplexity, lower is better)"


def cmd_train(args) -> int:
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from qsim.nets import get_network
    from qsim.train.core import train_network

    net = get_network(args.network)
    try:
        meta = train_network(net, args.out, log=None if args.quiet else print)
    except MissingDependency as exc:
        raise ValueError(str(exc)) from None
    print(f"{net.name}: test accuracy {100 * meta['test_accuracy']:.2f} % after {meta['train_seconds']} s; "
          f"weights written to {args.out or net.weights_path}")
    return 0


def register(sub) -> None:
    from qsim.quant.spec import CALIBRATIONS, GRANULARITIES, SCHEMES

    p = sub.add_parser("nets", help="real networks on real data: list, evaluate float vs quantized, train")
    nets = p.add_subparsers(dest="nets_command", metavar="ACTION")
    p.set_defaults(func=lambda args: p.print_help() or 0)

    pl = nets.add_parser("list", help="the runnable networks with their fp32 accuracy")
    pl.add_argument("--format", choices=("text", "json"), default="text")
    pl.set_defaults(func=cmd_list)

    pe = nets.add_parser("eval", help="task metric, output SQNR and overflows of the float and quantized network")
    pe.add_argument("network", help="network name (see `qsim nets list`)")
    pe.add_argument("--wbits", type=int, default=8, help="weight bits (default 8)")
    pe.add_argument("--abits", type=int, default=8, help="activation bits (default 8)")
    pe.add_argument("--scheme", choices=SCHEMES, default="symmetric", help="weight scheme (default symmetric)")
    pe.add_argument("--ascheme", choices=("affine", "symmetric"), default="affine",
                    help="activation scheme (default affine)")
    pe.add_argument("--granularity", choices=GRANULARITIES, default="channel",
                    help="weight scale granularity (default channel)")
    pe.add_argument("--group-size", type=int, default=None, help="group length along K for --granularity group")
    pe.add_argument("--calibration", choices=CALIBRATIONS, default="minmax",
                    help="activation range calibration (default minmax)")
    pe.add_argument("--calib-size", type=int, default=256, help="calibration samples from the train split (256)")
    pe.add_argument("--policy", default="fp32_rne",
                    help="requantization policy: fp32_rne (default), gemmlowp, tflite_optimized, float64_half_away, "
                         "exact (qsim.kernels.POLICIES)")
    pe.add_argument("--acc-bits", type=int, default=32, help="accumulator width, 8..32 or 64 (default 32)")
    pe.add_argument("--overflow", choices=("wrap", "saturate"), default="wrap", help="accumulator overflow (wrap)")
    pe.add_argument("--eval-size", type=int, default=None, help="evaluate the first N test samples (default all)")
    pe.add_argument("--float-only", action="store_true", help="only the float network")
    from qsim.train.commands import add_arguments as add_training_arguments

    add_training_arguments(pe)   # --training ptq|qat|qat_kd, --epochs, --lr, --seed, --kd-* (qsim.train)
    from qsim.ptq.commands import add_arguments as add_ptq_arguments

    add_ptq_arguments(pe)
    pe.add_argument("--sparsity", type=float, default=None,
                    help="prune this fraction of the weights, in [0, 1) (qsim.prune); adds quantized.sparsity, "
                         "weight_bytes and compression_ratio")
    pe.add_argument("--sparsity-pattern", default=None,
                    help="unstructured (default), global, random, channel, 2:4 or 4:8 (along the reduction dim)")
    pe.add_argument("--fine-tune-epochs", type=int, default=0, help="masked fine-tuning epochs after pruning (0)")
    pe.add_argument("--compress", choices=("deep",), default=None,
                    help="deep: Deep Compression (prune, 2^wbits shared weights per layer, Huffman)")
    pe.add_argument("--format", choices=("text", "json"), default="text")
    pe.set_defaults(func=cmd_eval)

    pt = nets.add_parser("train", help="train a network (deterministic, seeded, one BLAS thread)")
    pt.add_argument("network", help="network name (see `qsim nets list`)")
    pt.add_argument("--out", default=None, help="weights file (default: the package's qsim/data/weights/NAME.npz)")
    pt.add_argument("--quiet", action="store_true", help="no per-epoch log")
    pt.set_defaults(func=cmd_train)
