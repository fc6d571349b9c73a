"""Element float formats and the OCP MX v1.0 / NVFP4 block formats.

Element formats
    Each format is one `ElementFormat` record (exponent bits, mantissa bits, bias,
    how specials are encoded, sign encoding); everything else (min subnormal, min and
    max normal, emax, the full grid of levels, the integer level range) is derived from
    it. `FORMATS` holds FP8 E4M3 and E5M2, FP6 E3M2 and E2M3, FP4 E2M1, the MXINT8
    element (8-bit two's complement with an implicit 2^-6) and E4M3 used unsigned
    (NVFP4 block scales). The E8M0 scale format (2^(code-127), 0xFF = NaN, no zero,
    no sign) has its own small set of functions.

    Levels: a value on a format's grid is `L · min_subnormal` with an integer L; the
    magnitude code of the value is the index of |L| in `ElementFormat.levels`. Rounding
    is to nearest, ties to even code (RNE), and saturating: a value beyond the largest
    normal becomes ±max_normal, never Inf/NaN (OCP MX §6.3 "normals saturate"). It is
    exact: with the divisors used here (powers of two, and NVFP4 scales of at most 28
    significant bits) the float64 quotient never crosses a rounding midpoint and equals
    one exactly only at a true tie (proof in `element_levels`).

OCP MX v1.0 (blocks of 32 along `axis`, one E8M0 scale X per block)
    shared_exp = floor(log2(max_i |V_i|)) - emax_elem   (exponent taken with np.frexp)
    shared_exp > 127 -> X = NaN (E8M0 0xFF; the whole block dequantizes to NaN);
    shared_exp < -127 -> -127;  an all-zero block uses amax = 2^-126 (FP32_MIN_NORMAL),
    as microsoft/microxcaling does. P_i = RNE_saturate(V_i / X).
    MXINT8 saturates symmetrically to ±127/64 (microxcaling clamps to ±max_norm), so
    the code 0x80 (-2.0), which the format can hold, is never produced.

    Scale rounding: qsim follows the spec's conversion (§6.3), i.e. the FLOOR of log2 of
    the block max. The spec only says "should"; CUDA/CUTLASS instead round the scale UP
    (`cvt.rp.satfinite.ue8m0x2.f32`, amax / max_normal rounded up to a power of two) so
    the block max never saturates, and torchao offers FLOOR / RCEIL / CEIL / EVEN modes.
    With the floor rule a block max can saturate by up to 1 - max_normal/2^(emax+1)
    (e.g. 12.5 % for E4M3, 25 % for E2M1); results therefore differ from CUTLASS-quantized
    tensors on blocks whose max mantissa exceeds the element format's largest mantissa.

NVFP4 (blocks of 16, E2M1 elements, E4M3 block scale, FP32 tensor scale)
    s_tensor = fl32(amax / (448·6))  (float64 quotient stored as fp32; for fp32 input
               this is the correctly rounded fp32 quotient torchao computes; raised to
               the smallest fp32 subnormal if it underflows while amax > 0; 0 when the
               whole tensor is zero)
    s_block  = round_to_e4m3(block_amax / 6 / s_tensor), RNE, saturating at 448, no lower
               clamp (a block whose scale rounds to 0, i.e. block amax below ~2.2e-6 of
               the tensor amax, quantizes to zeros; torchao's
               NVFP4Tensor clamps it to 2^-6 instead, comfy-kitchen does not)
    element  = RNE_saturate_e2m1(x / (s_block · s_tensor));  x̂ = e2m1 · s_block · s_tensor
    Both roundings are of the exact quotient. torchao computes them in fp32
    (fl32(fl32(block_amax/6)/s_tensor), x / fl32(s_tensor·s_block)), which can land on
    the other side of a tie in rare near-tie cases.
    Known corner: quantize(dequantize(q)) is the identity except for blocks whose scale
    is the E4M3 subnormal 2^-9 or 2^-8 (block amax below ~1.1e-5 of the tensor amax): their
    largest element may be 3 or 4 instead of 6, so the re-derived block scale is smaller.

QTensor layout of a block format
    q       exact integer levels in units of `scale` (e.g. 2·e2m1 for FP4, value·2^9 for
            E4M3, value·64 for MXINT8), smallest signed integer dtype that holds them
    scale   X·min_subnormal (MX) or s_block·s_tensor·0.5 (NVFP4), float64, ONNX blocked
            layout (ceil(D/B) on `axis`, ragged last block allowed)
    storage_bits = elements·bits + blocks·8 (+32 for the NVFP4 tensor scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from qsim.quant.qtensor import QTensor
from qsim.quant.quantize import rows_to_param, slice_rows
from qsim.quant.spec import QuantSpec

SPECIALS = ("none", "fn", "ieee")
ENCODINGS = ("sign_magnitude", "twos_complement")


@dataclass(frozen=True)
class ElementFormat:
    """One element format, as data.

    ebits, mbits  exponent bits and stored mantissa (fraction) bits; ebits = 0 is fixed
                  point: every value is k·2^(1-bias-mbits), k < 2^mbits
    bias          exponent bias
    specials      `none` (every code is a finite number: FP6, FP4, MXINT8), `fn` (only
                  the all-ones magnitude code is NaN, no Inf: E4M3), `ieee` (the top
                  exponent code holds Inf and NaNs: E5M2)
    signed        negative values exist (a sign bit is stored)
    pad_bits      stored bits that carry nothing: E4M3 used unsigned (NVFP4 block scale,
                  PTX `ue4m3`) keeps its always-zero sign bit, so it still costs 8 bits
    encoding      `sign_magnitude` (floats) or `twos_complement` (MXINT8)
    """

    name: str
    ebits: int
    mbits: int
    bias: int
    specials: str = "none"
    signed: bool = True
    pad_bits: int = 0
    encoding: str = "sign_magnitude"
    description: str = ""

    def __post_init__(self):
        if self.specials not in SPECIALS:
            raise ValueError(f"specials must be one of {list(SPECIALS)}, got {self.specials!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {list(ENCODINGS)}, got {self.encoding!r}")

    # -- derived parameters ----------------------------------------------------
    @property
    def bits(self) -> int:
        """Storage bits of one element."""
        return self.pad_bits + int(self.signed) + self.ebits + self.mbits

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal (and of the subnormal binade)."""
        return 1 - self.bias

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value: the level unit of `q`."""
        return float(np.ldexp(1.0, self.emin - self.mbits))

    @property
    def min_normal(self) -> float:
        """Smallest normal (fixed point: the smallest positive value)."""
        return float(np.ldexp(1.0, self.emin)) if self.ebits else self.min_subnormal

    @property
    def max_exponent_code(self) -> int:
        """Largest exponent field that holds finite normals (0 for fixed point)."""
        return (1 << self.ebits) - 1 - (1 if self.specials == "ieee" else 0)

    @cached_property
    def max_level(self) -> int:
        """max_normal / min_subnormal, an integer."""
        m = 1 << self.mbits
        if self.ebits == 0:
            return m - 1
        top_mantissa = m - 1 - (1 if self.specials == "fn" else 0)  # E4M3: S.1111.111 is NaN
        return (m + top_mantissa) << (self.max_exponent_code - 1)

    @property
    def max_normal(self) -> float:
        return float(self.max_level * self.min_subnormal)

    @property
    def emax(self) -> int:
        """floor(log2(max_normal)): the element's largest exponent (OCP `emax_elem`)."""
        return int(np.frexp(self.max_normal)[1]) - 1

    @property
    def qmin(self) -> int:
        return -self.max_level if self.signed else 0

    @property
    def qmax(self) -> int:
        return self.max_level

    @cached_property
    def levels(self) -> np.ndarray:
        """All non-negative levels, ascending; the index of a level is its magnitude code."""
        m = 1 << self.mbits
        subnormal = np.arange(m, dtype=np.int64)
        normal = [(m + np.arange(m, dtype=np.int64)) << (e - 1) for e in range(1, self.max_exponent_code + 1)]
        table = np.concatenate([subnormal, *normal])
        table = table[table <= self.max_level]
        table.setflags(write=False)
        return table

    @cached_property
    def _midpoints(self) -> np.ndarray:
        """Rounding thresholds between consecutive levels, as values (exact in float64)."""
        t = self.levels.astype(np.float64)
        mids = (t[:-1] + t[1:]) * (0.5 * self.min_subnormal)
        mids.setflags(write=False)
        return mids

    @property
    def code_dtype(self):
        """Smallest signed integer dtype holding every level of this format."""
        for dt in (np.int8, np.int16, np.int32):
            if self.max_level <= np.iinfo(dt).max:
                return dt
        return np.int64

    def step_at(self, v) -> np.ndarray:
        """Grid spacing (ulp) at |v|, before saturation: 2^(max(floor(log2|v|), emin) - mbits)."""
        v = np.abs(np.asarray(v, dtype=np.float64))
        e = np.frexp(np.where(v > 0, v, 1.0))[1].astype(np.int64) - 1
        if self.ebits == 0:
            e = np.full_like(e, self.emin)
        return np.ldexp(1.0, np.maximum(e, self.emin) - self.mbits)


