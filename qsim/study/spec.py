"""Study specs: parse a YAML file or dict, validate everything up front, expand the grid.

A study is the network (or a cost-only workload), the calibration set size, a grid
of quantization choices, the hardware profiles and the Pareto objectives. Every
problem in a spec is collected and reported at once, naming its key, before any
work starts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qsim.quant.spec import BLOCK_FORMATS, CALIBRATIONS, GRANULARITIES, SCHEMES, QuantSpec

POLICIES = ("fp32_rne", "gemmlowp", "tflite_optimized", "float64_half_away", "exact")
ACT_SCHEMES = ("affine", "symmetric", "binary")
OBJECTIVE_COLUMNS = ("accuracy", "energy_j", "latency_s", "memory_bytes", "cycles", "sqnr_db")
TOP_KEYS = {
    "name", "description", "network", "networks", "workload", "calibration_size", "eval_size", "grid",
    "profiles", "objectives", "breakdown", "tie_bits", "overrides", "require_sparsity",
}
# grid key: default values
GRID_DEFAULTS: dict[str, list] = {
    "wbits": [8],
    "abits": [8],
    "scheme": ["symmetric"],
    "act_scheme": ["affine"],
    "granularity": ["channel"],
    "group_size": [32],
    "calibration": ["minmax"],
    "policy": ["fp32_rne"],
    "acc_bits": [32],
    "scale_dtype": ["fp32"],
    # training (qsim.train): ptq, or QAT / QAT+KD fine-tuned with these epochs (null: the trainer's default),
    # learning rate and seed; PTQ configs ignore the last three
    "training": ["ptq"],
    "epochs": [None],
    "lr": [None],
    "seed": [None],
    # post-training quantization method(s) (qsim.ptq: rtn, gptq, awq+gptq, cle+bias_correction, …) and
    # activation ranges (static | dynamic_tensor | dynamic_token)
    "ptq": ["rtn"],
    "act_mode": ["static"],
    # pruning (qsim.prune): fraction of zero weights, how they are spread, fine-tuning epochs after pruning;
    # an N:M pattern fixes its own sparsity (2:4 = 0.5) whenever the sparsity is not 0
    "sparsity": [0.0],
    "sparsity_pattern": ["unstructured"],
    "fine_tune_epochs": [0],
}
SPARSITY_PATTERNS = ("unstructured", "random", "channel", "2:4", "4:8")
TRAININGS = ("ptq", "qat", "qat_kd")


# Float reference formats: `wbits: fp32` is the unquantized network (a float baseline),
# `abits: fp16` (or `float`, the same) keeps activations float in that format (weight-only).
FLOAT_FORMATS = {"fp32": 32, "fp16": 16, "bf16": 16}
BASELINE_FIELDS = dict(scheme="float", act_scheme="float", granularity="tensor", group_size=None,
                       calibration="none", policy="none", acc_bits=32, scale_dtype="none")


class StudySpecError(ValueError):
    """All problems of a study spec, one per line, each naming its key."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the study spec:\n{lines}")


@dataclass(frozen=True)
class DesignConfig:
    """One quantization configuration of the grid (hardware-independent)."""

    wbits: int
    abits: int | None  # None: activations stay float (weight-only), in format `afloat`
    scheme: str
    act_scheme: str
    granularity: str
    group_size: int | None
    calibration: str
    policy: str
    acc_bits: int
    scale_dtype: str
    wfloat: str | None = None  # float baseline: unquantized weights and activations in this format
    afloat: str | None = None  # format of float activations (weight-only configs and baselines)
    training: str = "ptq"      # ptq, qat or qat_kd (qsim.train)
    epochs: int | None = None  # QAT epochs (None: the trainer's default), learning rate, seed
    lr: float | None = None
    seed: int | None = None
    ptq: str = "rtn"           # qsim.ptq method(s), '+'-combined
    act_mode: str = "static"   # static | dynamic_tensor | dynamic_token
    sparsity: float = 0.0      # qsim.prune: fraction of zero weights, their pattern, fine-tuning epochs
    sparsity_pattern: str = "unstructured"
    fine_tune_epochs: int = 0

    @property
    def is_baseline(self) -> bool:
        return self.wfloat is not None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def key(self) -> str:
        return stable_hash(self.as_dict())

    def weight_spec(self) -> QuantSpec:
        if self.is_baseline:
            raise ValueError(f"float baseline {self.wfloat} has no weight QuantSpec")
        if self.scheme in BLOCK_FORMATS:
            return QuantSpec(scheme=self.scheme)
        return QuantSpec(
            bits=self.wbits, scheme=self.scheme, granularity=self.granularity,
            group_size=self.group_size if self.granularity == "group" else None, scale_dtype=self.scale_dtype,
        )

    def act_spec(self) -> QuantSpec | None:
        if self.abits is None or self.is_baseline:
            return None
        return QuantSpec(bits=self.abits, scheme=self.act_scheme, granularity="tensor", calibration=self.calibration)


