"""Per-layer quantization assignments: one compact choice per MAC layer, from names or globs.

Why a separate, tiny vocabulary: the solver, the CLI, the YAML spec and the results all
need to name "layer X at W4/A8 per-channel" the same way and hash it the same way, and
the executor (`QuantConfig.build` overrides of QuantSpecs) and the cost model (per-layer
`CostQuant` dicts) each want their own objects. A `LayerChoice` is that common word;
`Assignment` maps every MAC layer of a network to one.

A choice's `abits` is the bit width of the layer's INPUT activation (what its MACs
consume), as in `qsim.nets.quant_exec.QuantConfig`. A "float" layer is emulated in the
integer pipeline as W16/A16 codes on a 64-bit accumulator (SQNR > 80 dB against fp32:
numerically float for these networks) and costed as fp32 operands without scales, like
the study's fp32 baseline — the label says so wherever it appears.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass

from qsim.quant import QuantSpec

WEIGHT_SCHEMES = ("symmetric", "affine")
GRANULARITIES = ("tensor", "channel", "group")
FLOAT_EMULATION_BITS = 16


@dataclass(frozen=True, order=True)
class LayerChoice:
    """Bits, scheme and granularity of one layer (or `is_float`)."""

    wbits: int = 8
    abits: int = 8
    scheme: str = "symmetric"
    granularity: str = "channel"
    group_size: int | None = None
    is_float: bool = False

    def __post_init__(self):
        if self.is_float:
            return
        for name in ("wbits", "abits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 2 <= v <= 8:
                raise ValueError(f"{name} must be an integer in 2..8 (or the layer 'float'), got {v!r}")
        if self.scheme not in WEIGHT_SCHEMES:
            raise ValueError(f"scheme must be one of {list(WEIGHT_SCHEMES)}, got {self.scheme!r}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {list(GRANULARITIES)}, got {self.granularity!r}")
        if self.granularity == "group":
            if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
                raise ValueError(f"granularity 'group' needs a positive integer group_size, got {self.group_size!r}")
        elif self.group_size is not None:
            object.__setattr__(self, "group_size", None)

    # -- conversions -------------------------------------------------------------------
    def compact(self) -> dict | str:
        """The JSON form used in results: {"wbits", "abits", "scheme", "granularity"[, "group_size"]} or "float"."""
        if self.is_float:
            return "float"
        d = {"wbits": self.wbits, "abits": self.abits, "scheme": self.scheme, "granularity": self.granularity}
        if self.granularity == "group":
            d["group_size"] = self.group_size
        return d

    def label(self) -> str:
        if self.is_float:
            return "float"
        g = f"g{self.group_size}" if self.granularity == "group" else self.granularity
        s = "" if self.scheme == "symmetric" else f"-{self.scheme}"
        return f"W{self.wbits}A{self.abits}-{g}{s}"

    def specs(self) -> tuple[QuantSpec, QuantSpec]:
        """(weight QuantSpec, input-activation QuantSpec) for the integer executor."""
        if self.is_float:
            b = FLOAT_EMULATION_BITS
            return QuantSpec(bits=b, granularity="channel"), QuantSpec(bits=b, scheme="affine")
        w = QuantSpec(bits=self.wbits, scheme=self.scheme, granularity=self.granularity,
                      group_size=self.group_size)
        return w, QuantSpec(bits=self.abits, scheme="affine")

    def cost_quant(self):
        """The cost model's view (`qsim.hw.CostQuant`)."""
        from qsim.hw import CostQuant

        if self.is_float:
            return CostQuant(w_bits=32, a_bits=32, w_format="fp32", a_format="fp32", granularity="tensor",
                             scale_bits=0)
        return CostQuant.from_specs(*self.specs())


FLOAT = LayerChoice(is_float=True)
_TOKEN = re.compile(r"^w(\d+)a(\d+)(?::(tensor|channel|group(\d+)))?(?::(symmetric|affine))?$")