FORMATS: dict[str, ElementFormat] = {
    f.name: f
    for f in (
        ElementFormat("e4m3", 4, 3, 7, "fn", description="FP8 E4M3 (OCP FP8, 'e4m3fn'): max 448, no Inf"),
        ElementFormat("e5m2", 5, 2, 15, "ieee", description="FP8 E5M2: IEEE-like, max 57344"),
        ElementFormat("e3m2", 3, 2, 3, description="FP6 E3M2: max 28"),
        ElementFormat("e2m3", 2, 3, 1, description="FP6 E2M3: max 7.5"),
        ElementFormat("e2m1", 2, 1, 1, description="FP4 E2M1: ±{0, .5, 1, 1.5, 2, 3, 4, 6}"),
        # Fixed point (no exponent field): 7 magnitude bits, unit 2^(1-bias-mbits) = 2^-6.
        ElementFormat("int8", 0, 7, 0, encoding="twos_complement",
                      description="MXINT8 element: 8-bit two's complement, implicit 2^-6, max 127/64"),
        ElementFormat("ue4m3", 4, 3, 7, "fn", signed=False, pad_bits=1,
                      description="E4M3 used unsigned (NVFP4 block scale): stored in 8 bits, sign always 0"),
    )
}

# Block scheme -> element format.
BLOCK_ELEMENT = {
    "mxint8": "int8",
    "mxfp8_e4m3": "e4m3",
    "mxfp8_e5m2": "e5m2",
    "mxfp6_e3m2": "e3m2",
    "mxfp6_e2m3": "e2m3",
    "mxfp4": "e2m1",
    "nvfp4": "e2m1",
}

