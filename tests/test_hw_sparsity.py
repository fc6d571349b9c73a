"""Sparsity in the cost model: only what a profile exploits changes cycles, bytes and energy, and the report says so."""

from __future__ import annotations

import pytest

from qsim.hw import CostQuant, cost_layer, cost_workload, load_profile
from qsim.hw.cost import totals
from qsim.workload import Conv2d, Dense, Workload

LAYER = Dense("d", in_features=4096, out_features=4096, batch=256)


def test_two_four_doubles_math_and_halves_weight_bytes_on_sparse_tensor_cores():
    dense = cost_layer(LAYER, CostQuant(8, 8, granularity="tensor"), "a100")
    sparse = cost_layer(LAYER, CostQuant(8, 8, granularity="tensor", sparsity=0.5, sparsity_pattern="2:4"), "a100")
    assert sparse["compute_cycles"] * 2 == dense["compute_cycles"]
    kept = 4096 * 4096 // 2
    assert sparse["memory_bytes"] == pytest.approx(kept * (8 + 2) / 8 + 2)  # values + 2-bit index each + 1 scale
    assert sparse["energy_mac_j"] == pytest.approx(dense["energy_mac_j"] / 2)  # only the kept MACs run
    assert "2:4 sparse units" in sparse["sparsity_used"]


def test_sparsity_a_chip_does_not_exploit_buys_nothing_and_says_so():
    for name, q in (("t4", CostQuant(8, 8, sparsity=0.5, sparsity_pattern="2:4")),  # Turing: no sparse TCs
                    ("a100", CostQuant(8, 8, sparsity=0.9)),                          # unstructured on a GPU
                    ("zen3-avx2", CostQuant(8, 8, sparsity=0.5, sparsity_pattern="2:4"))):
        dense = cost_layer(LAYER, CostQuant(8, 8), name)
        sparse = cost_layer(LAYER, q, name)
        for k in ("cycles", "memory_bytes", "bytes_dram", "energy_j"):
            assert sparse[k] == dense[k], (name, k)
        assert sparse["sparsity_used"].startswith("none")


def test_channel_pruning_is_a_smaller_dense_layer_everywhere():
    conv = Conv2d("c", in_channels=64, out_channels=128, kernel_size=3, input_hw=28, padding=1)
    half = Conv2d("c", in_channels=64, out_channels=64, kernel_size=3, input_hw=28, padding=1)
    for name in ("zen3-avx2", "bitfusion", "h100"):
        pruned = cost_layer(conv, CostQuant(8, 8, sparsity=0.5, sparsity_pattern="channel"), name)
        small = cost_layer(half, CostQuant(8, 8), name)
        assert pruned["macs"] == small["macs"] and pruned["memory_bytes"] == small["memory_bytes"]
        assert pruned["cycles"] == small["cycles"]


def test_zero_gating_saves_mac_and_register_file_energy_not_time():
    prof = load_profile("eyeriss")
    conv = Conv2d("c", in_channels=64, out_channels=64, kernel_size=3, input_hw=14, padding=1)
    dense = cost_layer(conv, CostQuant(16, 16), prof)
    gated = cost_layer(conv, CostQuant(16, 16, act_sparsity=0.6), prof)
    assert gated["cycles"] == dense["cycles"]
    assert gated["energy_mac_j"] == pytest.approx(0.4 * dense["energy_mac_j"])
    assert gated["energy_filter_spad_j"] == pytest.approx(0.4 * dense["energy_filter_spad_j"])
    assert gated["energy_glb_j"] == dense["energy_glb_j"]
    assert "zero gating of inputs" in gated["sparsity_used"]


def test_compressed_weights_cost_a_decode_and_fewer_bytes_where_the_runtime_decodes_them():
    prof = load_profile("zen3-avx2")
    csr = prof.model_copy(update={"sparsity": prof.sparsity.model_copy(update={"weight_formats": ["bitmask", "csr"]})})
    dense = cost_layer(LAYER, CostQuant(8, 8, granularity="tensor"), csr)
    sparse = cost_layer(LAYER, CostQuant(8, 8, granularity="tensor", sparsity=0.9), csr)
    kept = 0.1 * 4096 * 4096
    assert sparse["memory_bytes"] == pytest.approx(kept * (8 + 5) / 8 + 2)  # CSR: 5-bit relative index each
    assert sparse["energy_decode_j"] > 0 and dense["energy_decode_j"] == 0
    assert sparse["compute_cycles"] == dense["compute_cycles"]  # decoded to dense: no MAC skipped
    assert "csr-compressed" in sparse["sparsity_used"]
    low = cost_layer(LAYER, CostQuant(8, 8, granularity="tensor", sparsity=0.05), csr)
    assert low["memory_bytes"] == dense["memory_bytes"]  # compression that would not save bytes is not used


def test_bad_sparsity_input_is_named_up_front():
    with pytest.raises(ValueError, match=r"sparsity must be a fraction in \[0, 1\)"):
        CostQuant(sparsity=1.0)
    with pytest.raises(ValueError, match="sparsity_pattern must be one of"):
        CostQuant(sparsity=0.5, sparsity_pattern="3:4")
    with pytest.raises(ValueError, match="keeps 2 of 4"):
        CostQuant(sparsity=0.7, sparsity_pattern="2:4")
    wl = Workload("w", [Dense("odd", in_features=6, out_features=8)])
    with pytest.raises(ValueError, match=r"odd \(K=6\)"):
        cost_workload(wl, CostQuant(sparsity=0.5, sparsity_pattern="4:8"), "a100")


def test_totals_say_which_sparsity_was_used():
    wl = Workload("w", [LAYER])
    t = totals(cost_workload(wl, CostQuant(8, 8, sparsity=0.5, sparsity_pattern="2:4"), "h100"))
    assert "2:4 sparse units" in t["sparsity_used"]


def test_profile_sparsity_section_is_validated_with_the_field_path():
    from qsim.hw import validate_profile_dict
    from qsim.hw.schema import ProfileError

    raw = load_profile("a100").model_dump()
    raw["sparsity"] = {"structured": {"2:4": 2.0, "3:4": 1.5}, "weight_formats": ["rle"], "zero_gating": "maybe"}
    with pytest.raises(ProfileError) as err:
        validate_profile_dict(raw, source="gpu.yaml")
    text = str(err.value)
    assert "sparsity.structured" in text and "sparsity.weight_formats[0]" in text and "sparsity.zero_gating" in text
    raw["sparsity"] = {"structured": {"2:4": 2.0}, "weight_formats": []}
    with pytest.raises(ProfileError, match="needs 'nm' in weight_formats"):
        validate_profile_dict(raw, source="gpu.yaml")


def test_dynamic_activation_ranges_cost_one_more_pass_over_the_input():
    layer = Dense("d", in_features=1024, out_features=1024, batch=64)
    prof = load_profile("h100").model_copy(update={"keep_activations_on_chip": False})
    static = cost_layer(layer, CostQuant(8, 8), prof)
    for mode in ("dynamic_tensor", "dynamic_token"):
        dyn = cost_layer(layer, CostQuant(8, 8, act_mode=mode), prof)
        assert dyn["bytes_dram"] - static["bytes_dram"] == 64 * 1024 * 2  # the fp16 input read once more
        assert dyn["bytes_l2"] - static["bytes_l2"] == 64 * 1024 * 2
        assert dyn["energy_j"] > static["energy_j"]
    with pytest.raises(ValueError, match="act_mode must be one of"):
        CostQuant(act_mode="per_channel")
