"""Run a study: accuracy once per quant config, cost per (config, profile), tidy table out.

Numerics and cost are independent, so each configuration's accuracy is computed once
(through the bit-accurate kernels) and joined with the cost of that configuration on
every profile. Every finished accuracy evaluation and every cost batch is cached on disk
as soon as it exists; a killed run restarted later recomputes only what is missing.
"""

from __future__ import annotations

import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

import qsim
from qsim.study.cache import ResultCache, network_fingerprint, source_hash
from qsim.study.pareto import pareto_table
from qsim.quant.spec import BLOCK_FORMATS
from qsim.study.spec import FLOAT_FORMATS, DesignConfig, StudySpec, parse_study, stable_hash

@dataclass
class StudyResult:
    table: pd.DataFrame
    pareto: pd.DataFrame
    out_dir: Path
    manifest: dict


# -- accuracy -------------------------------------------------------------------
def evaluate_config(network: str, config: dict, calibration_size: int, eval_size: int | None,
                    overrides: dict | None = None) -> dict:
    """One accuracy evaluation (runs in a worker process or on a Dask worker); `overrides` pins layers
    (the spec's `overrides:`, see `qsim.search.assign.executor_overrides`)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from qsim.nets import evaluate

    cfg = DesignConfig(**config)
    if cfg.is_baseline:
        return evaluate_baseline(network, cfg.wfloat, eval_size)
    if cfg.training != "ptq":   # QAT / QAT+KD (qsim.train): trained models cached like accuracies
        from qsim.train.qat import evaluate_trained

        kw = {k: getattr(cfg, k) for k in ("epochs", "lr", "seed") if getattr(cfg, k) is not None}
        res = evaluate_trained(network, cfg.weight_spec(), cfg.act_spec(), cfg.training, calib_size=calibration_size,
                               policy=cfg.policy, acc_bits=cfg.acc_bits, eval_size=eval_size, **kw)
    else:
        per_layer, acc_bits = None, cfg.acc_bits
        if overrides:   # a pinned float layer runs as W16/A16 codes: the whole network on a 64-bit accumulator
            from qsim.search.assign import executor_overrides

            per_layer, wide = executor_overrides(network, overrides, weight_only=cfg.act_spec() is None)
            acc_bits = 64 if wide else acc_bits
        if (cfg.ptq, cfg.act_mode) != ("rtn", "static"):   # qsim.ptq methods / dynamic activation ranges
            from functools import partial

            from qsim.ptq import evaluate_ptq

            evaluate = partial(evaluate_ptq, ptq=cfg.ptq, act_mode=cfg.act_mode)
        pruning = {} if not cfg.sparsity else dict(sparsity=cfg.sparsity, sparsity_pattern=cfg.sparsity_pattern,
                                                   fine_tune_epochs=cfg.fine_tune_epochs)
        res = evaluate(
            network, wspec=cfg.weight_spec(), aspec=cfg.act_spec(), calib_size=calibration_size, policy=cfg.policy,
            acc_bits=acc_bits, eval_size=eval_size, overrides=per_layer, **pruning,
        )
    q = res["quantized"]
    from qsim.nets.quant_exec import summarize_numerics

    numerics, overflows = summarize_numerics(q.get("per_layer", []), q.get("overflows"))
    return {
        "network": network, "metric_name": res.get("metric", "accuracy"), "float_accuracy": res["float"]["metric"],
        "accuracy": q["metric"], "sqnr_db": q.get("sqnr_db"), "overflows": overflows, "numerics": numerics,
        "per_layer": q.get("per_layer", []), "worker": worker_id(),
    }


def evaluate_baseline(network: str, fmt: str, eval_size: int | None) -> dict:
    """The unquantized network as a reference point: fp32 as trained, or fp16/bf16 weights and inputs
    (rounded to nearest even from fp32) with fp32 arithmetic."""
    from qsim.nets import evaluate, get_network

    res = evaluate(network, eval_size=eval_size)
    f_metric = res["float"]["metric"]
    base = {"network": network, "metric_name": res.get("metric", "accuracy"), "float_accuracy": f_metric,
            "overflows": float("nan"), "per_layer": [], "worker": worker_id()}
    if fmt == "fp32":
        return {**base, "accuracy": f_metric, "sqnr_db": float("inf"), "numerics": "float: fp32 baseline"}
    from qsim.nets import float_exec
    from qsim.nets.data import load_dataset
    from qsim.nets.metrics import accuracy, sqnr_db
    from qsim.nets.quant_exec import float_reference, one_blas_thread

    net = get_network(network)
    ref = float_reference(net.name)
    n = len(ref.labels) if eval_size is None else min(int(eval_size), len(ref.labels))
    params = {k: round_float(v, fmt) for k, v in net.weights().items()}
    with one_blas_thread():
        logits = float_exec.forward(net.arch, params, round_float(load_dataset(net.dataset).x_test[:n], fmt))
    return {**base, "accuracy": accuracy(logits, ref.labels[:n]), "sqnr_db": sqnr_db(ref.logits[:n], logits),
            "numerics": f"float: {fmt} weights and input, fp32 arithmetic"}


def round_float(x, fmt: str):
    """fp32 array rounded to fp16 or bf16 (nearest even), returned as fp32."""
    import numpy as np

    x = np.asarray(x, np.float32)
    if fmt == "fp16":
        return x.astype(np.float16).astype(np.float32)
    if fmt == "bf16":
        u = x.view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
        return u.astype(np.uint32).view(np.float32)
    return x


def worker_id() -> str:
    """host:pid of the process that computed a record (shows that --jobs/--dask really used workers)."""
    return f"{platform.node()}:{os.getpid()}"


def accuracy_key(net: str, cfg: DesignConfig, spec: StudySpec) -> str:
    """Cache key of one accuracy evaluation: config, sizes, qsim source, the network's weights and data."""
    return stable_hash({"network": net, "config": cfg.as_dict(), "calibration_size": spec.calibration_size,
                        "eval_size": spec.eval_size, "qsim": qsim.__version__, "source": source_hash(),
                        "inputs": network_fingerprint(net),
                        **({"overrides": spec.overrides} if spec.overrides and not cfg.is_baseline else {})})