# E8M0 (MX shared scale): value 2^(code - 127), code 0xFF = NaN, no zero, no sign.
E8M0_BIAS = 127
E8M0_MIN_EXP = -127
E8M0_MAX_EXP = 127
E8M0_NAN_CODE = 0xFF
FP32_MIN_NORMAL_EXP = -126  # microxcaling's stand-in amax for an all-zero block
FP32_MIN_SUBNORMAL = 2.0**-149
NVFP4_TENSOR_DIVISOR = 448.0 * 6.0  # max E4M3 block scale × max E2M1 element


def element_format(name) -> ElementFormat:
    """The `ElementFormat` called `name` (or `name` itself if it already is one)."""
    if isinstance(name, ElementFormat):
        return name
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"element format must be one of {sorted(FORMATS)}, got {name!r}") from None


# -- element rounding ----------------------------------------------------------
def element_levels(values, fmt, divisor=1.0) -> np.ndarray:
    """Integer levels L (units of `min_subnormal`) with L·u = RNE_saturate(values / divisor).

    Exact whenever every midpoint between two levels times the divisor is a float64
    number: always for power-of-two divisors, and for divisors of at most 53 - mbits - 3
    significant bits (the NVFP4 divisors have at most 28). Then for a float a that is
    not exactly mid·d, |a/d - mid| exceeds half an ulp of mid, so the correctly rounded
    quotient fl(a/d) lies strictly on the same side of every midpoint as a/d, and
    fl(a/d) == mid exactly when a/d is a tie. (Outside that condition the result can
    differ from exact rounding only within an ulp of a tie.) Entries whose divisor is
    zero or NaN give level 0. Returns int64.
    """
    f = element_format(fmt)
    a = np.asarray(values, dtype=np.float64)
    d = np.asarray(divisor, dtype=np.float64)
    if not f.signed and np.any(a < 0):
        raise ValueError(f"format {f.name!r} is unsigned; got negative values, e.g. {a[a < 0].ravel()[:4]}")
    valid = np.isfinite(d) & (d > 0)
    v = np.abs(a) / np.where(valid, d, 1.0)
    mids = f._midpoints
    i = np.searchsorted(mids, v, side="left")  # mids[i-1] < v <= mids[i]; beyond the last: saturate
    tie = v == mids[np.minimum(i, len(mids) - 1)]
    i += tie & ((i & 1) == 1)  # a tie sits between codes i and i+1: take the even one
    lv = f.levels[i]
    np.negative(lv, out=lv, where=a < 0)
    if not valid.all():
        lv = np.where(valid, lv, 0)
    return np.broadcast_to(lv, np.broadcast_shapes(a.shape, d.shape)).astype(np.int64)


