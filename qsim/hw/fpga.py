"""FPGA MAC fabric: DSP packing plus LUT multipliers (FINN-R cost model).

DSP48E2: 2 INT8 MACs sharing one operand per DSP (Xilinx WP486), INT4 packing per profile.
LUTs per MAC lane (FINN-R, Blott et al. 2018, FINN matrixvectoractivation):
    per PE  mult = Q·(2·ceil((W+A)/6) - 1)·(W+A),  adder tree = (W+A)(2Q-1),
    total   300 + 1.1·P·(mult + adder + acc + thresholds)
→ per lane for large Q: 1.1·[(2·ceil((W+A)/6) - 1)(W+A) + 2(W+A)] ≈ 6.6 / 13 / 44 / 123 LUTs at
1/2/4/8 bits. MACs that fit = DSP lanes + LUT lanes within the budget fractions.
"""

from __future__ import annotations

import math

import numpy as np

from qsim.hw.quant import CostQuant, resolve


def finn_mvau_luts(P: int, Q: int, w_bits: int, a_bits: int, acc_luts: float = 0.0, threshold_luts: float = 0.0) -> float:
    """LUTs of a FINN matrix-vector unit with P PEs × Q SIMD lanes in LUT mode."""
    wa = w_bits + a_bits
    mult = Q * (2 * math.ceil(wa / 6) - 1) * wa
    adder = wa * (2 * Q - 1)
    return 300.0 + 1.1 * P * (mult + adder + acc_luts + threshold_luts)


def finn_lut_per_mac(w_bits: int, a_bits: int) -> float:
    """LUTs per MAC lane in the large-Q limit (no fixed overhead, no accumulator)."""
    wa = w_bits + a_bits
    return 1.1 * ((2 * math.ceil(wa / 6) - 1) * wa + 2 * wa)


def finn_dsp_count(P: int, Q: int, w_bits: int, a_bits: int) -> int:
    """FINN-R DSP-mode estimate: P·Q·ceil((W+A)/48)."""
    return P * Q * math.ceil((w_bits + a_bits) / 48)


def plan(profile, q: CostQuant) -> dict:
    f = profile.fpga
    dsp_lanes, lut_lanes, prec, note, dprec = 0.0, 0.0, f"w{q.w_bits}a{q.a_bits}", "", None
    is_int = q.w_format == "int" and q.a_format == "int"
    if f.implementation in ("dsp", "dsp+lut"):
        try:
            dprec, note = resolve(q, set(f.macs_per_dsp), profile.name, "DSP packings")
            dsp_lanes = math.floor(f.dsps * f.dsp_budget_fraction * f.macs_per_dsp[dprec])
            prec = dprec if f.implementation == "dsp" else prec
        except ValueError:
            if f.implementation == "dsp" or not is_int:
                raise
    if f.implementation in ("lut", "dsp+lut") and is_int:
        lut_lanes = math.floor(f.luts * f.lut_budget_fraction / finn_lut_per_mac(q.w_bits, q.a_bits))
    lanes = dsp_lanes + lut_lanes
    if lanes < 1:
        raise ValueError(f"profile {profile.name!r}: no MAC fits for {q.label()} (implementation {f.implementation!r})")
    return dict(precision=prec, fallback=note if f.implementation == "dsp" else "", lanes=float(lanes),
                dsp_lanes=float(dsp_lanes), lut_lanes=float(lut_lanes), peak=float(lanes), exact_bits=True,
                dsp_precision=dprec if dsp_lanes else None)


def mac_energy(profile, prm: dict, q: CostQuant) -> float:
    """pJ per MAC on the fabric: DSP and LUT MACs (qsim.hw.tech FPGA table) weighted by their share of the lanes."""
    from qsim.hw import tech
    from qsim.hw.schema import PRECISION_BITS

    node, volts = profile.technology_nm, profile.voltage_v
    total = 0.0
    if prm["dsp_lanes"]:
        dp = prm["dsp_precision"]
        bits = (q.w_bits, q.a_bits) if dp.startswith("int") and PRECISION_BITS[dp] >= max(q.w_bits, q.a_bits) \
            else (PRECISION_BITS[dp],) * 2
        per_dsp = profile.fpga.macs_per_dsp[dp]
        total += prm["dsp_lanes"] * float(tech.fpga_mac_pj("dsp", *bits, node, volts, macs_per_op=per_dsp))
    if prm["lut_lanes"]:
        total += prm["lut_lanes"] * float(tech.fpga_mac_pj("lut", q.w_bits, q.a_bits, node, volts))
    return total / prm["lanes"]


def compute_cycles(profile, prm: dict, M, Ng, K, GB):
    macs = np.asarray(M, dtype=np.float64) * Ng * K * GB
    return np.ceil(macs / prm["lanes"])


def compute_map(profile, prm: dict, M, Ng, K) -> dict:
    """The MAC lanes as a square output tile streaming K (output-stationary)."""
    side = np.maximum(1.0, np.floor(np.sqrt(prm["lanes"])))
    return {"tm": side, "tn": side, "tk": 1.0, "order": 0}
