"""`QuantSpec`: one frozen object for every quantization option.

Fields are validated on construction, so a bad spec fails where it is written,
with the field name and the allowed values, not deep inside a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

UNIFORM_SCHEMES = ("affine", "symmetric")
NONUNIFORM_SCHEMES = ("pow2", "binary", "ternary", "kmeans")
# Block formats: element bits and block size are fixed by the format.
BLOCK_FORMATS = {
    # name: (element bits, block size)
    "mxint8": (8, 32),
    "mxfp8_e4m3": (8, 32),
    "mxfp8_e5m2": (8, 32),
    "mxfp6_e3m2": (6, 32),
    "mxfp6_e2m3": (6, 32),
    "mxfp4": (4, 32),
    "nvfp4": (4, 16),
}
SCHEMES = UNIFORM_SCHEMES + NONUNIFORM_SCHEMES + tuple(BLOCK_FORMATS)
GRANULARITIES = ("tensor", "channel", "group", "global")
ROUNDINGS = ("nearest_even", "half_away", "stochastic")
CALIBRATIONS = ("minmax", "moving_average", "percentile", "mse", "entropy")
# Storage bits of one scale value per scale format.
SCALE_DTYPES = {"fp32": 32, "fp16": 16, "bf16": 16, "pow2": 8, "e8m0": 8, "e4m3": 8}


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize one tensor.

    bits        element bits, 1–16 (block formats fix their own; leave the default)
    signed      signed or unsigned integer range (uniform schemes)
    scheme      one of `SCHEMES`
    restricted  symmetric only: narrow range [-(2^(b-1)-1), 2^(b-1)-1] (TensorRT weights)
    granularity `tensor`, `channel` (along `axis`), `group` (blocks of `group_size`
                along the reduction axis) or `global` (one range shared by a whole model)
    group_size  block length for `group` (block formats set it themselves)
    rounding    `nearest_even` (ONNX), `half_away` (TFLite), `stochastic` (seeded, unbiased)
    calibration observer that turns data into a range (see `qsim.quant.calibration`)
    percentile  the percentile observer's p (default 99.99)
    scale_dtype storage format of each scale: fp32, fp16, bf16, pow2 (a power of two,
                i.e. a shift), e8m0 (MX), e4m3 (NVFP4 block scales)
    seed        seed of stochastic rounding
    """

    bits: int = 8
    signed: bool = True
    scheme: str = "symmetric"
    restricted: bool = False
    granularity: str = "tensor"
    group_size: int | None = None
    rounding: str = "nearest_even"
    calibration: str = "minmax"
    percentile: float = 99.99
    scale_dtype: str = "fp32"
    seed: int = 0

    def __post_init__(self):
        _choice("scheme", self.scheme, SCHEMES)
        _choice("granularity", self.granularity, GRANULARITIES)
        _choice("rounding", self.rounding, ROUNDINGS)
        _choice("calibration", self.calibration, CALIBRATIONS)
        _choice("scale_dtype", self.scale_dtype, SCALE_DTYPES)
        if not isinstance(self.bits, int) or isinstance(self.bits, bool):
            raise TypeError(f"bits must be an int in 1..16, got {self.bits!r}")
        if not isinstance(self.signed, bool):
            raise TypeError(f"signed must be True or False, got {self.signed!r}")
        if self.scheme in BLOCK_FORMATS:
            bits, block = BLOCK_FORMATS[self.scheme]
            scale = "e4m3" if self.scheme == "nvfp4" else "e8m0"
            # The format fixes bits, block and scale format; fill them in.
            object.__setattr__(self, "bits", bits)
            object.__setattr__(self, "group_size", block if self.group_size is None else self.group_size)
            object.__setattr__(self, "granularity", "group")
            object.__setattr__(self, "scale_dtype", scale)
            object.__setattr__(self, "signed", True)
            if self.group_size != block:
                raise ValueError(f"group_size of scheme {self.scheme!r} must be {block}, got {self.group_size!r}")
        if not 1 <= self.bits <= 16:
            raise ValueError(f"bits must be in 1..16, got {self.bits}")
        if self.granularity == "group":
            if self.group_size is None:
                raise ValueError("granularity 'group' needs group_size (a positive integer)")
        if self.group_size is not None and (
            not isinstance(self.group_size, int) or isinstance(self.group_size, bool) or self.group_size < 1
        ):
            raise ValueError(f"group_size must be a positive integer, got {self.group_size!r}")
        # binary and ternary fix their own code width, like the block formats.
        if self.scheme == "binary":
            object.__setattr__(self, "bits", 1)
        if self.scheme == "ternary":
            object.__setattr__(self, "bits", 2)
        if self.scheme == "symmetric" and self.restricted and self.signed and self.bits < 2:
            raise ValueError("symmetric restricted range needs bits >= 2 (1 bit leaves no non-zero level)")
        if self.scheme == "pow2" and self.signed and self.bits < 2:
            raise ValueError("scheme 'pow2' needs bits >= 2 when signed (one sign bit plus the exponent code)")
        if self.scheme not in BLOCK_FORMATS and self.scale_dtype in ("e8m0", "e4m3"):
            raise ValueError(
                f"scale_dtype {self.scale_dtype!r} belongs to the block formats; use fp32, fp16, bf16 or pow2 "
                f"with scheme {self.scheme!r}"
            )
        if not 0.0 < float(self.percentile) <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile!r}")

    @property
    def is_block_format(self) -> bool:
        return self.scheme in BLOCK_FORMATS

    @property
    def scale_bits(self) -> int:
        return SCALE_DTYPES[self.scale_dtype]

    @property
    def qrange(self) -> tuple[int, int]:
        """Integer code range of the uniform schemes."""
        b = self.bits
        if not self.signed:
            return 0, (1 << b) - 1
        if self.restricted and self.scheme == "symmetric":
            return -((1 << (b - 1)) - 1), (1 << (b - 1)) - 1
        return -(1 << (b - 1)), (1 << (b - 1)) - 1

    def replace(self, **changes) -> "QuantSpec":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown QuantSpec field(s) {sorted(unknown)}; fields are {[f.name for f in fields(self)]}")
        return replace(self, **changes)

    def label(self) -> str:
        """Short human label, e.g. `int4-symmetric-group32`."""
        if self.is_block_format:
            return self.scheme
        g = f"group{self.group_size}" if self.granularity == "group" else self.granularity
        return f"{'int' if self.signed else 'uint'}{self.bits}-{self.scheme}-{g}"