@dataclass(frozen=True)
class StudySpec:
    name: str
    networks: tuple[str, ...]
    workloads: tuple[str, ...]
    calibration_size: int
    eval_size: int | None
    grid: dict[str, list]
    profiles: tuple[str, ...]
    objectives: dict[str, str]
    tie_bits: bool = False
    description: str = ""
    raw: dict = field(default_factory=dict, compare=False)
    # {profile: {config key: (label, reason)}}: float baselines a profile cannot run (a note, not an error)
    baseline_skips: dict = field(default_factory=dict, compare=False)
    # {layer name or glob: choice} pinned on every quantized config (qsim.search.assign), {} = none
    overrides: dict = field(default_factory=dict, compare=False)

    @property
    def hash(self) -> str:
        return stable_hash(self.raw)

    @property
    def targets(self) -> tuple[str, ...]:
        """Networks (accuracy + cost) or, for cost-only studies, workloads."""
        return self.networks or self.workloads

    def configs(self) -> list[DesignConfig]:
        """Expand the grid into unique configurations (group size only matters for `group`)."""
        g = self.grid
        seen, out = set(), []
        for values in itertools.product(*(g[k] for k in GRID_DEFAULTS)):
            d = dict(zip(GRID_DEFAULTS, values))
            if d["wbits"] in FLOAT_FORMATS:  # one float baseline per format, whatever the other grid keys
                fmt = d["wbits"]
                d.update(BASELINE_FIELDS, wbits=FLOAT_FORMATS[fmt], abits=FLOAT_FORMATS[fmt], wfloat=fmt, afloat=fmt,
                         training="ptq", epochs=None, lr=None, seed=None, ptq="rtn", act_mode="static",
                         sparsity=0.0, sparsity_pattern="unstructured", fine_tune_epochs=0)
                cfg = DesignConfig(**d)
                if cfg not in seen:
                    seen.add(cfg)
                    out.append(cfg)
                continue
            if d["training"] == "ptq":
                d.update(epochs=None, lr=None, seed=None)
            d["sparsity"] = float(d["sparsity"])
            if not d["sparsity"]:   # dense: pattern and fine-tuning mean nothing
                d.update(sparsity_pattern="unstructured", fine_tune_epochs=0)
            elif ":" in d["sparsity_pattern"]:
                n, m = (int(v) for v in d["sparsity_pattern"].split(":"))
                d["sparsity"] = 1.0 - n / m
            if d["abits"] in FLOAT_FORMATS:
                d.update(afloat=d["abits"], abits=None)
            if self.tie_bits and d["abits"] is not None and d["abits"] != d["wbits"]:
                continue
            if d["scheme"] in BLOCK_FORMATS:
                bits, block = BLOCK_FORMATS[d["scheme"]]
                d.update(wbits=bits, granularity="group", group_size=block, scale_dtype="e8m0" if d["scheme"] != "nvfp4" else "e4m3")
            elif d["granularity"] != "group":
                d["group_size"] = None
            cfg = DesignConfig(**d)
            if cfg not in seen:
                seen.add(cfg)
                out.append(cfg)
        return out


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _expand_values(key: str, value, problems: list[str]) -> list:
    """A grid value: scalar, list, or {range: [start, stop], step: s} (inclusive)."""
    if isinstance(value, dict):
        unknown = set(value) - {"range", "step"}
        rng = value.get("range")
        if unknown or not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, int) for v in rng)):
            problems.append(f"grid.{key}: a range is written {{range: [start, stop], step: 1}} with integers, got {value!r}")
            return []
        step = value.get("step", 1)
        if not isinstance(step, int) or step < 1:
            problems.append(f"grid.{key}.step must be a positive integer, got {step!r}")
            return []
        return list(range(rng[0], rng[1] + 1, step))
    values = value if isinstance(value, list) else [value]
    if not values:
        problems.append(f"grid.{key} is empty; give at least one value")
    return values


def _check_choices(key: str, values: list, allowed, problems: list[str]) -> None:
    for v in values:
        if v not in allowed:
            problems.append(f"grid.{key}: {v!r} is not allowed; choose from {sorted(map(str, allowed))}")


