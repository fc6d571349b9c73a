"""qsim.hw.tech: the sourced technology tables (issue 10, deliverable 1) and the API over them."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from qsim.hw import energy, tech

DATA = Path(__file__).parent / "data"
HWC = json.loads((DATA / "hwcomponents" / "energies_45nm.json").read_text())
ZZ = json.loads((DATA / "zigzag" / "conv3x3_128_28_tpu_like.json").read_text())
MARK = re.compile(r"\[(C|D|U)\b")


# --- data files ----------------------------------------------------------------------------------------------------
def test_every_table_loads_and_every_number_has_a_source():
    names = tech.table_names()
    assert {"mac", "sram", "dram", "nodes"} <= set(names)
    for name in names:
        with open(tech.DATA_DIR / f"{name}.yaml", encoding="utf-8") as f:
            table = yaml.safe_load(f)
        assert table == tech.load_table(name)
        entries = list(tech.iter_entries(table))
        assert entries, name
        for path, entry in entries:
            assert isinstance(entry, dict), f"{name}.yaml {path}: bare number {entry!r} without a source"
            src = entry.get("source")
            assert isinstance(src, str) and len(src) > 10, f"{name}.yaml {path}: no source"
            assert MARK.search(src), f"{name}.yaml {path}: source has no [C]/[D]/[U] mark: {src!r}"
            vals = entry["value"] if isinstance(entry["value"], list) else [entry["value"]]
            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals), f"{name}.yaml {path}"


def test_unknown_table_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown technology table"):
        tech.load_table("nope")


# --- MAC energy ----------------------------------------------------------------------------------------------------
def test_int_mac_strictly_increasing_in_bit_width():
    b = np.arange(1, 17)
    for src in tech.MAC_SOURCES:
        for acc in (32, None):
            e = tech.mac_pj(b, b, 2 * b if acc is None else acc, source=src)
            assert np.all(np.diff(e) > 0), (src, acc)


def test_int_mac_strictly_increasing_in_product_of_widths():
    w, a = np.meshgrid(np.arange(1, 17), np.arange(1, 17))
    w, a = w.ravel(), a.ravel()
    for src in tech.MAC_SOURCES:
        e = tech.mac_pj(w, a, 32, source=src)
        prod = w * a
        order = np.argsort(prod, kind="stable")
        p, ee = prod[order], e[order]
        # equal products cost the same; a larger product costs strictly more
        for v in np.unique(p):
            assert np.ptp(ee[p == v]) < 1e-12
        firsts = np.array([ee[p == v][0] for v in np.unique(p)])
        assert np.all(np.diff(firsts) > 0)


def test_int_rule_reproduces_its_sources():
    # Horowitz ISSCC 2014 (45 nm, 0.9 V): int8 mult 0.2, int32 mult 3.1, int32 add 0.1 pJ
    assert tech.int_mul_pj(8, 8) == pytest.approx(0.2, rel=0.05)
    assert tech.int_mul_pj(32, 32) == pytest.approx(3.1, rel=0.01)
    assert tech.int_add_pj(32) == pytest.approx(0.1, rel=1e-9)
    # hwcomponents/Aladdin committed numbers (exact rule)
    for pair, row in HWC["multiplier_mixed_widths"]["by_pair"].items():
        w, a = map(int, pair[1:].split("a"))
        assert tech.int_mul_pj(w, a, source="aladdin") == pytest.approx(row["energy_pj"], rel=1e-6)
    for b, row in HWC["integer_mac"]["by_bits"].items():
        b = int(b)
        assert tech.mac_pj(b, b, 32, source="aladdin") == pytest.approx(row["intmac_acc_32"]["energy_pj"], rel=1e-6)
        assert tech.mac_pj(b, b, 2 * b, source="aladdin") == pytest.approx(row["intmac_acc_2b"]["energy_pj"],
                                                                          rel=1e-6)


def test_mac_scalar_in_scalar_out_and_arrays_broadcast():
    assert isinstance(tech.mac_pj(8, 8, 32), float)
    e = tech.mac_pj(np.array([[2], [4]]), np.array([2, 4, 8]), 32)
    assert e.shape == (2, 3)
    assert e[1, 2] == pytest.approx(tech.mac_pj(4, 8, 32))


def test_float_macs():
    assert tech.mac_pj(None, None, 32, "fp32", "fp32") == pytest.approx(3.7 + 0.9)
    assert tech.mac_pj(None, None, 32, "fp16", "fp16") == pytest.approx(1.1 + 0.9)
    assert tech.mac_pj(None, None, 16, "fp16", "fp16") == pytest.approx(1.1 + 0.4)
    assert tech.float_mul_pj("bf16", "bf16") == pytest.approx(1.1 * 64 / 121)
    assert tech.float_mul_pj("fp8", "fp8") == pytest.approx(1.1 * 16 / 121)
    chain = [tech.mac_pj(None, None, 32, f, f) for f in ("fp8_e5m2", "fp8", "bf16", "fp16", "fp32")]
    assert all(x < y for x, y in zip(chain, chain[1:]))
    # weight-only quantization: int4 weights × fp16 activations
    assert tech.float_mul_pj("int", "fp16", w_bits=4) == pytest.approx(1.1 * 4 * 11 / 121)


def test_mac_energy_follows_node_scaling():
    e45 = tech.mac_pj(8, 8, 32)
    assert tech.mac_pj(8, 8, 32, node_nm=7, volts=0.7) == pytest.approx(e45 * tech.node_scale(7, 0.7))
    assert tech.mac_pj(8, 8, 32, node_nm=45, volts=0.9) == pytest.approx(e45)


@pytest.mark.parametrize("call, match", [
    (lambda: tech.mac_pj(0, 8, 32), "w_bits"),
    (lambda: tech.mac_pj(8, 33, 32), "a_bits"),
    (lambda: tech.mac_pj(8, 8, 32, source="nope"), "unknown MAC energy source"),
    (lambda: tech.mac_pj(None, None, 32, "fp7", "fp16"), "unknown number format"),
    (lambda: tech.mac_pj(None, None, 24, "fp16", "fp16"), "fp16 .* or fp32"),
])
def test_mac_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- SRAM ----------------------------------------------------------------------------------------------------------
def test_cacti_fit_reproduces_every_committed_point_within_30_percent():
    worst = 0.0
    for key, row in HWC["sram"]["by_config"].items():
        for op in ("read", "write"):
            got = tech.sram_pj_per_access(row["capacity_bytes"], row["width_bits"], op=op)
            err = abs(got / row[f"{op}_pj"] - 1)
            worst = max(worst, err)
            assert err < 0.30, (key, op, got, row[f"{op}_pj"])
    assert worst < 0.25


def test_register_file_reproduces_zigzag_tpu_like():
    mems = {m["name"]: m for m in ZZ["hardware_tpu_like"]["memories_innermost_first"]}
    for name in ("rf_128B", "rf_2B"):
        m = mems[name]
        width = m["ports"][0]["bandwidth_max_bits"]
        got = tech.sram_pj_per_access(m["size_bits"] / 8, width)
        assert got == pytest.approx(m["r_cost_pj_per_access"], rel=1e-3)
        assert tech.sram_pj_per_access(m["size_bits"] / 8, width, op="write") == pytest.approx(got)


def test_sram_energy_grows_with_capacity_and_is_continuous_at_the_seams():
    caps = np.geomspace(2, 64 << 20, 200)
    for op in ("read", "write"):
        e = tech.sram_pj_per_byte(caps, 64, op=op)
        assert np.all(np.diff(e) > 0), op
        # no jump larger than the capacity step explains at 512 B / 1 KiB
        ratios = e[1:] / e[:-1]
        assert ratios.max() < 1.3


def test_sram_node_scaling_and_errors():
    assert tech.sram_pj_per_byte(32768, node_nm=7, volts=0.7) == pytest.approx(
        tech.sram_pj_per_byte(32768) * tech.node_scale(7, 0.7))
    with pytest.raises(ValueError, match="op must be"):
        tech.sram_pj_per_byte(1024, op="erase")
    with pytest.raises(ValueError, match="> 0"):
        tech.sram_pj_per_byte(0)


# --- DRAM ----------------------------------------------------------------------------------------------------------
def test_every_dram_kind_present_and_positive():
    want = {"DDR3", "DDR4", "DDR5", "LPDDR4", "LPDDR4X", "LPDDR5", "GDDR5", "GDDR6", "HBM2", "HBM2E", "HBM3"}
    assert want <= set(tech.known_memory_kinds())
    for k in tech.known_memory_kinds():
        assert tech.dram_pj_per_bit(k) > 0
        assert MARK.search(tech.dram_source(k))


def test_dram_kind_spellings():
    assert tech.dram_pj_per_bit("DDR4-3200") == tech.dram_pj_per_bit("ddr4")
    assert tech.canonical_memory_kind("DDR4-2400 x4") == "DDR4"
    assert tech.canonical_memory_kind("HBM2E") == "HBM2E"
    assert tech.canonical_memory_kind("LPDDR4X-4266") == "LPDDR4X"
    # every kind the shipped profiles name today (except the generic 'DDR') is understood
    for name in ("a100", "h100", "t4", "tpu-v1", "zcu104", "alveo-u250", "zen3-avx2", "xeon-spr-amx",
                 "jetson-agx-orin", "neoverse-v1", "bitfusion", "xeon-icx-vnni"):
        kind = yaml.safe_load((Path(__file__).parents[1] / "hw_profiles" / f"{name}.yaml").read_text())["dram"]["kind"]
        tech.canonical_memory_kind(kind)


@pytest.mark.parametrize("bad", ["DDR", "HBM4", "SRAM", "", "DDR4 3200MHz", 4])
def test_unknown_dram_kind_names_the_allowed_ones(bad):
    with pytest.raises(ValueError, match="unknown DRAM kind.*DDR3, DDR4"):
        tech.dram_pj_per_bit(bad)


# --- nodes ---------------------------------------------------------------------------------------------------------
def test_node_scaling_matches_reference_and_energy_module_at_tabulated_nodes():
    assert tech.node_scale(45, 0.9) == pytest.approx(1.0)
    assert energy.node_scale is tech.node_scale  # one rule, importable from both modules
    # REFERENCE.md §4.1: 45 nm @ 0.9 V -> 7 nm @ 0.7 V ×0.057; 45 -> 16 nm @ 0.8 V ×0.17
    assert tech.node_scale(7, 0.7) == pytest.approx(0.057, abs=0.001)
    assert tech.node_scale(16, 0.8, ref_v=0.8) == pytest.approx(0.17, abs=0.01)


@pytest.mark.parametrize("volts", [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2])
def test_node_scaling_monotone_in_node_at_fixed_voltage(volts):
    nodes = np.linspace(1, 130, 400)
    f = [tech.node_scale(float(n), volts) for n in nodes]
    assert all(x < y for x, y in zip(f, f[1:]))


def test_known_nodes_cover_the_profiles_and_are_accepted():
    kn = tech.known_nodes()
    assert set(tech.tabulated_nodes()) <= set(kn)
    for n in kn:
        assert tech.node_scale(n) > 0
        assert tech.node_kind(n) in ("tabulated", "interpolated", "extrapolated")
    for f in (Path(__file__).parents[1] / "hw_profiles").glob("*.yaml"):
        assert yaml.safe_load(f.read_text())["technology_nm"] in kn, f.name
    assert tech.node_kind(5) == "extrapolated" and tech.node_kind(28) == "interpolated"


@pytest.mark.parametrize("bad", [0, 0.5, 131, 250, -7, "7nm"])
def test_out_of_range_node_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="outside the supported range"):
        tech.node_scale(bad)


def test_bad_voltage_is_an_error():
    with pytest.raises(ValueError, match="voltage"):
        tech.node_scale(45, 0.0)


def test_profile_mac_table_scales_by_the_technology_rule():
    table = {"int8": 0.5}
    e4 = energy.mac_energy_pj(table, "int8", 4, 4, 32, 1.0)
    assert e4 == pytest.approx(0.5 * float(tech.mac_pj(4, 4, 32)) / float(tech.mac_pj(8, 8, 32)))
    assert energy.mac_energy_pj({"w4a4": 0.04}, "int8", 4, 4, 32, 1.0) == 0.04


# --- FPGA fabric ---------------------------------------------------------------------------------------------------
def test_fpga_mac_energy():
    lut = tech.fpga_mac_pj("lut", np.arange(1, 17), np.arange(1, 17))
    assert np.all(np.diff(lut) > 0)
    # LUT MAC = Kuon & Rose gap × ASIC MAC at the FPGA node
    assert tech.fpga_mac_pj("lut", 8, 8, acc_bits=32) == pytest.approx(
        14.0 * tech.mac_pj(8, 8, 32, node_nm=16, volts=0.85))
    dsp8, dsp16 = tech.fpga_mac_pj("dsp", 8, 8), tech.fpga_mac_pj("dsp", 16, 16)
    assert 0 < dsp8 < dsp16                       # two int8 MACs share one DSP operation
    assert dsp8 < tech.fpga_mac_pj("lut", 8, 8)   # hard DSP beats LUT fabric at int8
    assert tech.fpga_mac_pj("dsp", 4, 4, macs_per_op=4) == pytest.approx(dsp8 / 2)
    assert tech.fpga_mac_pj("dsp", 27, 18) > dsp16
    with pytest.raises(ValueError, match="27×18"):
        tech.fpga_mac_pj("dsp", 27, 27)
    with pytest.raises(ValueError, match="unknown FPGA MAC kind"):
        tech.fpga_mac_pj("bram", 8, 8)


def test_fpga_block_ram_energy():
    b, u = tech.fpga_bram_pj_per_byte("bram18"), tech.fpga_bram_pj_per_byte("uram")
    assert 0 < b < u
    assert b == pytest.approx(tech.sram_pj_per_byte(2304, 36, 16, 0.85))
    assert tech.fpga_bram_pj_per_byte("uram", op="write") > 0
    with pytest.raises(ValueError, match="unknown FPGA memory kind"):
        tech.fpga_bram_pj_per_byte("lutram")


# --- static power --------------------------------------------------------------------------------------------------
def test_static_power_for_every_shipped_profile():
    names = {f.stem for f in (Path(__file__).parents[1] / "hw_profiles").glob("*.yaml")}
    assert names <= set(tech.static_power_profiles())
    for name in names:
        assert tech.static_power_w(name) > 0
        assert MARK.search(tech.static_power_source(name))
    with pytest.raises(ValueError, match="no static power for profile"):
        tech.static_power_w("nope")