def _accuracy_tasks(spec: StudySpec, configs: list[DesignConfig]):
    for net in spec.networks:
        for cfg in configs:
            yield accuracy_key(net, cfg, spec), net, cfg


def run_accuracy(spec, configs, cache: ResultCache, jobs: int = 1, dask: str | None = None, progress: bool = True):
    """Accuracy records keyed by (network, config key); computes only what the cache lacks."""
    done, todo = {}, []
    for key, net, cfg in _accuracy_tasks(spec, configs):
        rec = cache.get_json("accuracy", key)
        if rec is None:
            todo.append((key, net, cfg))
        else:
            done[(net, cfg.key)] = rec
    bar = tqdm(total=len(todo), desc=f"{spec.name}: accuracy", unit="config", disable=not progress or not todo)

    def finish(key, net, cfg, rec):
        cache.put_json("accuracy", key, rec)  # persisted the moment it exists
        done[(net, cfg.key)] = rec
        bar.update()

    args = lambda net, cfg: (net, cfg.as_dict(), spec.calibration_size, spec.eval_size,  # noqa: E731
                             None if cfg.is_baseline else (spec.overrides or None))
    if dask:
        client, cluster = _dask_client(dask)
        try:
            futures = {client.submit(evaluate_config, *args(net, cfg), pure=False): (key, net, cfg) for key, net, cfg in todo}
            from dask.distributed import as_completed as dask_completed

            for fut in dask_completed(futures):
                finish(*futures[fut], fut.result())
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(evaluate_config, *args(net, cfg)): (key, net, cfg) for key, net, cfg in todo}
            for fut in as_completed(futures):
                finish(*futures[fut], fut.result())
    else:
        for key, net, cfg in todo:
            finish(key, net, cfg, evaluate_config(*args(net, cfg)))
    bar.close()
    return done, len(todo)


def _dask_client(address: str):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ValueError('--dask needs the dask extra: pip install -e ".[dask]"') from None
    if address == "local":
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    return Client(address), None


# -- cost -----------------------------------------------------------------------
def cost_quant(cfg: DesignConfig):
    """The cost model's view of a config: operand widths, formats and scale metadata."""
    from dataclasses import replace

    from qsim.hw import CostQuant

    if cfg.is_baseline:  # unquantized: float weights and activations, no scales
        bits = FLOAT_FORMATS[cfg.wfloat]
        return CostQuant(w_bits=bits, a_bits=bits, w_format=cfg.wfloat, a_format=cfg.wfloat, granularity="tensor",
                         scale_bits=0, acc_bits=32)
    q = CostQuant.from_specs(cfg.weight_spec(), cfg.act_spec(), acc_bits=cfg.acc_bits)
    if cfg.abits is None:  # weight-only: float activations (fp16 unless the grid says otherwise)
        fmt = cfg.afloat or "fp16"
        q = replace(q, a_bits=FLOAT_FORMATS[fmt], a_format=fmt)
    if cfg.sparsity:  # pruned weights: what they buy depends on the profile (qsim.hw.sparsity)
        q = replace(q, sparsity=cfg.sparsity, sparsity_pattern=cfg.sparsity_pattern)
    if cfg.act_mode != "static" and cfg.abits is not None:  # run-time ranges: one more pass over each input
        q = replace(q, act_mode=cfg.act_mode)
    return q


