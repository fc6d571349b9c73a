"""A profile's own MAC-energy table (`mac_energy_pj`, given with `mac_energy_source`) applied to other widths.

Everything else about energy lives in the technology tables (`qsim.hw.tech`); this module only scales a
profile's listed numbers to pairs it does not list, by the ratio of the technology rule (multiplier ∝ b_w·b_a,
adder ∝ accumulator bits), so one rule governs both.
"""

from __future__ import annotations

from qsim.hw import tech
from qsim.hw.schema import PRECISION_BITS

node_scale = tech.node_scale  # one node-scaling rule (Stillmaker & Baas), kept importable here


def _rule_mac_pj(precision: str, w_bits: int, a_bits: int, acc_bits: int) -> float:
    """The technology rule at 45 nm for what a unit executes (`precision`, operand bits)."""
    if precision.startswith("fp") or precision in ("bf16", "tf32"):
        acc = 16 if acc_bits == 16 else 32
        return float(tech.mac_pj(None, None, acc, precision, precision))
    return float(tech.mac_pj(w_bits, a_bits, acc_bits))


def mac_energy_pj(table: dict, precision: str, w_bits: int, a_bits: int, acc_bits: int, scale: float) -> float:
    """MAC energy (pJ) from a profile's table for a unit executing `precision` on (w_bits, a_bits) operands.

    A listed (w, a) pair wins; a listed precision is scaled to the operands' widths by the technology rule's
    ratio; with nothing usable, the rule at 45 nm × `scale` (the profile's node factor).
    """
    pair = f"w{w_bits}a{a_bits}"
    if pair in table:
        return float(table[pair])
    if precision in table:
        pb = PRECISION_BITS[precision]
        if precision.startswith("int") or precision == "binary":
            ratio = _rule_mac_pj("int", w_bits, a_bits, acc_bits) / _rule_mac_pj("int", pb, pb, acc_bits)
            return float(table[precision]) * ratio
        return float(table[precision])
    return _rule_mac_pj(precision, w_bits, a_bits, acc_bits) * scale
