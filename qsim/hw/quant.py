"""`CostQuant`: what the cost models need to know about a quant config, and precision mapping.

Only bit widths, element formats and the granularity's metadata matter for cost; the
numerics (rounding, calibration) do not. Metadata rule (REFERENCE 1): per-group weights
store one `scale_bits` scale (+ a `w_bits` zero point when `zero_point`) per `group_size`
elements — INT4 g32 fp16 = 4.5 bits/element, INT4 g128 fp16 + zp = 4.156.
"""

from __future__ import annotations

from dataclasses import dataclass

from qsim.hw.schema import PRECISION_BITS

INT = "int"
# Element formats → (native precision name, element bits).
FLOAT_FORMATS = {
    "fp8_e4m3": ("fp8", 8), "fp8_e5m2": ("fp8", 8), "fp6_e3m2": ("fp6", 6), "fp6_e2m3": ("fp6", 6),
    "fp4_e2m1": ("fp4", 4), "fp16": ("fp16", 16), "bf16": ("bf16", 16), "tf32": ("tf32", 19), "fp32": ("fp32", 32),
}
GRANULARITIES = ("tensor", "channel", "group")
# Float precisions in order of preference, with significand bits (an int operand of b bits fits if sig ≥ b).
_FLOAT_ORDER = [("fp4", 2), ("fp6", 4), ("fp8", 4), ("fp16", 11), ("bf16", 8), ("tf32", 11), ("fp32", 24)]
_INT_ORDER = ["binary", "int2", "int4", "int8", "int16", "int32"]
# Float formats that hold each unquantized float operand exactly (range and significand), best first:
# fp16 (e5m10) fits tf32 (e8m10) and fp32; bf16 (e8m7) fits tf32 and fp32; fp32 only itself.
_WIDE_FLOAT_HOSTS = {"fp16": ["fp16", "tf32", "fp32"], "bf16": ["bf16", "tf32", "fp32"], "fp32": ["fp32"]}


SPARSITY_PATTERNS = ("unstructured", "random", "channel", "2:4", "4:8")
ACT_MODES = ("static", "dynamic_tensor", "dynamic_token")
DYNAMIC_SOURCE_BYTES = 2  # the unquantized activation a dynamic range is computed from: fp16


def nm_pattern(pattern: str) -> tuple[int, int] | None:
    """(N, M) of an N:M pattern, else None."""
    if ":" not in pattern:
        return None
    n, m = pattern.split(":")
    return int(n), int(m)