def workload_of(target: str, is_network: bool):
    if is_network:
        from qsim.nets import get_network

        return get_network(target).workload
    from qsim.workload.zoo import get_workload

    return get_workload(target)


def profile_key(profile_name: str) -> str:
    """Hash of the profile's content, so an edited profile invalidates its cached costs."""
    from qsim.hw import load_profile

    prof = load_profile(profile_name)
    dump = prof.model_dump() if hasattr(prof, "model_dump") else repr(prof)
    return stable_hash(dump)


def run_cost(spec: StudySpec, configs: list[DesignConfig], cache: ResultCache,
             progress: bool = True) -> tuple[pd.DataFrame, int]:
    """Cost rows of every (config, target, profile) and how many (target, profile) batches were computed.

    Float baselines a profile cannot run (`spec.baseline_skips`) are left out on that profile only."""
    from qsim.hw import cost_batch, load_profile

    frames, is_net = [], bool(spec.networks)
    jobs = [(t, p) for t in spec.targets for p in spec.profiles]
    computed = 0
    for target, prof_name in tqdm(jobs, desc=f"{spec.name}: cost", unit="profile", disable=not progress):
        skip = spec.baseline_skips.get(prof_name, {})
        # Cost ignores calibration and requantization policy: evaluate each distinct cost view once.
        views: dict = {}
        for cfg in configs:
            if cfg.key not in skip:
                views.setdefault(cost_quant(cfg), []).append(cfg)
        quants = list(views)
        if spec.overrides and is_net:   # pinned layers at their own choice, the rest at the config's
            from qsim.search.assign import pinned_cost_dict

            quants_in = [q if all(c.is_baseline for c in views[q]) else pinned_cost_dict(target, spec.overrides, q)
                         for q in quants]
        else:
            quants_in = quants
        key = stable_hash({"target": target, "profile": profile_key(prof_name),
                           "views": stable_hash([repr(q) for q in quants_in]), "qsim": qsim.__version__,
                           "source": source_hash()})
        frame = cache.get_frame("cost", key)
        if frame is None:
            computed += 1
            workload = workload_of(target, is_net)
            frame = cost_batch(workload, quants_in, load_profile(prof_name)).reset_index(drop=True)
            frame = frame.drop(columns=["config", "profile"], errors="ignore").rename(columns={"label": "cost_label"})
            frame.insert(0, "view", range(len(quants)))
            cache.put_frame("cost", key, frame)
        frame = frame.copy()
        # Custom profiles appear under their `name:`; `profile_source` keeps what the spec gave (name or file).
        frame["target"], frame["profile"], frame["profile_source"] = target, load_profile(prof_name).name, prof_name
        # Fan the distinct cost views back out to every config sharing them.
        fan = pd.DataFrame([{"view": i, "config_key": c.key} for i, q in enumerate(quants) for c in views[q]])
        frames.append(frame.merge(fan, on="view").drop(columns="view"))
    return pd.concat(frames, ignore_index=True), computed


