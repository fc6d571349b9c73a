"""SCALE-Sim interoperability and host calibration.

(1) topology CSV reader, (2) `.cfg` → systolic profile, (3) qsim's systolic cycle model
against cycle counts recorded from real SCALE-Sim 3.0.0 runs (tests/data/scalesim), and
(4) the quick host calibration yields a valid `cpu_simd` profile.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qsim.hw.calibrate import calibrate_host
from qsim.hw.scalesim_import import read_scalesim_config, scalesim_config_to_profile
from qsim.hw.schema import validate_profile_dict
from qsim.hw.systolic_array import systolic_compute_cycles
from qsim.workload import Conv2d, Dense
from qsim.workload.topology import read_topology

DATA = Path(__file__).parent / "data" / "scalesim"
REFERENCE = json.loads((DATA / "reference.json").read_text())
CONV_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


def _write(tmp_path: Path, text: str, name: str = "topo.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- (1) topology reader ------------------------------------------------------------------
def test_conv_topology_matches_scalesim_gemm_view():
    wl = read_topology(DATA / "conv_layers.csv")
    assert [layer.name for layer in wl] == ["conv3x3_s1", "conv1x1", "conv3x3_s2", "fc"]
    ref = {(c["layer"]): (c["M"], c["N"], c["K"]) for c in REFERENCE["cases"] if c["topology"] == "conv_layers.csv"}
    for layer in wl:
        g = layer.gemm
        assert (g.M, g.N, g.K) == ref[layer.name]  # SCALE-Sim's own M, N, K for the layer
    assert isinstance(wl["conv3x3_s2"], Conv2d) and wl["conv3x3_s2"].output_hw == (7, 7)
    assert isinstance(wl["fc"], Dense) and (wl["fc"].in_features, wl["fc"].out_features) == (64, 10)


def test_gemm_topology_m_n_k_roles():
    wl = read_topology(DATA / "gemm_layers.csv")
    a = wl["gemm_a"]
    assert isinstance(a, Dense) and (a.batch, a.in_features, a.out_features) == (64, 100, 40)
    assert (a.gemm.M, a.gemm.N, a.gemm.K) == (64, 40, 100)
    ref = {c["layer"]: (c["M"], c["N"], c["K"]) for c in REFERENCE["cases"] if c["topology"] == "gemm_layers.csv"}
    assert {layer.name: (layer.gemm.M, layer.gemm.N, layer.gemm.K) for layer in wl} == ref


def test_trailing_commas_remarks_blank_lines_and_depthwise(tmp_path):
    text = (CONV_HEADER + "\n"
            "Conv1, 224, 224, 3, 3, 3, 32, 2,\n"
            "Conv2_dw, 112, 112, 3, 3, 1, 1, 1,#dw\n"
            "Conv11,28,28,1,1,256,256,1\n"          # no trailing comma
            "\tConv14,14,14,3,3,8,8,1,1:1,\n"       # leading tab, dense sparsity column
            "DP1,14,14,3,3,32,1,1,\n")              # SCALE-Sim's depthwise marker
    wl = read_topology(_write(tmp_path, text), name="mobile")
    assert wl.name == "mobile" and len(wl) == 5
    assert wl["Conv1"].output_hw == (111, 111)      # (224 - 3) // 2 + 1, no padding
    dp = wl["DP1"]
    assert dp.groups == 32 and dp.out_channels == 32 and dp.macs == 12 * 12 * 9 * 32
    gemm = read_topology(_write(tmp_path, "Layer Name, M, N, K\nfc1, 8, 4, 16\n", "g.csv"))
    assert gemm["fc1"].macs == 8 * 4 * 16


@pytest.mark.parametrize("row, message", [
    ("c1, 16, 16, 3, x, 8, 16, 1,", "line 2, column 'Filter Width': expected a positive integer, got 'x'"),
    ("c1, 16, 16, 3, 3, 8, 0, 1,", "line 2, column 'Num Filter': expected a positive integer, got '0'"),
    ("c1, 16, 16, 3, 3, 8,", "line 2: expected 8 values"),
    ("c1, 2, 2, 3, 3, 8, 16, 1,", "line 2: filter 3x3 is larger than the ifmap 2x2"),
    ("c1, 16, 16, 3, 3, 8, 16, 1, 2:4,", "line 2, column 'Sparsity': '2:4'"),
    ("c1, 16, 16, 3, 3, 8, 16, 1, 7, 9,", "line 2: expected 8 values (plus an optional sparsity 'N:M')"),
])
def test_bad_conv_rows_name_file_line_and_column(tmp_path, row, message):
    path = _write(tmp_path, CONV_HEADER + row + "\n")
    with pytest.raises(ValueError) as err:
        read_topology(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_bad_topology_files(tmp_path):
    with pytest.raises(ValueError, match=r"line 1: cannot tell the topology format"):
        read_topology(_write(tmp_path, "name, a, b, c,\nx, 1, 2, 3,\n"))
    with pytest.raises(ValueError, match=r"line 3, column 'Layer': layer name 'g' already used on line 2"):
        read_topology(_write(tmp_path, "Layer, M, N, K,\ng, 1, 2, 3,\ng, 4, 5, 6,\n"))
    with pytest.raises(ValueError, match=r"line 2, column 'K': expected a positive integer, got '-3'"):
        read_topology(_write(tmp_path, "Layer, M, N, K,\ng, 1, 2, -3,\n"))
    with pytest.raises(ValueError, match="header but no layers"):
        read_topology(_write(tmp_path, "Layer, M, N, K,\n\n"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_topology(tmp_path / "missing.csv")


# --- (2) SCALE-Sim config import ------------------------------------------------------------
USER_CFG = """[general]
run_name = tpu_like
[architecture_presets]
ArrayHeight:    16
ArrayWidth:     32
IfmapSramSzkB:   256
FilterSramSzkB:  128
OfmapSramSzkB:   64
Dataflow : ws
Bandwidth : 20, 12
[run_presets]
InterfaceBandwidth: USER
"""


def test_calc_config_imports_to_valid_profile():
    prof = scalesim_config_to_profile(DATA / "scalesim_calc.cfg")
    model = validate_profile_dict(prof)
    sa = model.systolic_array
    assert (sa.rows, sa.cols, sa.dataflow) == (8, 8, "os")
    assert [(m.name, m.capacity, m.holds) for m in model.memory] == [
        ("ifmap_sram", 64 * 1024, ["inputs"]), ("filter_sram", 64 * 1024, ["weights"]),
        ("ofmap_sram", 32 * 1024, ["outputs"])]
    assert model.dram.bandwidth == (8 + 8 + 8) * 1e9  # CALC: never stalls the array
    assert model.validation["scalesim"]["bandwidth_mode"] == "CALC"


def test_user_bandwidth_config(tmp_path):
    path = _write(tmp_path, USER_CFG, "user.cfg")
    prof = scalesim_config_to_profile(path, clock_hz=700e6, technology_nm=28)
    model = validate_profile_dict(prof)
    assert model.name == "tpu_like" and model.systolic_array.dataflow == "ws"
    assert model.dram.bandwidth == pytest.approx(12 * 700e6)  # smallest listed words/cycle × clock
    assert model.clock == 700e6 and model.technology_nm == 28
    assert read_scalesim_config(path)["bandwidth_words_per_cycle"] == 12


@pytest.mark.parametrize("edit, message", [
    (("Dataflow : ws", "Dataflow : rs"), "[architecture_presets] Dataflow is 'rs'; allowed: os, ws, is"),
    (("ArrayWidth:     32\n", ""), "missing key 'ArrayWidth' in section [architecture_presets]"),
    (("ArrayHeight:    16", "ArrayHeight: 0"),
     "[architecture_presets] ArrayHeight must be a positive integer, got '0'"),
    (("InterfaceBandwidth: USER", "InterfaceBandwidth: FAST"), "InterfaceBandwidth is 'FAST'; allowed: CALC, USER"),
    (("Bandwidth : 20, 12", "Bandwidth : lots"), "Bandwidth must be positive integer words/cycle"),
    (("[run_presets]\nInterfaceBandwidth: USER\n", ""), "missing section [run_presets]"),
])
def test_bad_config_names_file_and_key(tmp_path, edit, message):
    path = _write(tmp_path, USER_CFG.replace(*edit), "bad.cfg")
    with pytest.raises(ValueError) as err:
        scalesim_config_to_profile(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        scalesim_config_to_profile(tmp_path / "nope.cfg")


# --- (3) systolic cycles equal SCALE-Sim's stall-free cycles ----------------------------------
def test_reference_data_is_stall_free_and_broad():
    cases = REFERENCE["cases"]
    assert REFERENCE["scalesim_version"] == "3.0.0" and len(cases) == 90
    assert {c["dataflow"] for c in cases} == {"os", "ws", "is"}
    assert {(c["rows"], c["cols"]) for c in cases} == {(8, 8), (16, 16), (32, 32), (8, 32), (32, 8)}
    assert all(c["stall_cycles"] == 0 for c in cases)


@pytest.mark.parametrize("case", REFERENCE["cases"],
                         ids=lambda c: f"{c['layer']}-{c['rows']}x{c['cols']}-{c['dataflow']}")
def test_systolic_cycles_equal_scalesim(case):
    got = systolic_compute_cycles(case["M"], case["N"], case["K"], case["rows"], case["cols"], case["dataflow"])
    assert got == case["total_cycles"]


# --- (4) host calibration -------------------------------------------------------------------
def test_quick_host_calibration_is_a_valid_cpu_profile():
    prof = calibrate_host(quick=True)
    model = validate_profile_dict(prof, source="calibrate_host")
    assert model.family == "cpu_simd" and model.cpu_simd.cores >= 1
    assert {i.precision for i in model.cpu_simd.instructions} == {"int8", "fp32"}
    assert all(i.macs_per_cycle_per_core > 0 for i in model.cpu_simd.instructions)
    assert model.dram.bandwidth > 0
    v = model.validation
    assert v["int8_gemm"]["single_thread_macs_per_s"] > 0 and v["fp32_gemm"]["single_thread_macs_per_s"] > 0
    assert "measured_utc" in v and v["host"]["quick"] is True and "assumed_not_measured" in v


def test_imported_profile_runs_topology_stall_free_like_scalesim(tmp_path):
    """cfg import + topology reader + cost model: no stalls, SCALE-Sim's stall-free cycle count.

    `cost_layer` may count the demand rows (SCALE-Sim's schedule length) or SCALE-Sim's
    reported last-cycle index, one less; both name the same schedule.
    """
    from qsim.hw import CostQuant, cost_layer

    layers = {layer.name: layer for f in ("conv_layers.csv", "gemm_layers.csv") for layer in read_topology(DATA / f)}
    template = (DATA / "scalesim_calc.cfg").read_text()
    profiles = {}
    for case in REFERENCE["cases"]:
        key = (case["rows"], case["cols"], case["dataflow"])
        if key not in profiles:
            text = (template.replace("ArrayHeight:    8", f"ArrayHeight: {key[0]}")
                    .replace("ArrayWidth:     8", f"ArrayWidth: {key[1]}")
                    .replace("Dataflow : os", f"Dataflow : {key[2]}"))
            profiles[key] = validate_profile_dict(scalesim_config_to_profile(_write(tmp_path, text, "run.cfg")))
        rec = cost_layer(layers[case["layer"]], CostQuant(w_bits=8, a_bits=8), profiles[key])
        assert rec["stall_cycles"] == 0 and rec["bound"] == "compute", case
        assert rec["cycles"] in (case["demand_rows"], case["total_cycles"]), case