def quantize_elements(values, fmt) -> np.ndarray:
    """Round `values` to the element format `fmt` (RNE, saturating); float64 values."""
    f = element_format(fmt)
    return element_levels(values, f).astype(np.float64) * f.min_subnormal


def round_to_e4m3(values) -> np.ndarray:
    """Round to FP8 E4M3 (RNE, saturating at ±448); float64 values."""
    return quantize_elements(values, "e4m3")


# -- bit patterns ----------------------------------------------------------------
def decode(codes, fmt) -> np.ndarray:
    """Values (float64) of raw bit patterns in format `fmt` (NaN/Inf where the format has them)."""
    f = element_format(fmt)
    c = np.asarray(codes, dtype=np.int64)
    n_codes = 1 << (f.bits - f.pad_bits)
    if np.any(c < 0) or np.any(c >= n_codes):
        raise ValueError(f"codes of format {f.name!r} must lie in [0, {n_codes - 1}]")
    u = f.min_subnormal
    if f.encoding == "twos_complement":
        return np.where(c >= 1 << (f.bits - 1), c - (1 << f.bits), c).astype(np.float64) * u
    mag_bits = f.ebits + f.mbits
    mag = c & ((1 << mag_bits) - 1)
    negative = (c >> mag_bits) & 1 if f.signed else np.zeros_like(c)
    e, m = mag >> f.mbits, mag & ((1 << f.mbits) - 1)
    level = np.where(e == 0, m, ((1 << f.mbits) + m) << np.maximum(e - 1, 0))
    out = level.astype(np.float64) * u
    if f.specials == "fn":
        out = np.where(mag == (1 << mag_bits) - 1, np.nan, out)
    elif f.specials == "ieee":
        top = e == (1 << f.ebits) - 1
        out = np.where(top, np.where(m == 0, np.inf, np.nan), out)
    return np.where(negative == 1, -out, out)


def encode(values, fmt) -> np.ndarray:
    """Bit patterns (int64) of `values` rounded to `fmt` (RNE, saturating). -0.0 keeps its sign bit."""
    f = element_format(fmt)
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"encode takes finite values, got {int((~np.isfinite(a)).sum())} NaN/Inf")
    lv = element_levels(a, f)
    if f.encoding == "twos_complement":
        return lv & ((1 << f.bits) - 1)
    code = np.searchsorted(f.levels, np.abs(lv))
    if f.signed:
        code = code | (np.signbit(a).astype(np.int64) << (f.bits - 1))
    return code.astype(np.int64)


# -- E8M0 ------------------------------------------------------------------------
def floor_log2(values) -> np.ndarray:
    """floor(log2(v)) of positive floats, exact (np.frexp, no float log2)."""
    return np.frexp(np.asarray(values, dtype=np.float64))[1].astype(np.int64) - 1


def round_to_e8m0(values, mode: str = "floor") -> np.ndarray:
    """Round positive values to E8M0 (a power of two in [2^-127, 2^127]); float64.

    mode `floor` (the OCP conversion's rounding) or `ceil` (CUDA/CUTLASS `cvt.rp`).
    Below 2^-127 (and 0) saturates to 2^-127; above 2^127 gives NaN (code 0xFF).
    """
    if mode not in ("floor", "ceil"):
        raise ValueError(f"mode must be 'floor' or 'ceil', got {mode!r}")
    v = np.asarray(values, dtype=np.float64)
    if np.any(v < 0) or np.any(np.isnan(v)):
        raise ValueError("E8M0 holds positive powers of two; values must be >= 0 and not NaN")
    pos = v > 0
    e = floor_log2(np.where(pos & np.isfinite(v), v, 1.0))
    if mode == "ceil":
        e = e + (np.ldexp(1.0, e) < v)
    e = np.where(pos, e, E8M0_MIN_EXP)
    over = (e > E8M0_MAX_EXP) | np.isinf(v)
    return np.where(over, np.nan, np.ldexp(1.0, np.maximum(e, E8M0_MIN_EXP)))


def encode_e8m0(scales) -> np.ndarray:
    """E8M0 codes (uint8) of scales that are powers of two in range, or NaN (0xFF)."""
    s = np.asarray(scales, dtype=np.float64)
    nan = np.isnan(s)
    mant, e = np.frexp(np.where(nan, 1.0, s))
    e = e.astype(np.int64) - 1
    if np.any(~nan & ((mant != 0.5) | (e < E8M0_MIN_EXP) | (e > E8M0_MAX_EXP))):
        raise ValueError("E8M0 scales must be powers of two in [2^-127, 2^127] (or NaN)")
    return np.where(nan, E8M0_NAN_CODE, e + E8M0_BIAS).astype(np.uint8)


