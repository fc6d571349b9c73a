"""Hardware profile schema: a common core plus one section per family.

Profiles are data: a YAML file per device. Validation collects *every* problem in
a file and reports them at once as a `ProfileError` (a ValueError) whose lines
name the file, the field path (``memory[1].bandwidth_bytes_per_cycle``) and what
is allowed — so a user fixes a profile in one edit, not one error per run.

Units. Plain numbers are SI base units (Hz, bytes, bytes/s, W). Quantities may
also be written as strings with a unit: ``"1.41 GHz"``, ``"40 MiB"``,
``"3350 GB/s"``, ``"700 W"``; a unit of the wrong dimension is an error.

Precisions (``PRECISIONS``) name what a unit computes natively; a quant config's
(w_bits, a_bits, formats) is mapped onto them by the cost models (see
`qsim.hw.cost.precision_candidates`).

MAC energy (``mac_energy_pj``) is keyed by precision (``int8``, ``fp16``) or by a
(weight, activation) pair (``w4a8``). The one rule for pairs not listed (see
`qsim.hw.energy`): multiplier energy ∝ b_w·b_a, adder ∝ accumulator bits, scaled
from the nearest listed entry (or from Horowitz 45 nm scaled to the profile's node).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from qsim.workload.layers import ELEMENTWISE_KINDS

FAMILIES = ("cpu_simd", "gpu_tensor_core", "systolic_array", "fpga")
DATAFLOWS = ("os", "ws", "is")
OPERANDS = ("weights", "inputs", "outputs")
# Native precisions and their element bits.
PRECISION_BITS = {
    "binary": 1, "int2": 2, "int4": 4, "int8": 8, "int16": 16, "int32": 32,
    "fp4": 4, "fp6": 6, "fp8": 8, "fp16": 16, "bf16": 16, "tf32": 19, "fp32": 32,
}
PRECISIONS = tuple(PRECISION_BITS)
Precision = Literal[
    "binary", "int2", "int4", "int8", "int16", "int32",
    "fp4", "fp6", "fp8", "fp16", "bf16", "tf32", "fp32",
]
_PAIR_RE = re.compile(r"^w(\d{1,2})a(\d{1,2})$")

# --- quantities with units -------------------------------------------------------------
_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2.0**10, "Mi": 2.0**20,
          "Gi": 2.0**30, "Ti": 2.0**40, "m": 1e-3}
_UNITS = {
    # dimension: (unit regex after the prefix, allowed spellings for the message)
    "frequency": (r"Hz", "Hz, kHz, MHz, GHz"),
    "size": (r"B", "B, KB, KiB, MB, MiB, GB, GiB (or a plain number of bytes)"),
    "bandwidth": (r"B/s", "B/s, MB/s, GB/s, TB/s, GiB/s (or a plain number of bytes/s)"),
    "power": (r"W", "mW, W, kW (or a plain number of watts)"),
}
_QTY_RE = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?)\s*([A-Za-z/]*)\s*$")


def parse_quantity(value: Any, dimension: str) -> float:
    """A number (SI base unit) or a string "<number> <prefix><unit>" → float in base units."""
    unit_re, allowed = _UNITS[dimension]
    if isinstance(value, bool):
        raise ValueError(f"expected a {dimension} (number or string with unit {allowed}), got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a {dimension} (number or string with unit {allowed}), got {value!r}")
    m = _QTY_RE.match(value)
    if not m:
        raise ValueError(f"cannot read {value!r} as a {dimension}; write e.g. '1.5 G{unit_re.replace(chr(92), '')}' "
                         f"with unit one of {allowed}")
    number, unit = float(m.group(1)), m.group(2)
    um = re.fullmatch(r"(Ki|Mi|Gi|Ti|k|K|M|G|T|m|)" + unit_re, unit)
    if unit == "" or not um:
        raise ValueError(f"unit {unit or '(none)'!r} in {value!r} is not a {dimension} unit; allowed: {allowed}")
    return number * _SCALE[um.group(1)]


def _qty(dimension: str):
    return BeforeValidator(lambda v: parse_quantity(v, dimension))


def _qty_schema(dimension: str, exclusive_min: bool = True):
    """JSON Schema for a quantity: a number (base unit) or a string with a unit."""
    unit = _UNITS[dimension][0].replace("/", "\\/")
    num = {"type": "number", ("exclusiveMinimum" if exclusive_min else "minimum"): 0}
    text = {"type": "string", "pattern": r"^\s*[0-9.eE+-]+\s*(Ki|Mi|Gi|Ti|k|K|M|G|T|m)?" + unit + r"\s*$"}
    return WithJsonSchema({"anyOf": [num, text], "description": f"{dimension}: {_UNITS[dimension][1]}"})


Frequency = Annotated[float, _qty("frequency"), Field(gt=0), _qty_schema("frequency")]
Size = Annotated[float, _qty("size"), Field(gt=0), _qty_schema("size")]
Bandwidth = Annotated[float, _qty("bandwidth"), Field(gt=0), _qty_schema("bandwidth")]
Power = Annotated[float, _qty("power"), Field(ge=0), _qty_schema("power", exclusive_min=False)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0, strict=True)]
NonNegInt = Annotated[int, Field(ge=0, strict=True)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- common core -------------------------------------------------------------------------
class MemoryLevel(_Strict):
    """One on-chip memory level (register file, cache, scratchpad, SRAM buffer).

    Levels are listed innermost (closest to compute) first. `capacity` and
    `bandwidth_bytes_per_cycle` are per instance; `instances` copies exist (one per
    core/SM/PE...). Access energy comes from the technology tables (`qsim.hw.tech`: CACTI fit
    by capacity and port `width_bits`, register files, FPGA BRAM/URAM) at the profile's node;
    a profile may override it per byte or per access of `access_bytes`, only with an
    `energy_source` naming the document the number comes from.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    kind: Literal["sram", "register_file", "bram", "uram"] = "sram"
    capacity: Size
    instances: PosInt = 1
    bandwidth_bytes_per_cycle: PosFloat
    width_bits: PosInt = 64
    read_pj_per_byte: NonNegFloat | None = None
    write_pj_per_byte: NonNegFloat | None = None
    pj_per_access: NonNegFloat | None = None
    access_bytes: PosInt | None = None
    energy_source: Annotated[str, Field(min_length=3)] | None = None
    holds: list[Literal["weights", "inputs", "outputs"]] = Field(default_factory=lambda: list(OPERANDS), min_length=1)

    @model_validator(mode="after")
    def _energy(self):
        if self.name.lower() in ("dram", "compute"):
            raise ValueError(f"memory level name {self.name!r} is reserved; use another name")
        given = [f for f in ("read_pj_per_byte", "write_pj_per_byte", "pj_per_access") if getattr(self, f) is not None]
        if given and not self.energy_source:
            raise ValueError(f"{', '.join(given)} overrides the technology table: add energy_source naming the "
                             f"document (paper, datasheet, URL) the number comes from, or remove it")
        if self.pj_per_access is not None:
            if self.access_bytes is None:
                raise ValueError("pj_per_access needs access_bytes (the bytes one access moves)")
            if self.read_pj_per_byte is None:
                self.read_pj_per_byte = self.pj_per_access / self.access_bytes
        if self.read_pj_per_byte is not None and self.write_pj_per_byte is None:
            self.write_pj_per_byte = self.read_pj_per_byte
        return self


