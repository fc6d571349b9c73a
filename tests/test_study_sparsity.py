"""Study axes for pruning: grid expansion, up-front checks naming layers and profiles, costed per profile."""

from __future__ import annotations

import pytest
import yaml

from qsim.study import StudySpecError, parse_study, run_study
from qsim.study.runner import config_label, cost_quant


def spec(**grid) -> dict:
    return {"name": "sp", "network": "mnist_mlp", "eval_size": 200, "calibration_size": 64,
            "grid": {"wbits": [8], "abits": [8], **grid}, "profiles": ["a100", "zen3-avx2"]}


def test_grid_expands_pruned_configs_once_and_costs_them_with_their_pattern():
    s = parse_study(spec(sparsity=[0, 0.5], sparsity_pattern=["unstructured", "2:4"], fine_tune_epochs=[1]))
    cfgs = s.configs()
    assert len(cfgs) == 3  # dense once (pattern and fine-tuning mean nothing at 0), unstructured 50 %, 2:4
    labels = {config_label(c) for c in cfgs}
    assert any("2:4" in label for label in labels) and any("unstructured50%" in label for label in labels)
    q = {c.sparsity_pattern: cost_quant(c) for c in cfgs if c.sparsity}
    assert q["2:4"].sparsity == 0.5 and q["2:4"].sparsity_pattern == "2:4"


def test_bad_sparsity_axes_are_named_up_front():
    with pytest.raises(StudySpecError) as err:
        parse_study(spec(sparsity=[1.2], sparsity_pattern=["3:4", 124], fine_tune_epochs=[-1]))
    text = str(err.value)
    assert "grid.sparsity: 1.2" in text and "grid.sparsity_pattern" in text and "'3:4'" in text
    assert "quote it: '2:4'" in text and "grid.fine_tune_epochs" in text


def test_nm_pattern_that_does_not_divide_k_names_the_layer():
    raw = spec(sparsity=[0.5], sparsity_pattern=["2:4"])
    raw["network"] = "digits_cnn"
    with pytest.raises(StudySpecError, match=r"digits_cnn: conv1 \(K=9\)"):
        parse_study(raw)


def test_required_sparsity_a_profile_cannot_exploit_is_reported():
    raw = spec(sparsity=[0.5], sparsity_pattern=["2:4"])
    raw["require_sparsity"] = True
    with pytest.raises(StudySpecError, match="profile 'zen3-avx2' does not exploit 2:4"):
        parse_study(raw)
    raw["profiles"] = ["a100"]
    parse_study(raw)  # the A100's sparse tensor cores exploit 2:4


def test_pruned_study_runs_and_reports_what_sparsity_bought(tmp_path):
    path = tmp_path / "sp.yaml"
    path.write_text(yaml.safe_dump(spec(sparsity=[0, 0.5], sparsity_pattern=["2:4"], fine_tune_epochs=[1])))
    res = run_study(str(path), tmp_path / "out", progress=False, plots=False)
    t = res.table
    a100 = t[(t["profile"] == "a100")].set_index("sparsity")
    assert a100.loc[0.5, "memory_bytes"] < a100.loc[0.0, "memory_bytes"]  # 2:4 compressed on sparse TCs
    cpu = t[(t["profile"] == "zen3-avx2")].set_index("sparsity")
    assert cpu.loc[0.5, "memory_bytes"] == cpu.loc[0.0, "memory_bytes"]  # runs dense on the CPU
    assert abs(a100.loc[0.5, "accuracy"] - a100.loc[0.0, "accuracy"]) < 10


def test_dynamic_activation_modes_are_costed_with_their_extra_pass():
    raw = spec(act_mode=["static", "dynamic_token"])
    del raw["network"]  # dynamic ranges run on the transformers; the cost view is what is checked here
    raw["workload"] = "bert-base"
    s = parse_study(raw)
    q = {c.act_mode: cost_quant(c) for c in s.configs()}
    assert q["static"].act_mode == "static" and q["dynamic_token"].act_mode == "dynamic_token"