def _check_ints(key: str, values: list, lo: int, hi: int, problems: list[str], extra: str = "") -> None:
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            problems.append(f"grid.{key}: {v!r} is not allowed; use integers in {lo}..{hi}{extra}")


def parse_study(source: dict | str | Path) -> StudySpec:
    """Validate a study (dict, YAML text path) and return a StudySpec; StudySpecError lists every problem."""
    from qsim.hw import list_profiles  # local: the hw layer is only needed here
    from qsim.nets import list_networks
    from qsim.workload.zoo import list_workloads

    label = "study spec"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"study spec {str(path)!r} does not exist")
        label = str(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise StudySpecError(label, [f"not valid YAML: {exc}"]) from None
    else:
        raw = source
    if not isinstance(raw, dict):
        raise StudySpecError(label, [f"the spec must be a mapping of keys, got {type(raw).__name__}"])
    problems: list[str] = []
    for key in sorted(set(raw) - TOP_KEYS):
        problems.append(f"unknown key {key!r}; allowed keys are {sorted(TOP_KEYS)}")

    name = raw.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        problems.append(f"name: a non-empty name without spaces or slashes is required, got {name!r}")

    networks = raw.get("networks", [raw["network"]] if "network" in raw else [])
    networks = networks if isinstance(networks, list) else [networks]
    known_nets = list_networks()
    for n in networks:
        if n not in known_nets:
            problems.append(f"network: {n!r} is not a qsim network; known networks: {known_nets}")
    workloads = raw.get("workload", [])
    workloads = workloads if isinstance(workloads, list) else [workloads]
    known_wl = list_workloads()
    for w in workloads:
        if w not in known_wl:
            problems.append(f"workload: {w!r} is not a known workload shape; known: {known_wl}")
    if not networks and not workloads:
        problems.append("network: give a network (accuracy + cost) or a workload (cost only)")
    if networks and workloads:
        problems.append("network and workload: give one of them; a network already has its workload")

    calib = raw.get("calibration_size", 256)
    if not isinstance(calib, int) or calib < 1:
        problems.append(f"calibration_size must be a positive integer, got {calib!r}")
    eval_size = raw.get("eval_size")
    if eval_size is not None and (not isinstance(eval_size, int) or eval_size < 1):
        problems.append(f"eval_size must be a positive integer or absent (whole test split), got {eval_size!r}")

    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, dict):
        problems.append(f"grid must be a mapping of grid keys to values, got {grid_raw!r}")
        grid_raw = {}
    for key in sorted(set(grid_raw) - set(GRID_DEFAULTS)):
        problems.append(f"grid: unknown key {key!r}; grid keys are {list(GRID_DEFAULTS)}")
    grid = {k: _expand_values(k, grid_raw[k], problems) if k in grid_raw else list(v) for k, v in GRID_DEFAULTS.items()}
    grid["abits"] = ["fp16" if v in ("float", None) else v for v in grid["abits"]]  # float = fp16 activations
    _check_ints("wbits", [v for v in grid["wbits"] if v not in FLOAT_FORMATS], 1, 16, problems,
                extra=f" or a float baseline format {list(FLOAT_FORMATS)}")
    _check_ints("abits", [v for v in grid["abits"] if v not in FLOAT_FORMATS], 1, 16, problems,
                extra=f" or a float format {list(FLOAT_FORMATS)} / 'float' (= fp16; activations stay float)")
    _check_ints("acc_bits", grid["acc_bits"], 8, 64, problems)
    _check_ints("group_size", grid["group_size"], 1, 1 << 20, problems)
    _check_choices("scheme", grid["scheme"], SCHEMES, problems)
    _check_choices("act_scheme", grid["act_scheme"], ACT_SCHEMES, problems)
    _check_choices("granularity", grid["granularity"], GRANULARITIES, problems)
    _check_choices("calibration", grid["calibration"], CALIBRATIONS, problems)
    _check_choices("policy", grid["policy"], POLICIES, problems)
    _check_choices("scale_dtype", grid["scale_dtype"], ("fp32", "fp16", "bf16", "pow2"), problems)
    _check_choices("training", grid["training"], TRAININGS, problems)
    sexagesimal = [v for v in grid["sparsity_pattern"] if isinstance(v, int) and not isinstance(v, bool)]
    for v in sexagesimal:  # YAML 1.1 reads an unquoted 2:4 as the base-60 number 124
        problems.append(f"grid.sparsity_pattern: {v!r} is how YAML reads an unquoted {v // 60}:{v % 60}; "
                        f"quote it: '{v // 60}:{v % 60}'")
    _check_choices("sparsity_pattern", [v for v in grid["sparsity_pattern"] if v not in sexagesimal],
                   SPARSITY_PATTERNS, problems)
    for v in grid["sparsity"]:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            problems.append(f"grid.sparsity: {v!r} is not allowed; use a fraction of zero weights in [0, 1)")
    _check_ints("fine_tune_epochs", grid["fine_tune_epochs"], 0, 10_000, problems)
    if any(v for v in grid["sparsity"] if isinstance(v, (int, float))) and (
            set(grid["training"]) != {"ptq"} or set(grid["ptq"]) != {"rtn"}):
        problems.append("grid.sparsity: pruning combines with plain PTQ (training [ptq], ptq [rtn]) only")
    from qsim.ptq import ACT_MODES, parse_ptq

    for v in grid["ptq"]:
        try:
            parse_ptq(v)
        except ValueError as exc:
            problems.append(f"grid.ptq: {exc}")
    _check_choices("act_mode", grid["act_mode"], ACT_MODES, problems)
    if (set(grid["ptq"]) != {"rtn"} or set(grid["act_mode"]) != {"static"}) and set(grid["training"]) != {"ptq"}:
        problems.append("grid.ptq/act_mode: PTQ methods and dynamic activations apply to training: ptq configs only")
    _check_ints("epochs", [v for v in grid["epochs"] if v is not None], 1, 10_000, problems, extra=" or null")
    _check_ints("seed", [v for v in grid["seed"] if v is not None], 0, 2**31, problems, extra=" or null")
    for v in grid["lr"]:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf")):
            problems.append(f"grid.lr: {v!r} is not allowed; use a learning rate > 0 or null")
    if set(grid["training"]) != {"ptq"} and networks and any(n in known_nets and get_arch_less(n) for n in networks):
        problems.append("grid.training: qat/qat_kd train the sequential CNN/MLP networks only, not "
                        + ", ".join(n for n in networks if n in known_nets and get_arch_less(n)))
    # Impossible combinations.
    if 1 in grid["abits"] and "affine" in grid["act_scheme"]:
        problems.append("grid.abits/act_scheme: binary (1-bit) activations cannot use the affine scheme; use act_scheme binary")
    if "binary" in grid["act_scheme"] and any(b != 1 and b not in FLOAT_FORMATS for b in grid["abits"]):
        problems.append("grid.act_scheme: 'binary' activations are 1 bit; set abits to [1]")
    if "kmeans" in grid["scheme"] and any(g != "tensor" for g in grid["granularity"]):
        problems.append("grid.scheme/granularity: kmeans shares one codebook per tensor; use granularity [tensor]")

    if "minilm" in networks and any(p != "fp32_rne" for p in grid["policy"]):
        problems.append("grid.policy: network 'minilm' rescales its int32 accumulators in fp32; use policy [fp32_rne]")
    profiles = raw.get("profiles", [])
    profiles = profiles if isinstance(profiles, list) else [profiles]
    if not profiles:
        problems.append("profiles: name at least one hardware profile (see `qsim profiles list`) or a YAML file")
    known_profiles = list_profiles()
    for p in profiles:
        if not isinstance(p, str) or (p not in known_profiles and not Path(p).is_file()):
            problems.append(f"profiles: {p!r} is neither a shipped profile nor a file; shipped: {known_profiles}")

    objectives = raw.get("objectives", {"accuracy": "max", "energy_j": "min", "latency_s": "min", "memory_bytes": "min"})
    if not isinstance(objectives, dict) or not objectives:
        problems.append(f"objectives: a mapping like {{accuracy: max, energy_j: min}}, got {objectives!r}")
        objectives = {}
    for col, sense in objectives.items():
        if col not in OBJECTIVE_COLUMNS:
            problems.append(f"objectives: {col!r} is not a result column; choose from {list(OBJECTIVE_COLUMNS)}")
        if sense not in ("min", "max"):
            problems.append(f"objectives.{col}: must be 'min' or 'max', got {sense!r}")
    if workloads and ("accuracy" in objectives or "sqnr_db" in objectives):
        objectives = {k: v for k, v in objectives.items() if k not in ("accuracy", "sqnr_db")}
    tie_bits = raw.get("tie_bits", False)
    if not isinstance(tie_bits, bool):
        problems.append(f"tie_bits must be true or false (true: only configs with abits == wbits), got {tie_bits!r}")

    overrides = _check_overrides(raw.get("overrides"), [n for n in networks if n in known_nets], workloads, grid,
                                 problems)
    grid_ok = not any(p.startswith("grid") for p in problems)
    if grid_ok and networks and all(n in known_nets for n in networks):
        _check_group_sizes(networks, grid, problems)
    spec = StudySpec(
        name=name, networks=tuple(networks), workloads=tuple(workloads), calibration_size=calib, eval_size=eval_size,
        grid=grid, profiles=tuple(profiles), objectives=dict(objectives),
        tie_bits=tie_bits if isinstance(tie_bits, bool) else False,
        description=str(raw.get("description", "")), raw=raw, overrides=overrides,
    )
    if grid_ok:
        # Every config and every (config, profile) pair, before any work: all problems at once.
        good_profiles = [p for p in profiles if isinstance(p, str) and (p in known_profiles or Path(p).is_file())]
        _check_configs(spec, [n for n in networks if n in known_nets], good_profiles, problems)
        _check_sparsity(spec, [n for n in networks if n in known_nets] + list(workloads), good_profiles,
                        raw.get("require_sparsity", False), problems)
    if problems:
        raise StudySpecError(label, problems)
    return spec


