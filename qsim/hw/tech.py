"""Technology tables: energy per operation, per SRAM access, per DRAM bit, node scaling, FPGA fabric, static power.

One sourced table per technology (issue 10), kept as data in ``qsim/data/tech/*.yaml``; every number there is an
entry ``{value, source}`` whose source text carries a mark as in the profiles: ``[C]`` checked against the named
source, ``[D]`` derived by the stated arithmetic, ``[U]`` unconfirmed. This module is the API over those tables.

Arithmetic (``mac.yaml``)
    integer multiplier  E_mul(b_w, b_a) = k_mul · b_w · b_a          (pJ at the source's node and voltage)
    integer adder       E_add(b)        = k_add · b                   (charged at the accumulator width)
    integer MAC         E_mul(b_w, b_a) + E_add(b_acc)
    The product rule is Bit Fusion's bit-level argument (partial products ∝ b_w·b_a) and is exactly what
    hwcomponents' AladdinMultiplier does for mixed widths; the adder is linear in width (ripple/carry chain).

    Two named fits of (k_mul, k_add) at 45 nm:
    * ``"horowitz"`` (default): k_mul fitted to Horowitz ISSCC 2014 int8/int32 multiplies (0.2 / 3.1 pJ, within 3 %),
      k_add = QKeras QTools' 0.003125 pJ/bit. Chosen because it is a published table of energies at a stated node
      and voltage (45 nm, 0.9 V) that the accelerator literature calibrates against (QKeras QTools, Eyeriss and
      Bit Fusion energy arguments), and it is the only source of the float numbers below, so int and float MACs come
      from one table. It also matches the scale of ZigZag's tpu_like MAC (0.04 pJ int8 MAC at an unstated node).
    * ``"aladdin"``: hwcomponents 1.0.114 / Aladdin (40 nm synthesis, scaled to 45 nm), committed in
      ``tests/data/hwcomponents/energies_45nm.json``: 4.7× Horowitz for multiplies, 2.4× for adds. Kept for the
      comparison the validation table makes (issue 10, deliverable 4).

    Float (Horowitz 45 nm): fp16 mult 1.1, fp32 mult 3.7, fp16 add 0.4, fp32 add 0.9 pJ. Other float multiplies
    scale from fp16 by the product of significand bits (incl. the implicit 1): E = 1.1 · s_w·s_a / 11² (so a
    square format scales by significand bits²; fp8 E4M3 s=4, E5M2 s=3, bf16 s=8, tf32 s=11); fp32×fp32 uses the
    measured 3.7. An integer operand of a mixed float MAC counts its bit width as significand bits. Float MACs
    accumulate with an fp32 add (acc_bits 32) or an fp16 add (acc_bits 16).

Memories (``sram.yaml``, ``dram.yaml``)
    SRAM: a log-space fit to CACTI 7 (hwcomponents-cacti, 45 nm) of energy per access in capacity and width,
    ln E = c0 + c1·x + c2·w + c3·x·w with x = log2(C / 1 KiB), w = log2(width / 64). Register files (≤ 512 B):
    a power law in capacity through ZigZag tpu_like's rf_2B and rf_128B; 512 B–1 KiB interpolated.
    DRAM: one pJ/bit per memory kind (see ``known_memory_kinds()``).

Node and voltage (``nodes.yaml``)
    Stillmaker & Baas 2017 polynomials E ∝ aV² + bV + c at 130…7 nm (as tabulated in hwcomponents), interpolated
    linearly in nm between tabulated nodes; below 7 nm the documented extrapolation E(7 nm)·√(n/7) (hwcomponents'
    rule, [U]) down to 1 nm; above 130 nm or below 1 nm a ``ValueError``. Reference point of every 45 nm table:
    45 nm, 0.9 V. ``qsim.hw.energy.node_scale`` is this same function.

FPGA fabric (``fpga.yaml``)
    No checked per-operation FPGA measurement was found, so fabric energies are derived from the ASIC tables:
    LUT MAC = Kuon & Rose's FPGA/ASIC dynamic-power gap (14×, TCAD 2007) × the ASIC MAC; DSP MAC = one DSP48E2
    27×18 multiply + 48-bit add at the ASIC rule × XPE's toggle factor for the width used, ÷ MACs packed per DSP;
    BRAM18 / URAM = the CACTI fit for that block's capacity and port width. All at the FPGA's node (16 nm, 0.85 V).

Static power (``static_power.yaml``)
    A proposed idle/static power per shipped profile with its basis and source (for the lead to copy into the
    profiles); ``static_power_w(profile)``.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "tech"
REF_NM = 45.0
REF_V = 0.9
INT_MAX_BITS = 32          # Horowitz's int table reaches 32 bits; the range is 1–16
FLOAT_FORMATS = ("fp8", "fp8_e5m2", "fp16", "bf16", "tf32", "fp32")
MAC_SOURCES = ("horowitz", "aladdin")


# --- data ----------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def load_table(name: str) -> dict:
    """The parsed YAML table ``qsim/data/tech/<name>.yaml``."""
    if not (DATA_DIR / f"{name}.yaml").is_file():
        raise ValueError(f"unknown technology table {name!r}; known: {', '.join(table_names())}")
    with open(DATA_DIR / f"{name}.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def table_names() -> tuple[str, ...]:
    """Names of the shipped tables (``qsim/data/tech/*.yaml`` stems)."""
    return tuple(sorted(p.stem for p in DATA_DIR.glob("*.yaml")))


def _v(entry: Any) -> Any:
    """The value of a ``{value, source}`` entry."""
    return entry["value"]


def iter_entries(node: Any, path: str = ""):
    """Yield (path, entry) for every ``{value, source}`` entry and (path, number) for every bare number."""
    if isinstance(node, dict):
        if "value" in node:
            yield path, node
            return
        for k, v in node.items():
            yield from iter_entries(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from iter_entries(v, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


# --- node and voltage scaling ----------------------------------------------------------------------------------------
def _node_table() -> tuple[np.ndarray, np.ndarray]:
    polys = load_table("nodes")["polynomials"]
    nodes = np.array(sorted(float(n) for n in polys))
    coef = np.array([_v(polys[int(n)]) for n in nodes], dtype=float)
    return nodes, coef


def tabulated_nodes() -> tuple[int, ...]:
    """Nodes (nm) with their own Stillmaker & Baas polynomial."""
    return tuple(int(n) for n in _node_table()[0])


def known_nodes() -> tuple[int, ...]:
    """Process nodes (nm) a profile may name, largest first: tabulated, interpolated and extrapolated (< 7 nm, [U])."""
    return tuple(sorted(_v(load_table("nodes")["named_nodes"]), reverse=True))


def node_range() -> tuple[float, float]:
    """(smallest, largest) node in nm that ``node_scale`` accepts."""
    t = load_table("nodes")
    return float(_v(t["extrapolation_below_7nm"]["min_node_nm"])), float(_node_table()[0].max())


def node_kind(node_nm: float) -> str:
    """'tabulated', 'interpolated' or 'extrapolated' (below the smallest tabulated node); ValueError outside."""
    _check_node(node_nm)
    nodes = _node_table()[0]
    if float(node_nm) in nodes:
        return "tabulated"
    return "extrapolated" if node_nm < nodes.min() else "interpolated"


def _check_node(node_nm: float) -> None:
    lo, hi = node_range()
    if not isinstance(node_nm, (int, float, np.integer, np.floating)) or not (lo <= float(node_nm) <= hi):
        raise ValueError(f"technology node {node_nm!r} nm is outside the supported range {lo:g}–{hi:g} nm "
                         f"(Stillmaker & Baas tables 7–130 nm, extrapolated ∝ √node below 7 nm); "
                         f"named nodes: {', '.join(str(n) for n in known_nodes())}")


def default_volts(node_nm: float) -> float:
    """Supply assumed when a profile gives none (qsim's existing convention, [U] away from 45 nm)."""
    d = load_table("nodes")["default_volts"]
    if node_nm >= 28:
        return float(_v(d["at_or_above_28nm"]))
    return float(_v(d["above_7nm"]) if node_nm > 7 else _v(d["at_or_below_7nm"]))


def _energy_factor(node_nm: float, volts: float) -> float:
    nodes, coef = _node_table()
    vv = np.array([volts * volts, volts, 1.0])
    vals = coef @ vv
    n = float(node_nm)
    if n < nodes.min():
        return float(vals[0]) * math.sqrt(n / nodes.min())
    return float(np.interp(n, nodes, vals))


def node_scale(node_nm: float, volts: float | None = None, ref_nm: float = REF_NM, ref_v: float = REF_V) -> float:
    """Energy factor from (ref_nm, ref_v) to (node_nm, volts): Stillmaker & Baas 2017 (see module docstring).

    ``volts=None`` takes ``default_volts(node_nm)``. Raises ``ValueError`` for a node outside ``node_range()`` or a
    non-positive voltage.
    """
    _check_node(node_nm)
    _check_node(ref_nm)
    v = default_volts(node_nm) if volts is None else float(volts)
    if v <= 0 or ref_v <= 0:
        raise ValueError(f"supply voltage must be > 0 V, got {v!r} / {ref_v!r}")
    return _energy_factor(node_nm, v) / _energy_factor(ref_nm, ref_v)


def _scale_from(src_nm: float, src_v: float, node_nm: float, volts: float | None) -> float:
    if float(node_nm) == float(src_nm) and volts is None:
        return 1.0
    return node_scale(node_nm, volts, ref_nm=src_nm, ref_v=src_v)


# --- arithmetic ----------------------------------------------------------------------------------------------------
def _int_source(source: str) -> dict:
    if source not in MAC_SOURCES:
        raise ValueError(f"unknown MAC energy source {source!r}; known: {', '.join(MAC_SOURCES)}")
    return load_table("mac")["int"][source]


def _check_int_bits(name: str, bits: np.ndarray, hi: int = INT_MAX_BITS) -> None:
    if np.any(bits < 1) or np.any(bits > hi) or np.any(bits != np.round(bits)):
        raise ValueError(f"{name} must be whole numbers of bits in 1..{hi}, got {bits.tolist()!r}")


def int_mul_pj(w_bits, a_bits, node_nm: float = REF_NM, volts: float | None = None, source: str = "horowitz"):
    """Integer multiply energy (pJ) = k_mul · b_w · b_a at the node; NumPy arrays broadcast."""
    s = _int_source(source)
    w, a = np.asarray(w_bits, dtype=float), np.asarray(a_bits, dtype=float)
    _check_int_bits("w_bits", w)
    _check_int_bits("a_bits", a)
    k = _v(s["k_mul_pj"]) * _scale_from(_v(s["node_nm"]), _v(s["volts"]), node_nm, volts)
    return _out(k * w * a)


def int_add_pj(bits, node_nm: float = REF_NM, volts: float | None = None, source: str = "horowitz"):
    """Integer add energy (pJ) = k_add · bits at the node; NumPy arrays broadcast."""
    s = _int_source(source)
    b = np.asarray(bits, dtype=float)
    _check_int_bits("adder bits", b, hi=128)
    k = _v(s["k_add_pj"]) * _scale_from(_v(s["node_nm"]), _v(s["volts"]), node_nm, volts)
    return _out(k * b)


def _significand(fmt: str, bits) -> np.ndarray:
    if fmt == "int":
        b = np.asarray(bits, dtype=float)
        _check_int_bits("int operand bits", b)
        return b
    sig = load_table("mac")["float"]["significand_bits"]
    if fmt not in sig:
        raise ValueError(f"unknown number format {fmt!r}; known: int, {', '.join(sig)}")
    return np.asarray(float(_v(sig[fmt])))


def float_mul_pj(w_format: str, a_format: str, w_bits=None, a_bits=None, node_nm: float = REF_NM,
                 volts: float | None = None):
    """Float (or mixed int×float) multiply energy (pJ): Horowitz fp16 1.1 pJ × s_w·s_a/11², fp32×fp32 3.7 pJ."""
    f = load_table("mac")["float"]
    scale = _scale_from(_v(f["node_nm"]), _v(f["volts"]), node_nm, volts)
    if w_format == a_format == "fp32":
        e = np.asarray(float(_v(f["fp32_mul"])))
    else:
        sw, sa = _significand(w_format, w_bits), _significand(a_format, a_bits)
        s16 = float(_v(f["significand_bits"]["fp16"]))
        e = float(_v(f["fp16_mul"])) * sw * sa / (s16 * s16)
    return _out(e * scale)


def float_add_pj(acc_bits=32, node_nm: float = REF_NM, volts: float | None = None):
    """Float add energy (pJ) at the accumulator width: 32 → Horowitz fp32 add 0.9, 16 → fp16 add 0.4."""
    f = load_table("mac")["float"]
    acc = np.asarray(acc_bits, dtype=float)
    if not np.all(np.isin(acc, (16.0, 32.0))):
        raise ValueError(f"float accumulation is fp16 (acc_bits=16) or fp32 (acc_bits=32), got {acc.tolist()!r}")
    scale = _scale_from(_v(f["node_nm"]), _v(f["volts"]), node_nm, volts)
    return _out(np.where(acc == 32.0, float(_v(f["fp32_add"])), float(_v(f["fp16_add"]))) * scale)


def mac_pj(w_bits, a_bits, acc_bits=32, w_format: str = "int", a_format: str = "int", node_nm: float = REF_NM,
           volts: float | None = None, source: str = "horowitz"):
    """Energy (pJ) of one multiply-accumulate: a (w_bits × a_bits) multiply plus an add at the accumulator width.

    Both formats ``"int"``: integer rule of ``source`` (``"horowitz"`` default, or ``"aladdin"``).
    Either format a float (fp8, fp8_e5m2, fp16, bf16, tf32, fp32): Horowitz float rule (``source`` ignored), the
    float operand's bits come from its format. Scaled from the source's node/voltage to (node_nm, volts).
    Arrays broadcast; a scalar input gives a float.
    """
    if w_format == "int" and a_format == "int":
        return _out(np.asarray(int_mul_pj(w_bits, a_bits, node_nm, volts, source))
                    + np.asarray(int_add_pj(acc_bits, node_nm, volts, source)))
    mul = np.asarray(float_mul_pj(w_format, a_format, w_bits, a_bits, node_nm, volts))
    add = np.asarray(float_add_pj(acc_bits, node_nm, volts))
    shape = np.broadcast_shapes(np.shape(w_bits) if w_bits is not None else (), np.shape(a_bits)
                                if a_bits is not None else (), np.shape(acc_bits))
    return _out(np.broadcast_to(mul + add, shape) if shape else mul + add)


def _out(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


# --- SRAM and register files ----------------------------------------------------------------------------------------
def _cacti_access_pj(cap, width, op):
    c = load_table("sram")["cacti"][op]["value"]
    x, w = np.log2(cap / 1024.0), np.log2(width / 64.0)
    return np.exp(c[0] + c[1] * x + c[2] * w + c[3] * x * w)


def _rf_pj_per_byte(cap):
    r = load_table("sram")["register_file"]
    return _v(r["rf_128B_pj_per_byte"]) * (cap / 128.0) ** _v(r["exponent"])


def sram_pj_per_access(capacity_bytes, width_bits=64, node_nm: float = REF_NM, volts: float | None = None,
                       op: str = "read"):
    """Energy (pJ) of one ``width_bits`` access to an SRAM/register file of ``capacity_bytes``."""
    w = np.asarray(width_bits, dtype=float)
    return _out(np.asarray(sram_pj_per_byte(capacity_bytes, width_bits, node_nm, volts, op)) * w / 8.0)


def sram_pj_per_byte(capacity_bytes, width_bits=64, node_nm: float = REF_NM, volts: float | None = None,
                     op: str = "read"):
    """Energy (pJ) per byte moved through an on-chip SRAM or register file, by capacity, port width and node.

    ≥ 1 KiB: CACTI 7 fit (45 nm) of energy per ``width_bits`` access ÷ bytes per access. ≤ 512 B: register-file
    power law through ZigZag tpu_like's rf_2B / rf_128B (per byte, independent of width, read = write). Between:
    log-log interpolation in capacity. Outside 1 KiB–1 MiB or widths 32–256 bits the CACTI fit extrapolates.
    """
    if op not in ("read", "write"):
        raise ValueError(f"op must be 'read' or 'write', got {op!r}")
    cap = np.asarray(capacity_bytes, dtype=float)
    w = np.asarray(width_bits, dtype=float)
    if np.any(cap <= 0) or np.any(w <= 0):
        raise ValueError(f"capacity_bytes and width_bits must be > 0, got {cap.tolist()!r}, {w.tolist()!r}")
    t = load_table("sram")
    rf_max = float(_v(t["register_file"]["max_bytes"]))
    lo = float(_v(t["cacti"]["fit_range_bytes"])[0])
    cacti = _cacti_access_pj(np.maximum(cap, lo), w, op) / (w / 8.0)
    rf = _rf_pj_per_byte(np.minimum(cap, rf_max))
    t_mix = np.clip((np.log2(cap) - math.log2(rf_max)) / (math.log2(lo) - math.log2(rf_max)), 0.0, 1.0)
    e = np.exp((1 - t_mix) * np.log(rf) + t_mix * np.log(cacti))
    c = t["cacti"]
    scale = _scale_from(_v(c["node_nm"]), _v(c["volts"]), node_nm, volts)
    return _out(e * scale)


# --- DRAM ----------------------------------------------------------------------------------------------------------
def known_memory_kinds() -> tuple[str, ...]:
    """DRAM kinds with a pJ/bit entry (canonical spelling)."""
    return tuple(load_table("dram")["kinds"])


_KIND_SUFFIX = re.compile(r"^(?P<kind>[A-Za-z0-9]+?)(?:-\d+[A-Za-z]*)?(?:\s*[x×]\s*\d+)?$")


def canonical_memory_kind(kind: str) -> str:
    """The canonical kind for a profile's spelling: case-insensitive, a speed grade ('DDR4-3200') and a channel
    count ('x4') are allowed. Raises ``ValueError`` naming the known kinds."""
    kinds = known_memory_kinds()
    m = _KIND_SUFFIX.match(str(kind).strip()) if isinstance(kind, str) else None
    base = m.group("kind").upper() if m else None
    if base not in kinds:
        raise ValueError(f"unknown DRAM kind {kind!r}; known: {', '.join(kinds)} "
                         f"(optionally with a speed grade, e.g. 'DDR4-3200', and a channel count, e.g. 'x4')")
    return base


def dram_pj_per_bit(kind: str) -> float:
    """Energy per bit transferred to/from off-chip DRAM of ``kind`` (pJ/bit); ``ValueError`` for an unknown kind."""
    return float(_v(load_table("dram")["kinds"][canonical_memory_kind(kind)]))


def dram_source(kind: str) -> str:
    """The source text of ``dram_pj_per_bit(kind)``."""
    return load_table("dram")["kinds"][canonical_memory_kind(kind)]["source"]


# --- FPGA fabric ---------------------------------------------------------------------------------------------------
FPGA_MAC_KINDS = ("dsp", "lut")
FPGA_RAM_KINDS = ("bram18", "uram")


def _fpga_defaults(node_nm, volts):
    b = load_table("fpga")["bram"]
    node = _v(b["default_node_nm"]) if node_nm is None else node_nm
    if volts is None and node_nm is None:
        volts = _v(b["default_volts"])
    return node, volts


def fpga_mac_pj(kind: str, w_bits, a_bits, node_nm: float | None = None, volts: float | None = None,
                acc_bits=None, macs_per_op=None):
    """Energy (pJ) of one w_bits × a_bits integer MAC on FPGA fabric (``fpga.yaml``; derived, see its sources).

    ``kind="lut"``: Kuon & Rose's FPGA/ASIC dynamic-power gap (14×) × the Horowitz ASIC MAC at the node, accumulator
    ``acc_bits`` (default w_bits + a_bits + 8). ``kind="dsp"``: one DSP48E2 operation (27×18 multiply + 48-bit add at
    the ASIC rule, × XPE's toggle factor for the width used: 18×18 → 0.86, 12×12 → 0.8) divided by the MACs it does
    (2 for int8×int8 packing, else 1; ``macs_per_op`` overrides, e.g. a profile's ``macs_per_dsp``); operands wider than 27×18 raise ``ValueError``. Default node/voltage:
    UltraScale+ 16 nm, 0.85 V. Arrays broadcast.
    """
    f = load_table("fpga")
    node, volts = _fpga_defaults(node_nm, volts)
    w, a = np.asarray(w_bits, dtype=float), np.asarray(a_bits, dtype=float)
    if kind == "lut":
        acc = w + a + _v(f["lut"]["acc_headroom_bits"]) if acc_bits is None else np.asarray(acc_bits, dtype=float)
        return _out(_v(f["lut"]["gap"]) * np.asarray(mac_pj(w, a, acc, node_nm=node, volts=volts)))
    if kind != "dsp":
        raise ValueError(f"unknown FPGA MAC kind {kind!r}; known: {', '.join(FPGA_MAC_KINDS)}")
    d = f["dsp"]
    _check_int_bits("w_bits", w)
    _check_int_bits("a_bits", a)
    big, small = _v(d["mult_a_bits"]), _v(d["mult_b_bits"])
    hi, lo = np.maximum(w, a), np.minimum(w, a)
    if np.any((hi > big) | (lo > small)):
        raise ValueError(f"a DSP48E2 multiplies at most {big}×{small} bits; got w_bits={w.tolist()}, "
                         f"a_bits={a.tolist()} (use kind='lut' or split the operands)")
    op = (np.asarray(int_mul_pj(big, small, node, volts)) + np.asarray(int_add_pj(_v(d["acc_bits"]), node, volts)))
    op = op * _v(d["hard_block_factor"])
    packed = (hi <= 8) & (lo <= 8)
    toggle = np.where(packed, 1.0, np.where(hi <= 12, _v(d["toggle_12x12"]),
                                            np.where(hi <= 18, _v(d["toggle_18x18"]), 1.0)))
    macs = np.where(packed, _v(d["int8_macs_per_op"]), 1.0) if macs_per_op is None else \
        np.asarray(macs_per_op, dtype=float)
    if np.any(macs <= 0):
        raise ValueError(f"macs_per_op must be > 0, got {macs_per_op!r}")
    return _out(op * toggle / macs)


def fpga_bram_pj_per_byte(kind: str = "bram18", node_nm: float | None = None, volts: float | None = None,
                          op: str = "read") -> float:
    """Energy (pJ) per byte through one FPGA block RAM (``"bram18"``: 18 Kb, 36-bit port; ``"uram"``: 288 Kb,
    72-bit port): the CACTI-fit SRAM of that geometry at the node (default 16 nm, 0.85 V) × the hard-block factor."""
    b = load_table("fpga")["bram"]
    if kind not in FPGA_RAM_KINDS:
        raise ValueError(f"unknown FPGA memory kind {kind!r}; known: {', '.join(FPGA_RAM_KINDS)}")
    node, volts = _fpga_defaults(node_nm, volts)
    cap, width = (_v(b["bram18_bytes"]), _v(b["bram18_width_bits"])) if kind == "bram18" else \
        (_v(b["uram_bytes"]), _v(b["uram_width_bits"]))
    return float(sram_pj_per_byte(cap, width, node, volts, op)) * _v(b["hard_block_factor"])


# --- static power per profile ----------------------------------------------------------------------------------------
def static_power_profiles() -> tuple[str, ...]:
    """Profiles with a proposed static power in ``static_power.yaml``."""
    return tuple(load_table("static_power")["profiles"])


def static_power_w(profile: str) -> float:
    """Proposed static/idle power (W) of a shipped profile; ``ValueError`` naming the known profiles."""
    p = load_table("static_power")["profiles"]
    if profile not in p:
        raise ValueError(f"no static power for profile {profile!r}; known: {', '.join(p)}")
    return float(p[profile]["value"])


def static_power_source(profile: str) -> str:
    """Source text of ``static_power_w(profile)``."""
    static_power_w(profile)
    return load_table("static_power")["profiles"][profile]["source"]