class Overheads(_Strict):
    """Fixed costs per kernel (each unfused layer is one kernel launch / runtime dispatch)."""

    per_kernel_s: NonNegFloat = 0.0
    per_layer_cycles: NonNegInt = 0


FUSABLE = ELEMENTWISE_KINDS + ("max_pool", "avg_pool")


class Sparsity(_Strict):
    """Which forms of sparsity this chip (with its runtime) turns into savings; anything else runs dense.

    `structured`: math speed-up for N:M weights, e.g. {"2:4": 2.0} on sparse tensor cores. `weight_formats`:
    compressed formats the runtime keeps weights in and decodes on the way to the MACs (fewer bytes moved,
    a decode operation per kept value): nm (N:M values + index metadata), bitmask, csr (relative indices).
    `zero_gating`: operands whose zeros skip the MAC and its register-file accesses (Eyeriss: inputs).
    """

    structured: dict[Literal["2:4", "4:8"], Annotated[float, Field(ge=1.0)]] = Field(default_factory=dict)
    weight_formats: list[Literal["nm", "bitmask", "csr"]] = Field(default_factory=list)
    zero_gating: Literal["none", "inputs", "weights", "both"] = "none"

    @model_validator(mode="after")
    def _consistent(self):
        if self.structured and "nm" not in self.weight_formats:
            raise ValueError("structured N:M speed-up needs 'nm' in weight_formats (the kept values and their "
                             "index metadata are what the sparse units read)")
        return self


