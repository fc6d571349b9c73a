"""Energy accounting by hand on a tiny layer and a tiny profile: every component is arithmetic in the test.

Each assertion guards one way the formulas in qsim/hw/cost.py could silently go wrong (MAC energy ignoring bit
width or scaled wrongly, DRAM per byte instead of per bit, static energy dropped, SRAM energy dropped,
compute_efficiency ignored).
"""

from __future__ import annotations

import numpy as np
import pytest

from qsim.hw import CostQuant, cost_layer, load_profile, validate_profile_dict
from qsim.workload import Dense

TINY = {
    "name": "tiny", "family": "cpu_simd", "clock": "1 GHz", "technology_nm": 45, "voltage_v": 0.9,
    "static_power": "2 W", "compute_efficiency": 0.5, "keep_activations_on_chip": False,
    "memory": [{"name": "l1", "capacity": "32 KiB", "bandwidth_bytes_per_cycle": 64,
                "read_pj_per_byte": 1.5, "write_pj_per_byte": 2.5, "energy_source": "toy numbers"}],
    "dram": {"kind": "DDR4", "bandwidth": "1000 GB/s", "energy_pj_per_bit": 7.0, "energy_source": "toy number"},
    "cpu_simd": {"cores": 1, "vector_bits": 256, "register_tile": [6, 16],
                 "instructions": [{"name": "vpdpbusd", "precision": "int8", "macs_per_cycle_per_core": 32}]},
}


def horowitz_mac_pj(w, a, acc):
    """qsim/data/tech/mac.yaml: multiplier 0.0030277·b_w·b_a (fit to Horowitz's int8/int32 multiplies), adder
    0.003125·b_acc (QKeras), 45 nm / 0.9 V — the tiny profile's node, so no scaling."""
    return 0.0030277 * w * a + 0.003125 * acc


def test_every_energy_component_by_hand():
    prof = validate_profile_dict(dict(TINY))
    layer = Dense("d", in_features=4, out_features=4, batch=2)  # M=2, K=4, N=4: 32 MACs
    r = cost_layer(layer, CostQuant(8, 8, granularity="tensor", scale_bits=16), prof)
    a, b, c = 2 * 4, 4 * 4 + 2, 2 * 4  # int8 inputs, int8 weights + one fp16 scale, int8 outputs
    # compute: one 6×16 register tile over K=4 at 32 MACs/cycle = 12 cycles, at 50 % efficiency 24
    assert r["compute_cycles"] == 24 and r["cycles"] == 24
    assert r["energy_mac_j"] == pytest.approx(32 * horowitz_mac_pj(8, 8, 32) * 1e-12, rel=1e-12)
    assert r["bytes_l1"] == a + b + c  # the register tile holds the whole output: each operand once
    assert r["energy_l1_j"] == pytest.approx(((a + b) * 1.5 + c * 2.5) * 1e-12, rel=1e-12)
    assert r["bytes_dram"] == a + b + c
    assert r["energy_dram_j"] == pytest.approx((a + b + c) * 8 * 7.0 * 1e-12, rel=1e-12)
    assert r["latency_s"] == pytest.approx(24e-9)
    assert r["energy_static_j"] == pytest.approx(2.0 * 24e-9, rel=1e-12)
    parts = ("energy_mac_j", "energy_l1_j", "energy_dram_j", "energy_static_j")
    assert r["energy_j"] == pytest.approx(sum(r[p] for p in parts), rel=1e-12)


def test_mac_energy_grows_with_bits_on_a_bit_flexible_array():
    layer = Dense("d", in_features=256, out_features=256, batch=64)
    e = {b: cost_layer(layer, CostQuant(b, b, granularity="tensor"), "bitfusion")["energy_mac_j"] for b in (2, 4, 8)}
    assert e[2] < e[4] < e[8]
    # multiplier ∝ b_w·b_a, adder at the fixed 32-bit accumulator: the steps 2→4→8 bits differ only in the
    # multiplier, whatever the node factor: (64 - 16) / (16 - 4) = 4
    per_mac = {b: e[b] / layer.macs for b in e}
    assert (per_mac[8] - per_mac[4]) / (per_mac[4] - per_mac[2]) == pytest.approx(4.0, rel=1e-9)


