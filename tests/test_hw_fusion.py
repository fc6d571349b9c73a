"""Fusion into MAC epilogues, fixed per-kernel overheads, strided reuse, and the profile fields behind them."""

from __future__ import annotations

import json

import pytest

from qsim.hw import CostQuant, cost_layer, cost_workload, load_profile, validate_profile_dict
from qsim.hw.cost import totals
from qsim.hw.fusion import fusion_plan
from qsim.hw.schema import Overheads, ProfileError
from qsim.workload import Conv2d, Dense, Elementwise, Workload
from qsim.workload.layers import LayerNorm, Pool2d
from qsim.workload.zoo import get_workload

Q8 = CostQuant(8, 8)


def test_resnet_activations_and_residual_adds_fuse_on_gpu_not_on_an_unfused_profile():
    wl = get_workload("resnet50")
    df = cost_workload(wl, Q8, "a100")
    eltwise = df[df["kind"] == "Elementwise"]
    assert (eltwise["fused_into"] != "").all()  # every ReLU and residual add rides a conv epilogue
    assert df.set_index("name").loc["layer1.0.add", "fused_into"] == "layer1.0.downsample.0"
    assert (eltwise["overhead_s"] == 0).all()  # no launch of their own
    relus = eltwise[eltwise["name"].str.endswith("relu")]
    assert (relus["cycles"] == 0).all()  # nothing to move: the epilogue applies them in registers
    pools = df[df["kind"] == "Pool2d"]
    assert (pools["fused_into"] == "").all() and pools["fusion_note"].str.contains("not fused").all()
    unfused = cost_workload(wl, Q8, load_profile("a100").model_copy(update={"fusion": []}))
    assert (unfused["fused_into"] == "").all()
    assert totals(unfused)["cycles"] > totals(df)["cycles"]
    assert totals(unfused)["bytes_l2"] > totals(df)["bytes_l2"]


def test_fused_residual_add_reads_its_second_operand_only():
    conv = Conv2d("c", in_channels=8, out_channels=8, kernel_size=3, input_hw=16, padding=1)
    n = conv.output_elements
    wl = Workload("w", [conv, Elementwise("add", kind="add", elements=n, operands=2),
                        Elementwise("relu", kind="relu", elements=n)])
    df = cost_workload(wl, Q8, "a100").set_index("name")
    assert df.loc["add", "fused_into"] == "c" and df.loc["relu", "fused_into"] == "c"
    assert df.loc["add", "bytes_l2"] == n  # int8: one extra operand read, no write
    assert df.loc["relu", "bytes_l2"] == 0


def test_fusion_needs_a_matching_producer_and_says_why_not():
    d = Dense("fc", in_features=16, out_features=32, batch=4)
    layers = [Elementwise("first", kind="relu", elements=64), d,
              Elementwise("wrong_size", kind="relu", elements=100), Elementwise("after", kind="relu", elements=128),
              LayerNorm("ln", rows=4, cols=32)]
    into, notes, extra = fusion_plan(layers, ["relu", "add"])
    assert into == ["", "", "", "", ""]
    assert "no MAC layer" in notes[0] and "producer chain outputs 128" in notes[2]
    assert "no MAC layer" in notes[3]  # the chain broke at the unfused op
    assert "layernorm is not fused" in notes[4]
    into, _, _ = fusion_plan([d, Elementwise("ok", kind="relu", elements=128),
                              Pool2d("p", kind="max", channels=32, input_hw=2, kernel_size=2, stride=2, batch=1)],
                             ["relu", "max_pool"])
    assert into == ["", "fc", "fc"]  # Dense output is 128 elements; the pool's input (1·32·2·2 = 128) matches
    assert fusion_plan([d, Pool2d("p", kind="max", channels=32, input_hw=2, kernel_size=2, stride=2)],
                       ["max_pool"])[0] == ["", "fc"]


def test_gpu_batch_one_pays_launches_and_throughput_rises_with_batch():
    for name in ("t4", "a100", "h100"):
        prof = load_profile(name)
        df = cost_workload(get_workload("resnet50", batch=1), Q8, name)
        one = totals(df)
        big = totals(cost_workload(get_workload("resnet50", batch=64), Q8, name))
        kernels = int((df["fused_into"] == "").sum())
        assert kernels == 56  # 53 convs + fc + 2 pools; 65 ReLUs and adds fused
        assert one["latency_s"] >= kernels * prof.overheads.per_kernel_s
        assert 64 / big["latency_s"] > 1 / one["latency_s"], name


def test_overhead_is_per_unfused_kernel_and_in_latency():
    layer = Dense("d", in_features=64, out_features=64, batch=1)
    base = load_profile("zen3-avx2").model_copy(update={"overheads": Overheads()})
    slow = base.model_copy(update={"overheads": Overheads(per_kernel_s=1e-5, per_layer_cycles=100)})
    a, b = cost_layer(layer, Q8, base), cost_layer(layer, Q8, slow)
    expected = round(1e-5 * base.clock) + 100
    assert b["cycles"] - a["cycles"] == expected
    assert b["overhead_s"] == pytest.approx(expected / base.clock) and a["overhead_s"] == 0
    assert b["latency_s"] == pytest.approx(b["cycles"] / base.clock)


def test_strided_1x1_conv_reads_one_pixel_in_four():
    ds = Conv2d("ds", in_channels=64, out_channels=128, kernel_size=1, input_hw=56, stride=2)
    assert ds.gemm.a_elements == 64 * 28 * 28 and ds.input_elements == 64 * 56 * 56
    dense = Conv2d("c", in_channels=64, out_channels=128, kernel_size=3, input_hw=56, stride=2, padding=1)
    assert dense.gemm.a_elements == dense.input_elements  # overlapping 3×3 windows touch every pixel
    dil = Conv2d("d", in_channels=1, out_channels=1, kernel_size=2, input_hw=9, dilation=4, stride=5)
    assert dil.gemm.a_elements == 4  # rows/cols {0, 4}: the 2 taps of the single window per axis


def test_bad_fusion_and_overhead_fields_are_named(tmp_path):
    raw = load_profile("a100").model_dump()
    raw["fusion"] = ["relu", "conv", "relu"]
    raw["overheads"] = {"per_kernel_s": -1.0, "launch": 3}
    with pytest.raises(ProfileError) as err:
        validate_profile_dict(json.loads(json.dumps(raw)), source="bad.yaml")
    text = str(err.value)
    assert "fusion[1]" in text and "overheads.per_kernel_s" in text and "overheads.launch" in text
    raw["overheads"] = {}
    raw["fusion"] = ["relu", "relu"]
    with pytest.raises(ProfileError, match="fusion.*more than once"):
        validate_profile_dict(json.loads(json.dumps(raw)), source="bad.yaml")


def test_simulate_json_reports_mapping_fusion_and_overhead(capsys):
    from qsim.cli import main

    main(["simulate", "--profile", "a100", "--model", "resnet18", "--wbits", "8", "--abits", "8", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    layers = {r["name"]: r for r in out["layers"]}
    assert "compute: output-stationary 128x128x32" in layers["conv1"]["mapping"]
    assert layers["conv1.relu"]["fused_into"] == "conv1" and layers["conv1"]["overhead_s"] > 0
