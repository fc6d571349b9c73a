"""Cost models: family behaviour, metadata bytes, energy bookkeeping, monotonicity, batch API, CLI."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qsim.cli import main
from qsim.hw import CostQuant, cost_batch, cost_layer, cost_workload, load_profile, totals, validate_profile_dict
from qsim.hw.cost import _plan
from qsim.hw.tech import int_mul_pj, mac_pj, node_scale
from qsim.hw.fpga import finn_dsp_count, finn_lut_per_mac, finn_mvau_luts
from qsim.hw.quant import precision_candidates
from qsim.workload import Conv2d, Dense, LayerNorm, MatMul, Softmax, Workload

FC = Dense("fc", in_features=4096, out_features=4096, batch=256)
CONV = Conv2d("conv", in_channels=64, out_channels=128, kernel_size=3, input_hw=28, padding=1)
TOY = Workload("toy", [
    CONV,
    Conv2d("dw", in_channels=128, out_channels=128, kernel_size=3, input_hw=28, padding=1, groups=128),
    Softmax("sm", rows=64, cols=128),
    MatMul("qk", m=128, n=128, k=64, batch=12),
    LayerNorm("ln", rows=128, cols=768),
    Dense("head", in_features=768, out_features=1000, batch=4),
])
ALL = ["zen3-avx2", "xeon-icx-vnni", "xeon-spr-amx", "neoverse-v1", "t4", "a100", "h100", "jetson-agx-orin",
       "tpu-v1", "eyeriss", "bitfusion", "zcu104", "alveo-u250"]
SYSTOLIC = {
    "name": "sa", "family": "systolic_array", "clock": "1 GHz", "technology_nm": 45,
    "memory": [{"name": "sram", "capacity": "1 MiB", "bandwidth_bytes_per_cycle": 1e6, "read_pj_per_byte": 1.0,
                "energy_source": "toy number for the test"}],
    "dram": {"kind": "DDR4", "bandwidth": "1000 GB/s", "energy_pj_per_bit": 10, "energy_source": "toy number"},
    "systolic_array": {"rows": 16, "cols": 16, "dataflow": "os"},
}


def _profile(base: dict, **section) -> object:
    d = copy.deepcopy(base)
    d["systolic_array"].update(section)
    return validate_profile_dict(d, "test")


# --- precision fallback and family rates ----------------------------------------------------
def test_h100_int4_falls_back_to_int8_and_says_so():
    rec = cost_layer(FC, CostQuant(w_bits=4, a_bits=4), "h100")
    assert rec["precision_used"] == "int8"
    assert rec["fallback"] == "int4->int8: h100 has no INT4 tensor cores"
    r8 = cost_layer(FC, CostQuant(w_bits=8, a_bits=8), "h100")
    assert rec["compute_cycles"] == r8["compute_cycles"]           # int8 rate ...
    assert rec["bytes_dram"] < r8["bytes_dram"]                     # ... but fewer bytes moved


@pytest.mark.parametrize("name", ["a100", "t4"])
def test_a100_t4_int4_is_twice_int8(name):
    p = load_profile(name)
    assert _plan(p, CostQuant(4, 4))["peak"] == 2 * _plan(p, CostQuant(8, 8))["peak"]
    r4, r8 = cost_layer(FC, CostQuant(4, 4), p), cost_layer(FC, CostQuant(8, 8), p)
    assert r4["precision_used"] == "int4" and not r4["fallback"]
    assert r8["compute_cycles"] == 2 * r4["compute_cycles"]


def test_datasheet_peaks():
    tops = {n: 2 * _plan(load_profile(n), CostQuant(8, 8))["peak"] * load_profile(n).clock / 1e12
            for n in ("t4", "a100", "h100", "tpu-v1")}
    assert tops["t4"] == pytest.approx(130, rel=0.01) and tops["a100"] == pytest.approx(624, rel=0.01)
    assert tops["h100"] == pytest.approx(1978.9, rel=0.01) and tops["tpu-v1"] == pytest.approx(92, rel=0.01)
    fp8 = CostQuant(8, 8, w_format="fp8_e4m3", a_format="fp8_e4m3")
    assert cost_layer(FC, fp8, "h100")["precision_used"] == "fp8"
    assert cost_layer(FC, fp8, "a100")["fallback"].startswith("fp8->fp16")


def test_precision_candidates_rules():
    assert precision_candidates(CostQuant(4, 8))[:3] == ["int8", "int16", "int32"]
    assert precision_candidates(CostQuant(1, 1))[0] == "binary"
    assert precision_candidates(CostQuant(4, 16, a_format="fp16"))[0] == "fp16"
    assert precision_candidates(CostQuant(4, 4, w_format="fp4_e2m1", a_format="fp4_e2m1"))[0] == "fp4"
    with pytest.raises(ValueError, match="cannot run"):
        cost_layer(FC, CostQuant(8, 8, w_format="fp8_e4m3", a_format="fp8_e4m3"), "zcu104")


def test_cpu_paths():
    spr = cost_layer(FC, CostQuant(8, 8), "xeon-spr-amx")
    assert spr["path"] == "amx_tdpbusd"
    zen = cost_layer(FC, CostQuant(4, 8), "zen3-avx2")
    assert zen["path"] == "avx2_vpmaddubsw" and zen["fallback"].startswith("int8") is False
    assert zen["fallback"] == ""  # an int8 request (max of 4, 8 bits) needs no fallback


# --- systolic variants ------------------------------------------------------------------------
@pytest.mark.parametrize("bw,ba,expected", [(2, 2, 16), (4, 4, 4), (8, 2, 4), (2, 8, 4), (8, 8, 1), (4, 2, 8), (3, 3, 4)])
def test_bit_fusion_macs_per_fusion_unit(bw, ba, expected):
    p = load_profile("bitfusion")
    units = p.systolic_array.rows * p.systolic_array.cols
    assert _plan(p, CostQuant(bw, ba))["peak"] == units * expected
    r = cost_layer(FC, CostQuant(bw, ba), p)
    r8 = cost_layer(FC, CostQuant(8, 8), p)
    assert r["utilization"] <= 1.0 + 1e-12
    assert r["compute_cycles"] <= r8["compute_cycles"]


@pytest.mark.parametrize("operand", ["activations", "both"])
def test_bit_serial_cycles_proportional_to_bits(operand):
    p = _profile(SYSTOLIC, variant="bit_serial", serial_operand=operand, serial_lanes=8)
    c = {b: cost_layer(FC, CostQuant(b, b), p)["compute_cycles"] for b in (1, 2, 4, 8)}
    for b in (2, 4, 8):
        factor = b if operand == "activations" else b * b
        assert c[b] == factor * c[1]


def test_standard_array_wider_ints_take_passes():
    p = load_profile("tpu-v1")
    r8, r16 = cost_layer(FC, CostQuant(8, 8), p), cost_layer(FC, CostQuant(16, 16), p)
    assert r16["compute_cycles"] == 4 * r8["compute_cycles"] and "4 passes" in r16["fallback"]


# --- FPGA ---------------------------------------------------------------------------------------
def test_finn_lut_costs_and_dsp_packing():
    assert [round(finn_lut_per_mac(b, b), 1) for b in (1, 2, 4, 8)] == [6.6, 13.2, 44.0, 123.2]
    assert finn_mvau_luts(1, 1, 1, 1) == pytest.approx(300 + 1.1 * (2 + 2))
    assert finn_dsp_count(4, 8, 8, 8) == 32
    p = load_profile("zcu104")
    plan8 = _plan(p, CostQuant(8, 8))
    assert plan8["dsp_lanes"] == math.floor(1728 * 0.9 * 2)           # 2 INT8 MACs per DSP48E2
    assert plan8["lut_lanes"] == math.floor(230000 * 0.7 / finn_lut_per_mac(8, 8))
    plan2 = _plan(p, CostQuant(2, 2))
    assert plan2["lut_lanes"] > plan8["lut_lanes"] and plan2["dsp_lanes"] == math.floor(1728 * 0.9 * 4)


# --- memory: metadata, traffic ----------------------------------------------------------------
def test_group_scales_cost_bytes():
    assert CostQuant(4, 8, granularity="group", group_size=32, scale_bits=16).w_bits_per_element() == 4.5
    q128 = CostQuant(4, 8, granularity="group", group_size=128, scale_bits=16, zero_point=True)
    assert q128.w_bits_per_element() == pytest.approx(4.15625)
    w = Dense("w", in_features=4096, out_features=4096)
    r = cost_layer(w, CostQuant(4, 8, granularity="group", group_size=32, scale_bits=16), "h100")
    assert r["memory_bytes"] == 4096 * 4096 * 4.5 / 8
    rc = cost_layer(w, CostQuant(4, 8, granularity="channel", scale_bits=16), "h100")
    assert rc["memory_bytes"] == 4096 * 4096 * (4 + 16 / 4096) / 8
    assert r["bytes_dram"] > rc["bytes_dram"]


def test_non_mac_layers_cost_traffic_only_and_energy_sums():
    df = cost_workload(TOY, CostQuant(8, 8), "a100")
    assert list(df["name"]) == [layer.name for layer in TOY]
    sm = df.set_index("name").loc["sm"]
    assert sm["macs"] == 0 and sm["compute_cycles"] == 0 and sm["bytes_l2"] == 2 * 64 * 128
    assert sm["bytes_dram"] == 0  # 16 KiB of activations stay in the 40 MiB L2
    assert sm["bound"] != "compute" and sm["precision_used"] == "-"
    spill = load_profile("a100").model_copy(update={"keep_activations_on_chip": False})
    sm_off = cost_workload(TOY, CostQuant(8, 8), spill).set_index("name").loc["sm"]
    assert sm_off["bytes_dram"] == 2 * 64 * 128
    comp = [c for c in df.columns if c.startswith("energy_") and c != "energy_j"]
    np.testing.assert_allclose(df[comp].sum(axis=1), df["energy_j"], rtol=1e-12)
    t = totals(df)
    assert t["macs"] == TOY.total_macs and t["cycles"] == df["cycles"].sum()
    assert t["energy_j"] == pytest.approx(sum(t[c] for c in comp))


def test_mixed_precision_dict_and_batch_matches_workload():
    q8, q4 = CostQuant(8, 8), CostQuant(4, 8, granularity="group", group_size=32, scale_bits=16)
    mixed = {"default": q8, "head": q4}
    for name in ("a100", "tpu-v1", "xeon-icx-vnni", "zcu104"):
        df = cost_workload(TOY, mixed, name)
        assert df.set_index("name").loc["head", "w_bits"] == 4
        batch = cost_batch(TOY, [q8, q4, mixed], name)
        assert list(batch["config"]) == [0, 1, 2]
        for i, q in enumerate([q8, q4, mixed]):
            t = totals(cost_workload(TOY, q, name))
            row = batch.iloc[i]
            assert row["cycles"] == t["cycles"] and row["macs"] == t["macs"]
            assert row["energy_j"] == pytest.approx(t["energy_j"], rel=1e-12)
            assert row["bytes_dram"] == pytest.approx(t["bytes_dram"], rel=1e-12)
            assert row["bound"] == t["bound"] and row["fallback"] == t["fallback"]
        assert list(batch["precision_used"][:2]) == [cost_layer(CONV, q, name)["precision_used"] for q in (q8, q4)]


def test_bad_quant_and_layer_dict():
    with pytest.raises(ValueError, match="group_size"):
        CostQuant(4, 8, granularity="group")
    with pytest.raises(ValueError, match="w_format"):
        CostQuant(4, 8, w_format="fp5")
    with pytest.raises(ValueError, match="has 8 bits"):
        CostQuant(4, 8, w_format="fp8_e4m3")
    with pytest.raises(ValueError, match="no 'default'"):
        cost_workload(TOY, {"conv": CostQuant()}, "a100")
    with pytest.raises(TypeError, match="CostQuant"):
        cost_layer(FC, 8, "a100")


# --- energy -------------------------------------------------------------------------------------
def test_energy_rule_and_node_scaling():
    assert float(int_mul_pj(8, 8)) == pytest.approx(0.2, rel=0.04)  # Horowitz ISSCC 2014, fitted within 3 %
    assert float(int_mul_pj(32, 32)) == pytest.approx(3.1, abs=0.01)
    assert float(mac_pj(4, 8, 32)) < float(mac_pj(8, 8, 32))
    assert node_scale(7, 0.7) == pytest.approx(0.057, abs=0.001)
    assert node_scale(7, 0.8, ref_v=0.8) == pytest.approx(0.094, abs=0.001)   # REFERENCE 4.1: same 0.8 V
    assert node_scale(16, 0.8, ref_v=0.8) == pytest.approx(0.17, abs=0.01)
    assert node_scale(45, 0.9) == 1.0 and node_scale(65) > 1.0


# --- properties ---------------------------------------------------------------------------------
dims = st.integers(min_value=1, max_value=600)


def _layer(kind: str, m: int, n: int, k: int):
    if kind == "dense":
        return Dense("d", in_features=k, out_features=n, batch=m)
    if kind == "matmul":
        return MatMul("mm", m=m, n=n, k=k, batch=1 + m % 4)
    if kind == "depthwise":
        return Conv2d("dw", in_channels=n, out_channels=n, kernel_size=3, input_hw=1 + m % 40, padding=1, groups=n)
    return Conv2d("c", in_channels=1 + k % 64, out_channels=n, kernel_size=3, input_hw=1 + m % 40, padding=1)


@settings(max_examples=40, deadline=None)
@given(m=dims, n=dims, k=dims, b1=st.integers(1, 8), b2=st.integers(1, 8), name=st.sampled_from(ALL),
       gran=st.sampled_from(["tensor", "channel", "group"]),
       kind=st.sampled_from(["dense", "matmul", "depthwise", "conv"]))
def test_fewer_bits_never_more_traffic(m, n, k, b1, b2, name, gran, kind):
    lo, hi = sorted((b1, b2))
    layer = _layer(kind, m, n, k)
    g = 32 if gran == "group" else None
    r_lo = cost_layer(layer, CostQuant(lo, lo, granularity=gran, group_size=g), name)
    r_hi = cost_layer(layer, CostQuant(hi, hi, granularity=gran, group_size=g), name)
    for key in r_lo:
        if key.startswith("bytes_"):
            assert r_lo[key] <= r_hi[key], key
    assert r_lo["memory_bytes"] <= r_hi["memory_bytes"]


@settings(max_examples=40, deadline=None)
@given(a=st.integers(1, 4), b=st.integers(1, 4), fm=st.integers(1, 6), fn=st.integers(1, 6), k=st.integers(1, 300),
       rows=st.sampled_from([4, 8, 16]), cols=st.sampled_from([4, 8, 16]), df=st.sampled_from(["os", "ws", "is"]))
def test_bigger_arrays_never_take_more_compute_cycles(a, b, fm, fn, k, rows, cols, df):
    # Full utilization: every GEMM dimension the array folds over is a multiple of the larger array.
    from qsim.hw.systolic_array import fold_cycles

    r2, c2 = rows * a, cols * b
    sr, sc = fm * r2, fn * c2                     # the folded dims are multiples of the larger array
    M, N, K = {"os": (sr, sc, k), "ws": (k, sc, sr), "is": (sc, k, sr)}[df]
    assert fold_cycles(M, N, K, r2, c2, df) <= fold_cycles(M, N, K, rows, cols, df)
    small = _profile(SYSTOLIC, rows=rows, cols=cols, dataflow=df)
    big = _profile(SYSTOLIC, rows=r2, cols=c2, dataflow=df)
    layer = MatMul("g", m=M, n=N, k=K)
    assert cost_layer(layer, CostQuant(), big)["compute_cycles"] <= cost_layer(layer, CostQuant(), small)["compute_cycles"]


@settings(max_examples=30, deadline=None)
@given(m=dims, n=dims, k=dims, bits=st.integers(1, 16), name=st.sampled_from(ALL))
def test_energy_components_sum_to_total(m, n, k, bits, name):
    r = cost_layer(Dense("d", in_features=k, out_features=n, batch=m), CostQuant(bits, bits), name)
    parts = sum(v for key, v in r.items() if key.startswith("energy_") and key != "energy_j")
    assert r["energy_j"] == pytest.approx(parts, rel=1e-12)
    assert 0 < r["utilization"] <= 1.0 + 1e-9 and r["cycles"] >= r["compute_cycles"]


# --- CLI ----------------------------------------------------------------------------------------
def test_simulate_json_shape(tmp_path, capsys):
    topo = tmp_path / "t.csv"
    topo.write_text("Layer, M, N, K,\ng1, 64, 40, 100,\ng2, 128, 64, 64,\n")
    try:
        import qsim.workload.topology  # noqa: F401
    except ImportError:
        pytest.fail("qsim.workload.topology is missing")
    assert main(["simulate", "--profile", "tpu-v1", "--topology", str(topo), "--wbits", "4", "--abits", "8",
                 "--granularity", "group", "--group-size", "32", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["profile"] == "tpu-v1" and [layer["name"] for layer in out["layers"]] == ["g1", "g2"]
    for key in ("name", "macs", "cycles", "latency_s", "energy_j", "bound", "bytes_dram"):
        assert key in out["layers"][0]
    for key in ("macs", "cycles", "latency_s", "energy_j", "memory_bytes"):
        assert key in out["total"]
    assert out["total"]["macs"] == 64 * 40 * 100 + 128 * 64 * 64
    assert main(["simulate", "--profile", "tpu-v1", "--topology", str(topo), "--wbits", "8", "--abits", "8"]) == 0
    assert "total:" in capsys.readouterr().out
    assert main(["simulate", "--profile", "nope", "--topology", str(topo), "--wbits", "8", "--abits", "8"]) == 2
    assert "known profiles" in capsys.readouterr().err
    assert main(["simulate", "--profile", "h100", "--topology", str(topo), "--wbits", "4", "--abits", "8",
                 "--granularity", "group"]) == 2
    assert "--group-size" in capsys.readouterr().err


def test_simulate_model_from_zoo(capsys):
    assert main(["simulate", "--profile", "a100", "--model", "resnet18", "--wbits", "8", "--abits", "8",
                 "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("name,") and len(lines) > 20


def test_simulate_onnx(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((32, 16), dtype=np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])], [w])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert main(["simulate", "--profile", "zen3-avx2", "--onnx", str(path), "--wbits", "8", "--abits", "8",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["macs"] == 4 * 32 * 16


def test_cost_quant_from_quant_specs():
    from qsim.quant import QuantSpec

    w4 = CostQuant.from_specs(QuantSpec(bits=4, scheme="affine", granularity="group", group_size=128, scale_dtype="fp16"))
    assert (w4.w_bits, w4.granularity, w4.group_size, w4.scale_bits, w4.zero_point) == (4, "group", 128, 16, True)
    assert w4.w_bits_per_element() == pytest.approx(4.15625)
    mx = CostQuant.from_specs(QuantSpec(scheme="mxfp8_e4m3"), QuantSpec(scheme="mxfp8_e4m3"))
    assert mx.w_format == mx.a_format == "fp8_e4m3"
    assert mx.w_bits_per_element() == mx.a_bits_per_element == 8.25          # REFERENCE 1: MXFP8 8.25 b/elem
    nv = CostQuant.from_specs(QuantSpec(scheme="nvfp4"), QuantSpec(scheme="nvfp4"))
    assert nv.w_bits_per_element() == 4.5 and cost_layer(FC, nv, "h100")["fallback"].startswith("fp4->fp8")


def test_roofline_columns():
    gemv = cost_layer(Dense("v", in_features=4096, out_features=4096), CostQuant(8, 8), "h100")
    p = load_profile("h100")
    assert gemv["bound"] == "dram" and gemv["intensity_macs_per_dram_byte"] < 1.01
    assert gemv["roofline_macs_per_cycle"] == pytest.approx(p.dram.bandwidth / p.clock * gemv["intensity_macs_per_dram_byte"])