def test_static_energy_is_power_times_latency_on_every_profile():
    layer = Dense("d", in_features=512, out_features=512, batch=8)
    for name in ("a100", "tpu-v1", "zen3-avx2", "eyeriss", "zcu104"):
        prof = load_profile(name)
        r = cost_layer(layer, CostQuant(8, 8), prof)
        assert r["energy_static_j"] == pytest.approx(prof.static_power * r["latency_s"], rel=1e-12)
        assert r["energy_dram_j"] == pytest.approx(r["bytes_dram"] * 8 * prof.dram.energy_pj_per_bit * 1e-12)
        on_chip = sum(r[f"energy_{m.name}_j"] for m in prof.memory)
        assert on_chip > 0  # SRAM/register energy is charged


def test_pe_register_files_are_read_on_every_mac():
    """ZigZag/Accelergy count a PE-local register file access per MAC (one word per access)."""
    from pathlib import Path

    import qsim.validate

    prof = load_profile(Path(qsim.validate.__file__).parent / "profiles" / "zigzag_tpu_like.yaml")
    layer = Dense("d", in_features=64, out_features=64, batch=16)
    for bits in (8, 4, 2):
        r = cost_layer(layer, CostQuant(bits, bits, acc_bits=2 * bits, granularity="tensor"), prof)
        assert r["bytes_rf_128B"] == layer.macs  # one 8-bit word per weight read, whatever the width
        assert r["bytes_rf_2B"] == 2 * 2 * layer.macs  # psum read + write, one 16-bit word each
        assert r["energy_rf_128B_j"] == pytest.approx(layer.macs * 0.095e-12)


def test_unknown_memory_kind_node_or_unsourced_override_is_rejected_with_the_field():
    from qsim.hw.schema import ProfileError

    bad = dict(TINY, technology_nm=500)
    bad["dram"] = {"kind": "DDR9", "bandwidth": "10 GB/s"}
    bad["memory"] = [{"name": "l1", "capacity": "32 KiB", "bandwidth_bytes_per_cycle": 64, "read_pj_per_byte": 1.0}]
    bad["mac_energy_pj"] = {"int8": 0.1}
    with pytest.raises(ProfileError) as err:
        validate_profile_dict(bad, source="chip.yaml")
    text = str(err.value)
    assert "chip.yaml" in text
    assert "technology_nm" in text and "outside the technology tables" in text
    assert "dram.kind" in text and "DDR4" in text  # names the known kinds
    assert "memory[0]" in text and "energy_source" in text
    ok = dict(TINY)
    ok["dram"] = {"kind": "DDR4", "bandwidth": "10 GB/s", "energy_pj_per_bit": 9.0}
    with pytest.raises(ProfileError, match="dram.*energy_source"):
        validate_profile_dict(ok, source="chip.yaml")


def test_energies_not_given_come_from_the_technology_tables():
    from qsim.hw import tech

    raw = dict(TINY, memory=[{"name": "l2", "capacity": "1 MiB", "bandwidth_bytes_per_cycle": 32}],
               dram={"kind": "HBM2E", "bandwidth": "100 GB/s"}, technology_nm=7, voltage_v=0.7)
    p = validate_profile_dict(raw)
    assert p.dram.energy_pj_per_bit == tech.dram_pj_per_bit("HBM2E")
    assert p.memory[0].read_pj_per_byte == pytest.approx(float(tech.sram_pj_per_byte(2**20, 64, 7, 0.7)))
    assert "technology tables" in p.memory[0].energy_source
    r = cost_layer(Dense("d", in_features=64, out_features=64), CostQuant(8, 8, granularity="tensor"), p)
    assert r["energy_mac_j"] == pytest.approx(64 * 64 * float(tech.mac_pj(8, 8, 32, node_nm=7, volts=0.7)) * 1e-12)
