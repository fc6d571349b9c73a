#!/usr/bin/env python3
"""Accelergy hwcomponents reference energies at 45 nm for qsim's energy model (issue 10).

NOT PART OF QSIM.  This script runs in its own virtual environment with the third-party
packages hwcomponents 1.0.114, hwcomponents-library 1.0.58, hwcomponents-cacti 1.0.40 and
hwcomponents-neurosim 1.0.43 (all MIT, PyPI; they need Python >= 3.12).  qsim never
imports it and none of these packages may become a qsim dependency.  The exact set-up
(including rebuilding the bundled CACTI and NeuroSim binaries, whose shipped builds need
glibc 2.38) is in README.md next to this file.  Run from the repo root:

    /tmp/hwc/bin/python tests/data/hwcomponents/make_reference.py

Writes energies_45nm.json next to this file.  All energies in pJ per action.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from importlib import metadata

import hwcomponents as hwc
from hwcomponents.scaling import tech_node_energy

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "energies_45nm.json")
TECH = 45e-9  # metres, as hwcomponents expects
BITS = [2, 4, 8, 16]
SRAM_KIB = [1, 8, 32, 128, 1024]
SRAM_WIDTHS = [64, 32, 128, 256]  # 64 is the primary width (Horowitz's "64-bit read")
PKGS = ["hwcomponents", "hwcomponents-library", "hwcomponents-cacti", "hwcomponents-neurosim"]

logging.getLogger().setLevel(logging.ERROR)


def pj(joules: float) -> float:
    return round(joules * 1e12, 9)


def cost(component: str, attrs: dict, action: str) -> dict:
    """Energy of one action through hwcomponents' model selection, plus the model that answered."""
    model = hwc.get_model(component, attrs, [action])
    c = hwc.get_action_cost(component, attrs, action, {})
    cls = getattr(model, "model_cls", None) or type(model)
    name = getattr(cls, "__module__", "?") + "." + getattr(cls, "__qualname__", getattr(cls, "__name__", "?"))
    return {"energy_pj": pj(c.energy), "latency_s": c.latency, "model": name}


def model_name(component: str, attrs: dict, action: str) -> str:
    m = hwc.get_model(component, attrs, [action])
    return str(getattr(m, "model_name", None) or m)