# -- the whole study ------------------------------------------------------------------
def run_study(spec, out_dir: str | Path | None = None, *, jobs: int = 1, dask: str | None = None,
              progress: bool = True, plots: bool = True, fresh: bool = False) -> StudyResult:
    """Run (or resume) a study; `spec` is a YAML path or a dict. Writes results/<name>/.

    `fresh`: recompute every design point (the cache is rewritten, never read)."""
    t_start = time.perf_counter()
    spec = spec if isinstance(spec, StudySpec) else parse_study(spec)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    out = Path(out_dir) if out_dir is not None else Path("results") / spec.name
    out.mkdir(parents=True, exist_ok=True)
    cache = ResultCache(out / "cache", read=not fresh)
    configs = spec.configs()

    t0 = time.perf_counter()
    acc, n_acc_computed = run_accuracy(spec, configs, cache, jobs, dask, progress) if spec.networks else ({}, 0)
    t_acc = time.perf_counter() - t0
    t0 = time.perf_counter()
    cost, n_cost_computed = run_cost(spec, configs, cache, progress)
    t_cost = time.perf_counter() - t0

    cfg_frame = pd.DataFrame([{**c.as_dict(), "config_key": c.key, "label": config_label(c)} for c in configs])
    table = cost.merge(cfg_frame, on="config_key")
    if spec.overrides and spec.networks:   # the pinned layers and their hash, per network (not on baselines)
        from qsim.search.assign import pinned

        pins = {n: pinned(n, spec.overrides) for n in spec.networks}
        quantized = table["wfloat"].isna()
        table["overrides"] = table["target"].map({n: json.dumps(a.compact(), sort_keys=True) for n, a in pins.items()})
        table["overrides_hash"] = table["target"].map({n: a.hash for n, a in pins.items()})
        table.loc[~quantized, ["overrides", "overrides_hash"]] = None
    if spec.networks:
        acc_rows = [{"target": net, "config_key": k, **{c: rec[c] for c in
                     ("accuracy", "float_accuracy", "sqnr_db", "overflows", "numerics", "metric_name")}}
                    for (net, k), rec in acc.items()]
        table = table.merge(pd.DataFrame(acc_rows), on=["target", "config_key"], how="left")
    lead = [c for c in ("target", "profile", "label", *cfg_frame.columns.drop(["config_key", "label"]),
                        "accuracy", "float_accuracy", "sqnr_db", "numerics", "overflows") if c in table.columns]
    table = table[lead + [c for c in table.columns if c not in lead]]
    table = table.sort_values(["target", "profile", "wbits", "label"], kind="stable").reset_index(drop=True)
    # Fronts are of quantized designs; float baselines are reference points beside them.
    front = pareto_table(table[table["wfloat"].isna()], spec.objectives, group="profile", within="target")

    table.to_parquet(out / "results.parquet", index=False)
    table.to_csv(out / "results.csv", index=False)
    front.to_csv(out / "pareto.csv", index=False)
    manifest = {
        "study": spec.name, "spec": spec.raw, "spec_hash": spec.hash, "qsim_version": qsim.__version__,
        "source_hash": source_hash(), "host": host_info(),
        "python": platform.python_version(), "packages": _versions(), "design_points": len(table),
        "configs": len(configs), "accuracy_evaluations": len(spec.networks) * len(configs),
        "accuracy_evaluations_computed": n_acc_computed,
        "cost_batches": len(spec.targets) * len(spec.profiles), "cost_batches_computed": n_cost_computed,
        "inputs": {net: network_fingerprint(net) for net in spec.networks},
        "profiles": {p: profile_key(p) for p in spec.profiles},
        "timings_s": {"accuracy": round(t_acc, 3), "cost": round(t_cost, 3)},
        "notes": [f"{cfg} not shown on {prof}: {why}" for prof, skips in spec.baseline_skips.items()
                  for cfg, why in skips.values()],
    }
    manifest["table_hash"] = stable_hash(pd.util.hash_pandas_object(table, index=False).tolist())
    previous = _read_manifest(out)
    if plots and _plots_current(out, previous, manifest["table_hash"]):
        manifest["plots"] = previous["plots"]  # same table, plots on disk: nothing to redraw
        manifest["timings_s"]["plots"] = 0.0
    elif plots:
        from qsim.study.plots import draw_all

        t0 = time.perf_counter()
        manifest["plots"] = [str(p.relative_to(out)) for p in draw_all(out, table, front, spec, progress=progress)]
        manifest["timings_s"]["plots"] = round(time.perf_counter() - t0, 3)
    manifest["timings_s"]["total"] = round(time.perf_counter() - t_start, 3)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return StudyResult(table=table, pareto=front, out_dir=out, manifest=manifest)


def _read_manifest(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _plots_current(out: Path, previous: dict, table_hash: str) -> bool:
    files = previous.get("plots") or []
    return previous.get("table_hash") == table_hash and bool(files) and all((out / f).exists() for f in files)


def config_label(cfg: DesignConfig) -> str:
    if cfg.is_baseline:
        return f"{cfg.wfloat} (float baseline)"
    if cfg.scheme in BLOCK_FORMATS:
        w = cfg.scheme
    else:
        g = f"g{cfg.group_size}" if cfg.granularity == "group" else cfg.granularity
        w = f"W{cfg.wbits}-{cfg.scheme}-{g}"
    t = "" if cfg.training == "ptq" else f" {cfg.training}" + (f" s{cfg.seed}" if cfg.seed is not None else "")
    if cfg.sparsity:
        t += f" {cfg.sparsity_pattern}" if ":" in cfg.sparsity_pattern else f" {cfg.sparsity_pattern}{cfg.sparsity:.0%}"
        t += f" ft{cfg.fine_tune_epochs}" if cfg.fine_tune_epochs else ""
    if cfg.abits is not None:
        return f"{w}/A{cfg.abits}{t}"
    return (f"{w}/Afloat" if (cfg.afloat or "fp16") == "fp16" else f"{w}/A{cfg.afloat}") + t


def host_info() -> dict:
    """Where the numbers were computed: CPU model, core count, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
            "node": platform.node()}


def _versions() -> dict:
    out = {}
    for pkg in ("numpy", "numba", "pandas", "matplotlib", "onnx", "onnxruntime", "pydantic", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