def _unique_fusion(v: list) -> list:
    dup = sorted({k for k in v if v.count(k) > 1})
    if dup:
        raise ValueError(f"fusion lists {dup} more than once")
    return v


TECH_SOURCE = "qsim technology tables (qsim/data/tech)"


def _dram_kind(v: str) -> str:
    from qsim.hw import tech

    return tech.canonical_memory_kind(v)


class Dram(_Strict):
    """Off-chip memory: DDR/LPDDR/GDDR/HBM. Energy per bit from the technology table for `kind`
    (`qsim.hw.tech.known_memory_kinds()`), unless overridden with an `energy_source`."""

    kind: Annotated[str, AfterValidator(_dram_kind)]
    bandwidth: Bandwidth
    energy_pj_per_bit: NonNegFloat | None = None
    energy_source: Annotated[str, Field(min_length=3)] | None = None
    capacity: Size | None = None

    @model_validator(mode="after")
    def _energy(self):
        from qsim.hw import tech

        if self.energy_pj_per_bit is None:
            self.energy_pj_per_bit = tech.dram_pj_per_bit(self.kind)
            self.energy_source = TECH_SOURCE
        elif not self.energy_source:
            raise ValueError(f"energy_pj_per_bit overrides the {self.kind} entry of the technology table "
                             f"({tech.dram_pj_per_bit(self.kind)} pJ/bit): add energy_source naming its document, "
                             f"or remove it")
        return self


def _level_pj_per_byte(level, node_nm: float, volts, op: str) -> float:
    """Technology-table energy per byte of one memory level (FPGA block RAMs by their own geometry)."""
    from qsim.hw import tech

    if level.kind in ("bram", "uram"):
        return tech.fpga_bram_pj_per_byte("bram18" if level.kind == "bram" else "uram", node_nm, volts, op)
    return float(tech.sram_pj_per_byte(level.capacity, level.width_bits, node_nm, volts, op))


def _node(v: float) -> float:
    from qsim.hw import tech

    lo, hi = tech.node_range()
    if not lo <= v <= hi:
        raise ValueError(f"technology_nm {v:g} is outside the technology tables ({lo:g}–{hi:g} nm)")
    return v


def _check_energy_keys(v: dict) -> dict:
    for key in v:
        if key not in PRECISION_BITS and not _PAIR_RE.match(str(key)):
            raise ValueError(f"mac_energy_pj key {key!r} must be a precision ({', '.join(PRECISIONS)}) "
                             f"or a pair like 'w4a8'")
    return v