@dataclass(frozen=True)
class CostQuant:
    """Bit widths and formats of one layer's operands, as the cost models see them.

    w_bits/a_bits  element bits of weights / activations (1..32)
    granularity    of weight scales: tensor, channel (per output channel) or group
    group_size     elements per weight scale for `group`
    scale_bits     bits of each stored scale (default 16: fp16 scales, what deployed formats store;
                   `qsim simulate --scale-bits` has the same default); zero_point: also store a w_bits
                   zero point
    codebook_bits  bits of a per-tensor codebook stored instead of scales (k-means: 2^w_bits fp32
                   centroids); 0 = none
    tensor_scale_bits  an extra per-tensor scale (NVFP4's fp32 second-level scale); 0 = none
    acc_bits       accumulator width (adder energy, partial-sum spills)
    w_format/a_format  "int" or a float element format (fp8_e4m3, fp4_e2m1, ... — MX/NVFP4/FP8)
    a_group_size/a_scale_bits  block scales on activations (MX: 32 / 8), None = per tensor
    sparsity       fraction of zero weights (0 = dense); sparsity_pattern: how they are spread —
                   unstructured, random, channel (whole filters gone), 2:4 / 4:8 (N kept of every M
                   along the reduction); act_sparsity: fraction of zero activations (for zero gating)
    act_mode       static (calibrated activation ranges) or dynamic_tensor / dynamic_token (ranges computed at
                   run time: one more pass over each MAC layer's fp16 input before it is quantized)
    """

    w_bits: int = 8
    a_bits: int = 8
    granularity: str = "channel"
    group_size: int | None = None
    scale_bits: int = 16
    zero_point: bool = False
    acc_bits: int = 32
    w_format: str = INT
    a_format: str = INT
    a_group_size: int | None = None
    a_scale_bits: int = 8
    codebook_bits: int = 0
    tensor_scale_bits: int = 0
    sparsity: float = 0.0
    sparsity_pattern: str = "unstructured"
    act_sparsity: float = 0.0
    act_mode: str = "static"

    def __post_init__(self):
        if self.act_mode not in ACT_MODES:
            raise ValueError(f"act_mode must be one of {ACT_MODES}, got {self.act_mode!r}")
        for name in ("sparsity", "act_sparsity"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1), got {v!r}")
        if self.sparsity_pattern not in SPARSITY_PATTERNS:
            raise ValueError(f"sparsity_pattern must be one of {SPARSITY_PATTERNS}, got {self.sparsity_pattern!r}")
        nm = nm_pattern(self.sparsity_pattern)
        if nm and self.sparsity and abs(self.sparsity - (1 - nm[0] / nm[1])) > 1e-9:
            raise ValueError(f"pattern {self.sparsity_pattern} keeps {nm[0]} of {nm[1]} weights: sparsity must be "
                             f"{1 - nm[0] / nm[1]:g} (or 0 for dense), got {self.sparsity!r}")
        for name in ("w_bits", "a_bits", "acc_bits", "scale_bits", "a_scale_bits"):
            v = getattr(self, name)
            lo = 0 if name == "scale_bits" else 1  # 0: no scales (unquantized float weights)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= 64:
                raise ValueError(f"{name} must be an integer in {lo}..64, got {v!r}")
        for name in ("codebook_bits", "tensor_scale_bits"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if self.codebook_bits and (self.granularity != "tensor" or self.zero_point):
            raise ValueError("a codebook (codebook_bits > 0) is one per tensor: use granularity 'tensor' and "
                             "no zero point")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.granularity == "group" and (not isinstance(self.group_size, int) or self.group_size < 1):
            raise ValueError(f"granularity 'group' needs group_size (a positive integer), got {self.group_size!r}")
        if self.a_group_size is not None and (not isinstance(self.a_group_size, int) or self.a_group_size < 1):
            raise ValueError(f"a_group_size must be a positive integer or None, got {self.a_group_size!r}")
        for name, bits in (("w_format", self.w_bits), ("a_format", self.a_bits)):
            fmt = getattr(self, name)
            if fmt != INT and fmt not in FLOAT_FORMATS:
                raise ValueError(f"{name} must be 'int' or one of {sorted(FLOAT_FORMATS)}, got {fmt!r}")
            if fmt != INT and FLOAT_FORMATS[fmt][1] != bits:
                raise ValueError(f"{name} {fmt!r} has {FLOAT_FORMATS[fmt][1]} bits but "
                                 f"{name[0]}_bits is {bits}")
            if fmt == INT and bits > 32:
                raise ValueError(f"{name[0]}_bits must be <= 32 for integer operands, got {bits}")

    @property
    def w_meta_bits_per_group(self) -> int:
        """Metadata bits per scale group (per tensor for `tensor`): scale + zero point, or the codebook."""
        if self.codebook_bits:
            return self.codebook_bits + self.tensor_scale_bits
        meta = self.scale_bits + (self.w_bits if self.zero_point else 0)
        return meta + (self.tensor_scale_bits if self.granularity == "tensor" else 0)

    def w_storage_bits(self, n_out: int, k: int) -> int:
        """Exact stored bits of an (n_out × k) weight: codes, one scale (+ zero point) per group —
        ceil(k / group_size) groups per row, the last one ragged — codebook and tensor scale; equal to
        `QTensor.storage_bits` of the same weight quantized along k."""
        codes = n_out * k * self.w_bits
        if self.codebook_bits:
            return codes + self.codebook_bits + self.tensor_scale_bits
        groups = {"tensor": 1, "channel": n_out, "group": n_out * -(-k // (self.group_size or 1))}[self.granularity]
        return codes + groups * (self.scale_bits + (self.w_bits if self.zero_point else 0)) + self.tensor_scale_bits

    def w_bits_per_element(self, n_out: int = 1, k: int = 1) -> float:
        """Stored bits per weight incl. scale/zero-point metadata for a (n_out × k) weight."""
        meta = self.w_meta_bits_per_group
        if self.granularity == "group":
            return self.w_bits + meta / self.group_size
        if self.granularity == "channel":
            return self.w_bits + meta / max(k, 1)
        return self.w_bits + meta / max(n_out * k, 1)

    @property
    def a_bits_per_element(self) -> float:
        return self.a_bits + (self.a_scale_bits / self.a_group_size if self.a_group_size else 0.0)

    @classmethod
    def from_specs(cls, weights, activations=None, acc_bits: int = 32) -> "CostQuant":
        """From `qsim.quant.QuantSpec`s of weights and activations (activations default int8 per tensor).

        Block formats become element formats with their block scales (mxfp8_e4m3 → fp8_e4m3 +
        e8m0 per 32; nvfp4 → fp4_e2m1 + e4m3 per 16 + an fp32 tensor scale; mxint8 → int8 +
        e8m0 per 32); affine adds a zero point; kmeans stores a 2^bits-entry fp32 codebook per
        tensor instead of scales; `global` granularity costs like `tensor`.
        """
        w_fmt, w_gran, w_gs = _spec_format(weights)
        kw = dict(w_bits=weights.bits, w_format=w_fmt, granularity=w_gran, group_size=w_gs,
                  scale_bits=weights.scale_bits, zero_point=weights.scheme == "affine", acc_bits=acc_bits)
        if weights.scheme == "kmeans":  # 2^bits fp32 centroids per tensor, no scales (QTensor.storage_bits)
            kw.update(codebook_bits=(1 << weights.bits) * 32, granularity="tensor", group_size=None)
        if weights.scheme == "nvfp4":   # fp32 per-tensor scale on top of the e4m3 block scales
            kw.update(tensor_scale_bits=32)
        if activations is not None:
            a_fmt, a_gran, a_gs = _spec_format(activations)
            kw.update(a_bits=activations.bits, a_format=a_fmt,
                      a_group_size=a_gs if a_gran == "group" else None, a_scale_bits=activations.scale_bits)
        return cls(**kw)

    def label(self) -> str:
        w = self.w_format if self.w_format != INT else f"int{self.w_bits}"
        a = self.a_format if self.a_format != INT else f"int{self.a_bits}"
        g = f"g{self.group_size}" if self.granularity == "group" else self.granularity
        sp = "" if not self.sparsity else (f"-{self.sparsity_pattern}" if nm_pattern(self.sparsity_pattern)
                                            else f"-{self.sparsity_pattern}{self.sparsity:.0%}")
        return f"W{w}-A{a}-{g}{sp}"


_BLOCK_ELEMENT = {"mxint8": INT, "mxfp8_e4m3": "fp8_e4m3", "mxfp8_e5m2": "fp8_e5m2", "mxfp6_e3m2": "fp6_e3m2",
                  "mxfp6_e2m3": "fp6_e2m3", "mxfp4": "fp4_e2m1", "nvfp4": "fp4_e2m1"}


def _spec_format(spec) -> tuple[str, str, int | None]:
    """(element format, granularity, group size) of a QuantSpec for costing."""
    if spec.scheme in _BLOCK_ELEMENT:
        return _BLOCK_ELEMENT[spec.scheme], "group", spec.group_size
    gran = "tensor" if spec.granularity == "global" else spec.granularity
    return INT, gran, spec.group_size if gran == "group" else None


def wanted_precision(q: CostQuant) -> str:
    """The narrowest native precision that holds both operands exactly."""
    return precision_candidates(q)[0]


def precision_candidates(q: CostQuant) -> list[str]:
    """Native precisions able to run (w, a), best first (a unit uses the first it has).

    Both int: intB for the smallest B ≥ max(w, a) (binary for 1 bit), then wider ints, then floats
    whose significand holds the ints (fp16 for ≤ 11 bits). Any float operand: the smallest float
    format at least as wide as every float operand whose significand holds any int operand.
    """
    if q.w_format == INT and q.a_format == INT:
        b = max(q.w_bits, q.a_bits)
        ints = [p for p in _INT_ORDER if PRECISION_BITS[p] >= b and (p != "binary" or b == 1)]
        floats = [p for p, sig in _FLOAT_ORDER if sig >= b and PRECISION_BITS[p] >= 8]
        return ints + floats
    wide = {q.w_format, q.a_format}
    if wide <= set(_WIDE_FLOAT_HOSTS):  # unquantized fp16/bf16/fp32 operands: hosts that hold them exactly
        return [p for p in _WIDE_FLOAT_HOSTS[max(wide, key=lambda f: FLOAT_FORMATS[f][1])]
                if all(p in _WIDE_FLOAT_HOSTS[f] for f in wide)]
    fbits = max(FLOAT_FORMATS[f][1] for f in (q.w_format, q.a_format) if f != INT)
    ibits = max([b for f, b in ((q.w_format, q.w_bits), (q.a_format, q.a_bits)) if f == INT], default=0)
    return [p for p, sig in _FLOAT_ORDER if PRECISION_BITS[p] >= fbits and sig >= ibits]


def resolve(q: CostQuant, supported, profile_name: str, unit: str) -> tuple[str, str]:
    """(precision used, fallback note) for a unit supporting `supported` precisions."""
    cands = precision_candidates(q)
    for p in cands:
        if p in supported:
            note = "" if p == cands[0] else f"{cands[0]}->{p}: {profile_name} has no {cands[0].upper()} {unit}"
            return p, note
    raise ValueError(f"profile {profile_name!r} cannot run {q.label()}: needs one of {cands}, "
                     f"its {unit} support {sorted(supported)}")