def main() -> None:
    out: dict = {
        "description": "Per-operation energies at 45 nm from Accelergy's hwcomponents (own venv; not part of qsim). "
                       "pJ per action. Produced by tests/data/hwcomponents/make_reference.py.",
        "tech_node_m": TECH,
        "versions": {p: metadata.version(p) for p in PKGS},
        "python": platform.python_version(),
        "notes": [],
    }

    # ---- integer arithmetic: Aladdin (ISCA 2014) 40 nm data, scaled by hwcomponents to 45 nm ----
    ref40 = {
        "adder_32b_40nm": cost("aladdinadder", {"tech_node": 40e-9, "width": 32}, "add"),
        "multiplier_32b_40nm": cost("aladdinmultiplier", {"tech_node": 40e-9, "width": 32}, "multiply"),
    }
    out["aladdin_reference_points"] = ref40
    out["tech_scaling_40nm_to_45nm_energy_factor"] = tech_node_energy(45e-9, 40e-9)
    out["notes"].append(
        "Aladdin models are 40 nm points (32-bit add 0.21 pJ, 32-bit multiply 12.68 pJ in hwcomponents-library "
        "aladdin.py) scaled by hwcomponents: adder energy linear in width, multiplier quadratic in width (or linear "
        "in each of width_a, width_b), node scaling tech_node_energy(45nm, 40nm) at the default Vdd 0.8 V."
    )

    mac = {}
    for b in BITS:
        row = {
            "multiplier": cost("aladdinmultiplier", {"tech_node": TECH, "width": b}, "multiply"),
            "adder_b": cost("aladdinadder", {"tech_node": TECH, "width": b}, "add"),
            "adder_2b": cost("aladdinadder", {"tech_node": TECH, "width": 2 * b}, "add"),
            "adder_32": cost("aladdinadder", {"tech_node": TECH, "width": 32}, "add"),
            "intmac_acc_2b": cost("aladdinintmac",
                                  {"tech_node": TECH, "adder_width": 2 * b, "multiplier_width": b}, "compute"),
            "intmac_acc_32": cost("aladdinintmac",
                                  {"tech_node": TECH, "adder_width": 32, "multiplier_width": b}, "compute"),
            "neurosim_adder_b": cost("neurosimadder",
                                     {"tech_node": TECH, "n_bits": b, "cycle_period": 1e-9}, "compute"),
            "neurosim_adder_2b": cost("neurosimadder",
                                      {"tech_node": TECH, "n_bits": 2 * b, "cycle_period": 1e-9}, "compute"),
        }
        mac[str(b)] = row
    out["integer_mac"] = {
        "description": "Per operand width b (W = A = b). multiplier: b x b AladdinMultiplier.multiply; adder_b / "
                       "adder_2b / adder_32: AladdinAdder.add of that width; intmac_acc_2b / intmac_acc_32: "
                       "AladdinIntMAC.compute = one b-bit multiply + one add of the accumulator width (2b or 32); "
                       "neurosim_adder_*: NeuroSim ripple adder (hwcomponents-neurosim Adder.compute, n_bits, "
                       "cycle_period 1 ns) for comparison.",
        "by_bits": mac,
    }
    mixed = {}
    for bw in BITS:
        for ba in BITS:
            mixed[f"w{bw}a{ba}"] = cost("aladdinmultiplier", {"tech_node": TECH, "width_a": bw, "width_b": ba},
                                        "multiply")
    out["multiplier_mixed_widths"] = {
        "description": "AladdinMultiplier with width_a = weight bits, width_b = activation bits (energy linear in "
                       "each, i.e. proportional to b_w * b_a).",
        "by_pair": mixed,
    }

    # ---- SRAM (CACTI 7 via hwcomponents-cacti) ----
    sram = {}
    for w in SRAM_WIDTHS:
        for kib in SRAM_KIB:
            size_bits = kib * 1024 * 8
            attrs = {"tech_node": TECH, "width": w, "size": size_bits}
            r = cost("sram", attrs, "read")
            wr = cost("sram", attrs, "write")
            sram[f"{kib}KiB_w{w}"] = {
                "capacity_bytes": kib * 1024,
                "width_bits": w,
                "depth": size_bits // w,
                "read_pj": r["energy_pj"],
                "write_pj": wr["energy_pj"],
                "read_pj_per_bit": round(r["energy_pj"] / w, 9),
                "write_pj_per_bit": round(wr["energy_pj"] / w, 9),
                "access_latency_s": r["latency_s"],
                "leak_power_w": hwc.get_leak_power("sram", attrs),
                "area_m2": hwc.get_area("sram", attrs),
                "model": r["model"],
            }
    out["sram"] = {
        "description": "hwcomponents 'sram' (hwcomponents_cacti.SRAM: CACTI, cache type 'ram', 1 read/write port, "
                       "1 bank) at 45 nm; energy per access of width_bits. Primary rows are width 64.",
        "primary_width_bits": 64,
        "by_config": sram,
    }

    # ---- DRAM energy per bit (hwcomponents-cacti's simple J/bit DRAM models; node independent) ----
    dram = {}
    for comp, width in [("dram_ddr3", 64), ("dram_lpddr", 64), ("dram_lpddr4", 64), ("dram_hbm2", 1024),
                        ("dram_hbm3", 2048), ("dram_hbm4", 4096)]:
        c = cost(comp, {"width": width}, "read")
        dram[comp] = {"width_bits": width, "read_pj": c["energy_pj"],
                      "pj_per_bit": round(c["energy_pj"] / width, 9), "model": c["model"]}
    out["dram_extra"] = {
        "description": "Not requested for the 45 nm table but recorded for issue 10: hwcomponents-cacti _DRAM models "
                       "(a fixed pJ/bit per type, write = read; sources are comments in hwcomponents_cacti.py: "
                       "Wikipedia LPDDR/DDR3/HBM pages, Malladi et al. ISCA'12, Chatterjee et al. MICRO'17, "
                       "industry articles).",
        "by_type": dram,
    }
    out["horowitz_fallback_rows"] = []
    out["notes"].append("Every requested row (integer MAC 2/4/8/16 bits, SRAM 1 KiB-1 MiB) came from hwcomponents; "
                        "no Horowitz ISSCC 2014 fallback rows were needed.")

    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