def parse_choice(value, where: str = "choice") -> LayerChoice:
    """A LayerChoice from "float", "w4a8[:channel|tensor|group16][:affine]", a dict or a LayerChoice."""
    if isinstance(value, LayerChoice):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "float":
            return FLOAT
        m = _TOKEN.match(text)
        if not m:
            raise ValueError(f"{where}: {value!r} is not a layer choice; write 'float' or 'w4a8', "
                             f"'w4a8:tensor', 'w2a8:group16', 'w4a8:channel:affine'")
        gran = m.group(3) or "channel"
        gs = int(m.group(4)) if m.group(4) else None
        return LayerChoice(int(m.group(1)), int(m.group(2)), m.group(5) or "symmetric",
                           "group" if gs else gran, gs)
    if isinstance(value, dict):
        if value.get("float") is True or value.get("scheme") == "float":
            return FLOAT
        unknown = set(value) - {"wbits", "abits", "scheme", "granularity", "group_size"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; a choice has wbits, abits, scheme, "
                             f"granularity, group_size (or is 'float')")
        try:
            return LayerChoice(**value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    raise ValueError(f"{where}: expected 'float', 'w4a8' or a mapping, got {value!r}")


class Assignment(dict):
    """{layer name: LayerChoice} covering every MAC layer of a network, in network order."""

    def compact(self) -> dict:
        return {name: c.compact() for name, c in self.items()}

    @property
    def hash(self) -> str:
        """Stable content hash (layer names and choices; insertion order irrelevant)."""
        blob = json.dumps(self.compact(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        """'conv1=W8A8-channel, dw=W4A8-channel, …' (or 'uniform W4A8-channel')."""
        uniq = set(self.values())
        if len(uniq) == 1:
            return f"uniform {next(iter(uniq)).label()}"
        return ", ".join(f"{k}={c.label()}" for k, c in self.items())

    @property
    def needs_wide_accumulator(self) -> bool:
        return any(c.is_float for c in self.values())


def mac_layers(network) -> list[str]:
    """Names of a network's MAC layers in execution order (the layers an assignment covers)."""
    from qsim.nets import get_network

    from qsim.search import transformer

    net = get_network(network)
    if net.arch is None and transformer.is_transformer(net):
        return transformer.layers()
    if net.arch is None:
        raise ValueError(f"network {net.name!r} has no sequential architecture: its evaluator does not take "
                         f"per-layer overrides, so mixed precision cannot run on it")
    return [op.name for op in net.arch.mac_ops]


def expand(network, overrides: dict | None, default=None) -> Assignment:
    """Expand {layer name or fnmatch pattern: choice} over the network's MAC layers.

    Every problem is collected before raising: an unknown layer / pattern (the message lists
    the layers), an invalid choice, and two patterns giving one layer different choices."""
    layers = mac_layers(network)
    base = parse_choice(default if default is not None else LayerChoice(), "default")
    problems, chosen, by = [], {}, {}
    for pattern, value in (overrides or {}).items():
        try:
            choice = parse_choice(value, f"override {pattern!r}")
        except ValueError as exc:
            problems.append(str(exc))
            continue
        hits = [n for n in layers if fnmatch.fnmatchcase(n, str(pattern))]
        if not hits:
            problems.append(f"override {pattern!r} matches no MAC layer; layers are {layers}")
            continue
        for n in hits:
            if n in chosen and chosen[n] != choice:
                problems.append(f"conflicting overrides for layer {n!r}: {by[n]!r} gives {chosen[n].label()}, "
                                f"{pattern!r} gives {choice.label()}")
            else:
                chosen[n], by[n] = choice, pattern
    if problems:
        raise ValueError("; ".join(problems))
    return Assignment((n, chosen.get(n, base)) for n in layers)


def uniform(network, choice) -> Assignment:
    return Assignment((n, parse_choice(choice)) for n in mac_layers(network))


def from_compact(network, compact: dict) -> Assignment:
    """Inverse of `Assignment.compact` (every layer named exactly)."""
    layers = mac_layers(network)
    missing = [n for n in layers if n not in compact]
    if missing:
        raise ValueError(f"assignment lacks layers {missing}; layers are {layers}")
    return expand(network, compact)


def executor_args(assignment: Assignment, network=None) -> dict:
    """kwargs for `qsim.nets.evaluate` / `QuantConfig.build`: default specs, overrides, accumulator.
    MiniLM (`network`): every linear layer gets its weight and input-activation spec; the attention
    matmuls' operands take the shared A8 spec (the cost model keeps them at W8A8 too); no float layer."""
    from qsim.search import transformer

    first = next(iter(assignment.values()))
    wspec, aspec = first.specs()
    if network is not None and transformer.is_transformer(network):
        if any(c.is_float for c in assignment.values()):
            raise ValueError("network 'minilm': a layer cannot stay float in the integer executor; choose bits")
        return {"wspec": wspec, "aspec": LayerChoice().specs()[1],
                "overrides": {n: dict(zip(("w", "a"), c.specs())) for n, c in assignment.items()},
                "acc_bits": 32}
    overrides = {n: dict(zip(("w", "a"), c.specs())) for n, c in assignment.items()}
    return {"wspec": wspec, "aspec": aspec, "overrides": overrides,
            "acc_bits": 64 if assignment.needs_wide_accumulator else 32}


def cost_dict(network, assignment: Assignment) -> dict:
    """Per-workload-layer CostQuant dict: each non-MAC layer (ReLU, pooling) takes the choice of
    the MAC layer it follows (see `owners`); layers without an owner (MiniLM's attention matmuls,
    norms) stay at W8A8."""
    fixed = LayerChoice().cost_quant()
    return {layer: assignment[owner].cost_quant() if owner else fixed for layer, owner in owners(network).items()}


def owners(network) -> dict:
    """{workload layer: the MAC layer whose choice it follows}: a MAC layer itself, a ReLU or
    pooling layer the MAC layer before it (the first MAC layer for anything before it)."""
    from qsim.nets import get_network

    from qsim.search import transformer

    if transformer.is_transformer(network):
        return dict(transformer.cost_owners())
    layers = get_network(network).workload.layers
    macs = [l.name for l in layers if l.gemm is not None]
    out, owner = {}, macs[0]
    for layer in layers:
        if layer.gemm is not None:
            owner = layer.name
        out[layer.name] = owner
    return out


# -- per-layer pins on top of a uniform grid config (study specs' `overrides:`) ----------------
def pinned(network, overrides: dict) -> Assignment:
    """Only the layers the overrides name (names or globs), each with its choice; errors as `expand`."""
    full = expand(network, overrides)
    hit = {n for n in full if any(fnmatch.fnmatchcase(n, str(p)) for p in overrides)}
    return Assignment((n, c) for n, c in full.items() if n in hit)


def executor_overrides(network, overrides: dict, weight_only: bool) -> tuple[dict, bool]:
    """({layer: {"w": QuantSpec[, "a": QuantSpec]}}, needs a 64-bit accumulator) for `qsim.nets.evaluate`:
    weight-only configs keep float activations, so only the pinned weights apply there."""
    from qsim.search import transformer

    pins = pinned(network, overrides)
    if transformer.is_transformer(network):   # per-layer weight and activation specs, no float layer
        if any(c.is_float for c in pins.values()):
            raise ValueError("network 'minilm': a float layer cannot be pinned (its integer executor has no "
                             "float linear layers)")
        return {n: {"w": c.specs()[0]} if weight_only else dict(zip(("w", "a"), c.specs()))
                for n, c in pins.items()}, False
    out = {}
    for n, c in pins.items():
        w, a = c.specs()
        out[n] = {"w": w} if weight_only else {"w": w, "a": a}
    return out, pins.needs_wide_accumulator


def pinned_cost_dict(network, overrides: dict, default) -> dict:
    """Per-layer CostQuant dict: pinned MAC layers (and the ReLU/pool layers after them) at their
    choice, every other layer at `default`."""
    pins = pinned(network, overrides)
    out = {layer: pins[owner].cost_quant() for layer, owner in owners(network).items() if owner and owner in pins}
    out["default"] = default
    return out