class _Core(_Strict):
    """Fields every profile has."""

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    clock: Frequency
    technology_nm: Annotated[PosFloat, AfterValidator(_node)]
    voltage_v: PosFloat | None = None
    static_power: Power = 0.0
    compute_efficiency: Fraction = 1.0
    double_buffering: bool = True
    # Activations (a layer's inputs + outputs) that fit half of the largest on-chip level holding
    # them stay on chip between layers: no DRAM traffic for them. False: every layer goes to DRAM.
    keep_activations_on_chip: bool = True
    # Non-MAC ops the runtime fuses into the producing MAC kernel's epilogue (no traffic or launch
    # of their own; a residual add still reads its second operand). Empty: every op is a kernel.
    fusion: Annotated[list[Literal[FUSABLE]], AfterValidator(_unique_fusion)] = Field(default_factory=list)
    overheads: Overheads = Field(default_factory=Overheads)
    # False: memory never stalls compute (SCALE-Sim's CALC mode sizes bandwidth so); traffic still counted.
    memory_stalls: bool = True
    sparsity: Sparsity = Field(default_factory=Sparsity)
    # What each level's mapping minimises: bytes drawn from the level above, their energy, or their transfer time.
    mapping_objective: Literal["traffic", "energy", "latency"] = "traffic"
    memory: list[MemoryLevel] = Field(default_factory=list)
    dram: Dram
    mac_energy_pj: Annotated[dict[str, NonNegFloat], BeforeValidator(_check_energy_keys)] = Field(default_factory=dict)
    mac_energy_source: Annotated[str, Field(min_length=3)] | None = None
    validation: dict[str, Any] | None = None
    notes: str = ""

    @model_validator(mode="after")
    def _technology(self):
        """Energies not given come from the technology tables at this profile's node and voltage."""
        if self.mac_energy_pj and not self.mac_energy_source:
            raise ValueError("mac_energy_pj overrides the technology table: add mac_energy_source naming its "
                             "document, or remove it")
        for m in self.memory:
            if m.read_pj_per_byte is None:
                m.read_pj_per_byte, m.write_pj_per_byte = (
                    _level_pj_per_byte(m, self.technology_nm, self.voltage_v, op) for op in ("read", "write"))
                m.energy_source = TECH_SOURCE
        return self

    @model_validator(mode="after")
    def _unique_levels(self):
        names = [m.name for m in self.memory]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"memory level names must be unique; repeated: {dup}")
        return self

    @property
    def level_names(self) -> list[str]:
        return [m.name for m in self.memory] + ["dram"]


# --- family sections ---------------------------------------------------------------------
class Instruction(_Strict):
    """One SIMD/matrix instruction path, e.g. AVX-512 VNNI `vpdpbusd` for int8."""

    name: str
    precision: Precision
    macs_per_cycle_per_core: PosFloat


class CpuSimd(_Strict):
    cores: PosInt
    vector_bits: PosInt
    instructions: list[Instruction] = Field(min_length=1)
    register_tile: tuple[PosInt, PosInt] = (6, 16)


class GpuTensorCore(_Strict):
    sms: PosInt
    tensor_macs_per_cycle_per_sm: dict[Precision, PosFloat] = Field(min_length=1)
    mma_tiles: dict[Precision, tuple[PosInt, PosInt, PosInt]] = Field(default_factory=dict)
    cta_tile: tuple[PosInt, PosInt] = (128, 128)
    cuda_fp32_fma_per_cycle_per_sm: PosFloat | None = None


class SystolicArray(_Strict):
    """rows × cols PEs. `variant`: standard (one pe_bits×pe_bits MAC per PE per cycle),
    bit_fusion (each PE is a Fusion Unit of 16 2-bit BitBricks), bit_serial (each PE
    processes `serial_lanes` products one bit (or bit pair) per cycle)."""

    rows: PosInt
    cols: PosInt
    dataflow: Literal["os", "ws", "is"]
    variant: Literal["standard", "bit_fusion", "bit_serial"] = "standard"
    pe_precisions: list[Precision] = Field(default_factory=lambda: ["int8"], min_length=1)
    bitbrick_bits: PosInt = 2
    max_bits: PosInt = 8
    serial_operand: Literal["activations", "both"] = "activations"
    serial_lanes: PosInt = 16
    serial_bits: PosInt = 1
    # double_buffered: the next fold's stationary tile loads while this fold streams (TPU v1's
    # four-tile weight FIFO); exposed: every fold waits `rows` cycles for it (SCALE-Sim).
    weight_load: Literal["exposed", "double_buffered"] = "exposed"