def _check_sparsity(spec: StudySpec, targets: list[str], profiles: list[str], require, problems: list[str]) -> None:
    """N:M patterns must divide every weight layer's reduction (the layer is named); with `require_sparsity:
    true`, every pruned config must be exploited by every profile (qsim.hw.sparsity says how, or that it is not)."""
    from qsim.hw import CostQuant, load_profile
    from qsim.hw.sparsity import plan
    from qsim.study.runner import workload_of

    if not isinstance(require, bool):
        problems.append(f"require_sparsity must be true or false, got {require!r}")
        require = False
    pruned = sorted({(c.sparsity, c.sparsity_pattern) for c in spec.configs() if c.sparsity})
    for sp, pattern in pruned:
        if ":" in pattern:
            m = int(pattern.split(":")[1])
            for t in targets:
                bad = [f"{layer.name} (K={layer.gemm.K})" for layer in workload_of(t, t not in spec.workloads).layers
                       if layer.gemm is not None and layer.gemm.b_is_weight and layer.gemm.K % m]
                if bad:
                    problems.append(f"grid.sparsity_pattern: {pattern} needs every weight layer's reduction K divisible "
                                    f"by {m}; {t}: {', '.join(bad)}")
        if require:
            for name in profiles:
                used = plan(load_profile(name), CostQuant(sparsity=sp, sparsity_pattern=pattern))["used"]
                if used.startswith("none"):
                    problems.append(f"require_sparsity: profile {name!r} does not exploit {pattern} sparsity "
                                    f"({sp:.0%}): {used}")


