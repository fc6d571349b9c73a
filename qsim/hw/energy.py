"""Energy per MAC and per memory access, by bit width and technology node.

One documented rule (REFERENCE 4.1, Horowitz ISSCC 2014 via QKeras QTools "horowitz"):
  multiplier  E_mul(b_w, b_a) = 0.0029948·b_w·b_a + 0.0010417·(b_w+b_a)/2  pJ at 45 nm, 0.9 V
              (the QKeras quadratic with b² → b_w·b_a, as Bit Fusion's bit-level argument gives;
              reproduces 0.2 pJ int8 and 3.1 pJ int32 multiplies)
  adder       E_add(b) = 0.003125·b pJ (linear), charged at the accumulator width
  float       fp16 mult 1.1, fp32 mult 3.7, fp32 add 0.9 pJ (table); other float mults scale
              ∝ (mantissa+1)² from fp16; float MACs accumulate in fp32.
Profiles may list `mac_energy_pj` per precision or (w,a) pair; those win, and pairs not
listed are scaled from the listed precision by the ratio of the rule above.
Node scaling uses Stillmaker & Baas polynomials E ∝ aV²+bV+c (hwcomponents).
"""

from __future__ import annotations

import math

import numpy as np

# Stillmaker & Baas 2017 energy polynomials (a, b, c) in V, per node (nm) [REFERENCE 4.1, C S20].
_NODE_POLY = {45: (1.103, -0.362, 0.2767), 16: (0.2958, -0.1241, 0.03024), 7: (0.1776, -0.09097, 0.02447)}
_DEFAULT_V = {45: 0.9, 16: 0.8, 7: 0.7}
# Significand bits (incl. implicit 1) of float element formats.
FLOAT_SIGNIFICAND = {"fp4": 2, "fp6": 4, "fp8": 4, "fp16": 11, "bf16": 8, "tf32": 11, "fp32": 24}


def horowitz_mul_pj(w_bits, a_bits):
    """Integer multiply energy at 45 nm / 0.9 V (pJ); arrays broadcast."""
    w, a = np.asarray(w_bits, dtype=float), np.asarray(a_bits, dtype=float)
    return 0.0029948 * w * a + 0.0010417 * (w + a) / 2.0


def horowitz_add_pj(bits):
    return 0.003125 * np.asarray(bits, dtype=float)


def int_mac_pj_45nm(w_bits, a_bits, acc_bits=32):
    """Integer MAC = multiply + accumulate-add at the accumulator width (45 nm)."""
    return horowitz_mul_pj(w_bits, a_bits) + horowitz_add_pj(acc_bits)


def float_mac_pj_45nm(precision: str) -> float:
    """Float MAC (multiply in `precision`, fp32 accumulate) at 45 nm."""
    if precision == "fp32":
        return 3.7 + 0.9
    mul = 1.1 * (FLOAT_SIGNIFICAND[precision] / 11.0) ** 2
    return mul + 0.9


def _poly(node: float, volts: float) -> float:
    a, b, c = _NODE_POLY[node]
    return a * volts * volts + b * volts + c


def default_voltage(node_nm: float) -> float:
    if node_nm >= 28:
        return 0.9
    return 0.8 if node_nm > 7 else 0.7


def node_scale(node_nm: float, volts: float | None = None, ref_nm: float = 45.0, ref_v: float = 0.9) -> float:
    """Energy factor from (ref_nm, ref_v) to (node_nm, volts) — Stillmaker & Baas.

    Tabulated at 45/16/7 nm; between them the factor is interpolated in log(node); above 45 nm
    energy grows ∝ node; below 7 nm ∝ √node (hwcomponents' extrapolation, unconfirmed).
    """
    if node_nm <= 0:
        raise ValueError(f"technology node must be > 0 nm, got {node_nm!r}")
    v = default_voltage(node_nm) if volts is None else volts

    def energy(n: float, vv: float) -> float:
        if n in _NODE_POLY:
            return _poly(n, vv)
        if n > 45:
            return _poly(45, vv) * n / 45.0
        if n < 7:
            return _poly(7, vv) * math.sqrt(n / 7.0)
        lo, hi = (16, 45) if n > 16 else (7, 16)
        t = (math.log(n) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return math.exp((1 - t) * math.log(_poly(lo, vv)) + t * math.log(_poly(hi, vv)))

    return energy(node_nm, v) / energy(ref_nm, ref_v)


def sram_pj_per_byte_45nm(capacity_bytes: float) -> float:
    """QKeras QTools SRAM read energy: pJ/bit = cubic in log2(size in bits), ×8 per byte (45 nm)."""
    x = math.log2(max(capacity_bytes * 8.0, 2.0))
    return 8.0 * max(((9.024e-4 * x - 2.688e-2) * x + 2.089e-1) * x, 0.0)


def rule_mac_pj(precision: str, w_bits: int, a_bits: int, acc_bits: int) -> float:
    """The documented rule at 45 nm for what a unit executes (`precision`, actual operand bits)."""
    if precision.startswith("fp") or precision in ("bf16", "tf32"):
        return float_mac_pj_45nm(precision)
    return float(int_mac_pj_45nm(w_bits, a_bits, acc_bits))


def mac_energy_pj(table: dict, precision: str, w_bits: int, a_bits: int, acc_bits: int, scale: float) -> float:
    """MAC energy (pJ) for a unit executing `precision` on (w_bits, a_bits) operands.

    `table` is a profile's `mac_energy_pj` (already at its node); `scale` is the node factor
    applied to the rule when the table has nothing usable.
    """
    pair = f"w{w_bits}a{a_bits}"
    if pair in table:
        return float(table[pair])
    if precision in table:
        from qsim.hw.schema import PRECISION_BITS

        pb = PRECISION_BITS[precision]
        if precision.startswith("int") or precision == "binary":
            ratio = rule_mac_pj("int", w_bits, a_bits, acc_bits) / rule_mac_pj("int", pb, pb, acc_bits)
            return float(table[precision]) * ratio
        return float(table[precision])
    return rule_mac_pj(precision, w_bits, a_bits, acc_bits) * scale