def decode_e8m0(codes) -> np.ndarray:
    """Values 2^(code - 127) of E8M0 codes; 0xFF is NaN."""
    c = np.asarray(codes, dtype=np.int64)
    if np.any(c < 0) or np.any(c > 0xFF):
        raise ValueError("E8M0 codes must lie in [0, 255]")
    return np.where(c == E8M0_NAN_CODE, np.nan, np.ldexp(1.0, c - E8M0_BIAS))


def mx_shared_exponent(amax, fmt) -> np.ndarray:
    """OCP MX §6.3 shared exponent per block: floor(log2(amax)) - emax_elem, clamped.

    amax = 0 uses 2^-126 (FP32_MIN_NORMAL); below -127 clamps to -127; above 127 gives
    NaN (the E8M0 NaN scale). float64 (for the NaN).
    """
    f = element_format(fmt)
    a = np.asarray(amax, dtype=np.float64)
    e = np.where(a > 0, floor_log2(np.where(a > 0, a, 1.0)), FP32_MIN_NORMAL_EXP) - f.emax
    return np.where(e > E8M0_MAX_EXP, np.nan, np.maximum(e, E8M0_MIN_EXP).astype(np.float64))


# -- block quantization ---------------------------------------------------------------
def nvfp4_tensor_scale(amax: float) -> float:
    """fl32(amax / (448·6)); the smallest fp32 subnormal if that underflows; 0 for amax = 0."""
    amax = float(amax)
    if amax == 0.0:
        return 0.0
    s = amax / NVFP4_TENSOR_DIVISOR
    if s >= float(np.finfo(np.float32).max):
        raise ValueError(
            f"NVFP4 needs amax/2688 to fit an fp32 tensor scale; |x| reaches {amax:.3g} (limit about 9.1e41)"
        )
    return max(float(np.float32(s)), FP32_MIN_SUBNORMAL)


def _rows_to_tensor(rows: np.ndarray, shape, axis: int) -> np.ndarray:
    """Inverse of `slice_rows` for blocked rows: drop the padding, restore the layout."""
    moved = tuple(np.delete(np.array(shape), axis)) + (-1,)
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved)[..., : shape[axis]], -1, axis))


def quantize_block(x: np.ndarray, spec: QuantSpec, axis: int) -> QTensor:
    """Quantize `x` to an MX or NVFP4 block format along `axis` (see the module docstring)."""
    if spec.scheme not in BLOCK_ELEMENT:
        raise ValueError(f"scheme must be one of {sorted(BLOCK_ELEMENT)}, got {spec.scheme!r}")
    if spec.rounding != "nearest_even":
        raise ValueError(
            f"block formats round to nearest even (OCP MX §6.3, NVFP4); rounding {spec.rounding!r} is not "
            f"supported for scheme {spec.scheme!r}"
        )
    fmt = FORMATS[BLOCK_ELEMENT[spec.scheme]]
    block = spec.group_size
    rows = slice_rows(x, "group", axis, block)  # one block per row, ragged blocks NaN-padded
    amax_rows = np.nanmax(np.abs(rows), axis=1).astype(np.float64)
    tensor_scale = None
    if spec.scheme == "nvfp4":
        tensor_scale = nvfp4_tensor_scale(np.max(amax_rows))
        # Block scale: E4M3 of block_amax / (6·s_tensor), rounded once from the exact quotient.
        s_block = element_levels(amax_rows, "ue4m3", 6.0 * tensor_scale) * FORMATS["ue4m3"].min_subnormal
        divisor_rows = s_block * tensor_scale  # exact: 4 × 24 significant bits
    else:
        shared_exp = mx_shared_exponent(amax_rows, fmt)
        divisor_rows = np.where(np.isnan(shared_exp), np.nan, np.ldexp(1.0, np.nan_to_num(shared_exp).astype(np.int64)))
    q_rows = element_levels(rows, fmt, divisor_rows[:, None]).astype(fmt.code_dtype)
    q = _rows_to_tensor(q_rows, x.shape, axis)
    scale = np.asarray(rows_to_param(divisor_rows * fmt.min_subnormal, x.shape, "group", axis, block), np.float64)
    return QTensor(
        q=q, scale=scale, zero_point=np.zeros(scale.shape, dtype=np.int64), spec=spec, axis=axis,
        qmin=fmt.qmin, qmax=fmt.qmax, tensor_scale=tensor_scale,
    )