def _check_overrides(value, networks, workloads, grid, problems) -> dict:
    """`overrides: {layer or glob: w4a8 | w8a8:tensor | float | {wbits, abits, …}}`: per-layer choices pinned on
    every quantized grid config (float baselines stay float); checked against each network's layers."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        problems.append(f"overrides: a mapping of layer name or glob to a choice (e.g. {{fc: w8a8}}), got {value!r}")
        return {}
    if workloads:
        problems.append("overrides: per-layer choices need a network (accuracy); cost-only workloads take none")
    if set(grid["training"]) != {"ptq"}:
        problems.append("overrides: per-layer choices apply to ptq configs only; set grid.training to [ptq]")
    from qsim.search.assign import pinned

    for n in networks:
        try:
            pinned(n, value)
        except ValueError as exc:
            problems.append(f"overrides ({n}): {exc}")
    return dict(value)


def get_arch_less(name: str) -> bool:
    from qsim.nets import get_network

    return get_network(name).arch is None


def _label(cfg: DesignConfig) -> str:
    from qsim.study.runner import config_label

    return config_label(cfg)


def _grouped(problems: dict[str, list[str]], out: list[str]) -> None:
    """One line per distinct problem, naming the grid configs it affects."""
    for msg, labels in problems.items():
        labels = list(dict.fromkeys(labels))
        shown = ", ".join(labels[:6]) + (f", … ({len(labels)} configs)" if len(labels) > 6 else "")
        out.append(f"{msg} (grid configs: {shown})")


def _check_configs(spec: StudySpec, networks: list[str], profiles: list[str], problems: list[str]) -> None:
    """Quant specs buildable, networks able to evaluate each config, profiles able to run each cost view."""
    from qsim.hw import load_profile
    from qsim.hw.cost import peak_macs_per_cycle
    from qsim.nets import get_network
    from qsim.study.runner import cost_quant

    spec_problems: dict[str, list[str]] = {}
    runnable = []
    for cfg in spec.configs():
        if cfg.is_baseline:
            runnable.append(cfg)
            for net in networks:
                if get_network(net).arch is None and cfg.wfloat != "fp32":
                    spec_problems.setdefault(f"grid.wbits: network {net!r} evaluates its float baseline at fp32 only, "
                                             f"not {cfg.wfloat}", []).append(_label(cfg))
            continue
        try:
            wspec, aspec = cfg.weight_spec(), cfg.act_spec()
            runnable.append(cfg)  # the cost side is checked even where a network cannot evaluate it
            for net in networks:
                _check_network_config(get_network(net), wspec, aspec, cfg)
        except (ValueError, TypeError) as exc:
            spec_problems.setdefault(f"grid.act_scheme/abits/scheme: {exc}", []).append(_label(cfg))
    _grouped(spec_problems, problems)
    views: dict = {}
    baseline_views: dict = {}
    for cfg in runnable:
        try:
            if cfg.is_baseline:
                baseline_views.setdefault(cost_quant(cfg), []).append(cfg)
            views.setdefault(cost_quant(cfg), []).append(_label(cfg))
        except (ValueError, TypeError) as exc:
            problems.append(f"grid: config {_label(cfg)} cannot be costed: {exc}")
    names: dict[str, str] = {}
    for name in profiles:
        try:
            profile = load_profile(name)
        except (ValueError, OSError) as exc:
            problems.append(f"profiles: {name!r} does not load: {exc}")
            continue
        if profile.name in names:
            problems.append(f"profiles: {name!r} and {names[profile.name]!r} are both named {profile.name!r}; "
                            f"results are labelled by profile name, give each a distinct `name:`")
        names[profile.name] = name
        # One line per kind of refusal: the cost view's own label is folded out of the message.
        refusals: dict[str, list] = {}
        for view, labels in views.items():
            try:
                peak_macs_per_cycle(profile, view)
            except ValueError as exc:
                if view in baseline_views:  # a reference point this chip cannot run: left out, with a note
                    for cfg in baseline_views[view]:
                        spec.baseline_skips.setdefault(name, {})[cfg.key] = (_label(cfg), str(exc))
                    continue
                refusals.setdefault(str(exc).replace(view.label(), "{config}"), []).append((view, str(exc), labels))
        hw_problems: dict[str, list[str]] = {}
        for generic, hits in refusals.items():
            msg = hits[0][1] if len(hits) == 1 else generic.replace("{config}", f"these {len(hits)} cost views")
            hw_problems[f"profiles: {msg}"] = [lab for _, _, labels in hits for lab in labels]
        _grouped(hw_problems, problems)


def _check_network_config(net, wspec, aspec, cfg: DesignConfig) -> None:
    """What the network's evaluator would reject, raised now (the same checks, the same words)."""
    from qsim.nets.quant_exec import QuantConfig, check_act_spec

    if aspec is not None and aspec.scheme in ("binary", "ternary"):
        raise ValueError(f"{aspec.scheme} activations: the network executors run activations as integer codes with "
                         f"one scale (affine or symmetric); XNOR-popcount / ternary products exist as kernels "
                         f"(qsim.kernels.matmul_binary, matmul_ternary) but no network runs them yet")
    if aspec is not None:
        check_act_spec(aspec, "activations")
    if net.arch is not None:
        QuantConfig.build(net, wspec, aspec, policy=cfg.policy, acc_bits=cfg.acc_bits)
    if (cfg.ptq, cfg.act_mode) != ("rtn", "static"):
        from qsim.ptq import check_ptq

        check_ptq(net.name, cfg.ptq, wspec, aspec, cfg.act_mode)


def _check_group_sizes(networks, grid, problems) -> None:
    """A group larger than every reduction dimension of a network is just per-channel: say so."""
    from qsim.nets import get_network

    if "group" not in grid["granularity"]:
        return
    for n in networks:
        k_max = max(layer.gemm.K for layer in get_network(n).workload.mac_layers)
        for gs in grid["group_size"]:
            if gs > k_max:
                problems.append(
                    f"grid.group_size: {gs} is larger than the largest reduction dimension K={k_max} of {n!r}; "
                    f"use a group size <= {k_max} (or granularity channel)"
                )