class Fpga(_Strict):
    luts: PosInt
    ffs: NonNegInt = 0
    dsps: PosInt
    bram18: NonNegInt = 0
    uram: NonNegInt = 0
    dsp_type: Literal["dsp48e1", "dsp48e2", "dsp58"] = "dsp48e2"
    macs_per_dsp: dict[Precision, PosFloat] = Field(default_factory=lambda: {"int8": 2.0, "int16": 1.0})
    implementation: Literal["dsp", "lut", "dsp+lut"] = "dsp+lut"
    lut_budget_fraction: Fraction = 0.7
    dsp_budget_fraction: Fraction = 0.9


class CpuProfile(_Core):
    family: Literal["cpu_simd"]
    cpu_simd: CpuSimd


class GpuProfile(_Core):
    family: Literal["gpu_tensor_core"]
    gpu_tensor_core: GpuTensorCore


class SystolicProfile(_Core):
    family: Literal["systolic_array"]
    systolic_array: SystolicArray


class FpgaProfile(_Core):
    family: Literal["fpga"]
    fpga: Fpga


Profile = Annotated[Union[CpuProfile, GpuProfile, SystolicProfile, FpgaProfile], Field(discriminator="family")]
PROFILE_ADAPTER: TypeAdapter = TypeAdapter(Profile)
AnyProfile = Union[CpuProfile, GpuProfile, SystolicProfile, FpgaProfile]


class _CoreAnyFamily(_Core):
    model_config = ConfigDict(extra="ignore")
    family: Any = None


# --- errors ------------------------------------------------------------------------------
class ProfileError(ValueError):
    """All problems found in one profile; `problems` is a list of (field path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s) in hardware profile:"]
        lines += [f"  - {path or '(top level)'}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


def field_path(loc: tuple) -> str:
    """('memory', 1, 'bandwidth_bytes_per_cycle') → 'memory[1].bandwidth_bytes_per_cycle'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += "(key)"
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(err: dict) -> str:
    kind, msg = err["type"], err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (typo?); see `qsim profiles schema` for the allowed fields"
    if kind in ("literal_error", "enum"):
        exp = err.get("ctx", {}).get("expected", "")
        return f"got {err.get('input')!r}; allowed: {exp}"
    if kind == "union_tag_invalid":
        return f"unknown family {err.get('ctx', {}).get('tag')!r}; allowed: {', '.join(FAMILIES)}"
    if kind == "union_tag_not_found":
        return f"required field is missing; allowed: {', '.join(FAMILIES)}"
    if "input" in err and kind not in ("model_type", "dict_type", "list_type", "value_error"):
        return f"{msg} (got {err['input']!r})"
    return msg


def _problems(exc: ValidationError, strip_tag: bool) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if strip_tag and loc and loc[0] in FAMILIES:
            loc = loc[1:]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ("family",)
        out.append((field_path(loc), _message(err)))
    return out


def validate_profile_dict(data: Any, source: str = "<profile>") -> AnyProfile:
    """Validate a parsed YAML mapping; raise one ProfileError listing every problem."""
    if not isinstance(data, dict):
        raise ProfileError(source, [("", f"a profile must be a mapping of fields, got {type(data).__name__}")])
    problems: list[tuple[str, str]] = []
    try:
        return PROFILE_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = _problems(exc, strip_tag=True)
        # Unknown/missing family: still check the common core so every problem shows at once.
        if any(e["type"] in ("union_tag_invalid", "union_tag_not_found") for e in exc.errors()):
            try:
                _CoreAnyFamily.model_validate(data)
            except ValidationError as core_exc:
                problems += _problems(core_exc, strip_tag=False)
    raise ProfileError(source, problems)


def json_schema() -> dict:
    """JSON Schema of a profile file (for editor autocompletion)."""
    schema = PROFILE_ADAPTER.json_schema()
    schema["title"] = "qsim hardware profile"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
